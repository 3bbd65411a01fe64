"""Chapter 3: baselines on tiny synthetic tasks, the steal grid's assembly (with a stand-in steal),
and the tables and headline on synthetic long tables."""

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from torch import nn

from encsteal.data.imageset import ImageSet
from encsteal.experiments import imagenet
from encsteal.experiments.downstream import ROLES, Downstream, evaluate
from encsteal.experiments.imagenet import (
    NOT_AVAILABLE,
    PIXELS,
    RANDOM,
    VICTIM,
    baseline_table,
    baseline_value,
    baselines,
    headline,
    model_label,
    plot_budget_curves,
    probe_table,
    query_pools,
    reference_encoders,
    relative_to_victim,
    side_by_side,
    steal_grid,
    stolen_mean,
)
from encsteal.probe import extract_features, fit_probe


class _Tiny(nn.Module):
    """A linear 'encoder' on 3x8x8 images with the attributes feature extraction reads."""

    in_channels, input_size, rep_dim = 3, 8, 4

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(3 * 8 * 8, self.rep_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1))


def _imageset(name: str, n: int, seed: int) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, 3, 8, 8), generator=gen) + 120 * labels.view(-1, 1, 1, 1)  # class = brightness
    return ImageSet(name, images.to(torch.uint8), labels, ("dark", "bright"))


def _task(name: str, victim: nn.Module) -> Downstream:
    splits = {r: _imageset(name, 24, i) for i, r in enumerate(ROLES)}
    feats = {r: extract_features(victim, splits[r]) for r in ROLES}
    probe = fit_probe(
        feats["probe_train"], splits["probe_train"].labels, feats["probe_val"], splits["probe_val"].labels, (1.0,)
    )
    return Downstream(name, splits, feats, probe, per_class=4, seed=0, Cs=(1.0,))


@pytest.fixture(scope="module")
def tasks():
    victim = _Tiny(0)
    return [_task("digits", victim), _task("clothes", victim)]


def test_baselines_victim_random_then_pixels(tasks):
    base = baselines(tasks, {VICTIM: None, RANDOM: _Tiny(1)})
    assert list(zip(base.model, base.downstream)) == [(m, t.name) for m in (VICTIM, RANDOM, PIXELS) for t in tasks]
    assert base.loc[0, "probe"] == pytest.approx(evaluate(None, tasks[0])["probe"])  # None is the victim itself
    assert base.loc[base.model == PIXELS, "probe"].min() > 90  # brightness separates the classes in pixel space
    wide = baseline_table(base)
    assert set(wide.columns) == {(m, t.name) for m in ("few_label", "probe") for t in tasks}
    assert wide.loc[PIXELS, ("probe", "clothes")] == baseline_value(base, PIXELS, "clothes")


def test_reference_encoders_are_seeded():
    first, second = reference_encoders(3), reference_encoders(3)
    assert first[VICTIM] is None and list(first) == [VICTIM, RANDOM]
    for a, b in zip(first[RANDOM].state_dict().values(), second[RANDOM].state_dict().values()):
        assert torch.equal(a, b)


def test_query_pools_take_the_largest_budget_at_the_copys_input():
    pools = query_pools(["mnist5k"], {"probe_train": 20, "probe_val": 10, "probe_test": 10}, [5, 12], seed=0)
    assert list(pools) == ["mnist5k"] and pools["mnist5k"].images.shape == (12, 3, 32, 32)


def _fake_steal(calls):
    def steal_and_evaluate(api, queries, loss, budget, seed, epochs, tasks, device="auto", loss_params=None):
        calls.append((queries.name, budget, loss, loss_params))
        return [
            {
                "loss": loss,
                "query_set": queries.name,
                "budget": budget,
                "seed": seed,
                "downstream": t,
                "probe": float(budget),
            }
            for t in tasks
        ]

    return steal_and_evaluate


def test_steal_grid_runs_every_job_in_order_and_labels_each_copy(monkeypatch):
    calls = []
    monkeypatch.setattr(imagenet, "steal_and_evaluate", _fake_steal(calls))
    pools = {"a": _imageset("a", 4, 0), "b": _imageset("b", 4, 1)}
    grid = steal_grid(
        None,
        pools,
        ["t1", "t2"],
        [50, 100],
        ["mse", "infonce"],
        seed=0,
        epochs=1,
        loss_settings={"infonce": {"temperature": 0.5}},
    )
    assert calls == [
        (qs, b, loss, {"temperature": 0.5} if loss == "infonce" else None)
        for qs in "ab"
        for b in (50, 100)
        for loss in ("mse", "infonce")
    ]
    assert len(grid) == 16 and grid.loc[0, "model"] == "stolen, 50 a queries (mse)" == model_label("a", 50, "mse")


def _base() -> pd.DataFrame:
    rows = [
        (VICTIM, "digits", 80.0),
        (VICTIM, "fmnist", 90.0),
        (RANDOM, "digits", 30.0),
        (RANDOM, "fmnist", 60.0),
        (PIXELS, "digits", 40.0),
        (PIXELS, "fmnist", 70.0),
    ]
    return pd.DataFrame(rows, columns=["model", "downstream", "probe"])


def _grid() -> pd.DataFrame:
    rows = []
    for qs, offset in (("digits", 0.0), ("fmnist", -20.0)):
        for budget, acc in ((50, 50.0), (100, 60.0)):
            for loss, delta in (("mse", -2.0), ("infonce", 2.0)):
                for task in ("digits", "fmnist"):
                    rows.append(
                        {
                            "query_set": qs,
                            "budget": budget,
                            "loss": loss,
                            "downstream": task,
                            "probe": acc + offset + delta,
                            "model": model_label(qs, budget, loss),
                        }
                    )
    return pd.DataFrame(rows)


def test_headline_uses_the_largest_budget_and_averages_the_losses():
    values = headline(_base(), _grid(), task="digits", in_distribution="digits", other="fmnist")
    assert values == {
        "victim_rgb": 80.0,
        "pixels_rgb": 40.0,
        "random_rgb": 30.0,
        "stolen_rgb_id": 60.0,
        "stolen_rgb_other": 40.0,
        "max_budget": 100.0,
        "ratio_rgb_id": 75.0,
    }
    assert math.isnan(stolen_mean(_grid(), "svhn", "digits", 100))  # a query set the grid never ran
    with pytest.raises(ValueError, match="at least one stolen copy"):
        headline(_base(), _grid().iloc[:0], "digits", "digits", "fmnist")
    with pytest.raises(ValueError, match="found 0"):
        baseline_value(_base(), VICTIM, "svhn")


def test_probe_table_lists_baselines_then_copies():
    ours = probe_table(_base(), _grid())
    assert list(ours.index[:3]) == [VICTIM, RANDOM, PIXELS] and len(ours) == 3 + 8
    assert list(ours.columns) == ["digits", "fmnist"]
    assert ours.loc["stolen, 100 fmnist queries (infonce)", "digits"] == 42.0


def test_relative_table_divides_by_the_victim_row():
    ours = probe_table(_base(), _grid())
    rel = relative_to_victim(ours, VICTIM)
    assert (rel.loc[VICTIM] == 100).all() and rel.loc[PIXELS, "digits"] == 50.0
    with pytest.raises(ValueError, match="No victim row"):
        relative_to_victim(ours, "victim")


def test_side_by_side_shares_fmnist_and_marks_missing_cells():
    paper = pd.DataFrame({"CIFAR10": [90.0, 45.0], "F-MNIST": [92.0, 46.0]}, index=["victim", "stolen"])
    table = side_by_side(paper, probe_table(_base(), _grid()))
    assert list(table.columns) == ["CIFAR10", "F-MNIST", "digits"]  # our fmnist under the paper's name
    assert table.loc[("paper (% of victim)", "stolen"), "CIFAR10"] == 50.0
    assert table.loc[("ours (% of victim)", PIXELS), "F-MNIST"] == pytest.approx(77.8)
    assert table.loc[("paper (% of victim)", "victim"), "digits"] == NOT_AVAILABLE
    assert table.loc[("ours (% of victim)", VICTIM), "CIFAR10"] == NOT_AVAILABLE
    assert not table.isna().any().any()


def test_plot_budget_curves_one_panel_per_task_with_reference_lines():
    fig = plot_budget_curves(_base(), _grid())
    try:
        assert plt.fignum_exists(fig.number) and len(fig.axes) == 2
        assert [ax.get_title() for ax in fig.axes] == ["downstream: digits", "downstream: fmnist"]
        hlines = [line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() in ("--", ":")]
        assert hlines == [80.0, 40.0]  # victim, raw pixels
    finally:
        plt.close(fig)


def test_headline_text_follows_the_margin():
    from encsteal import paper_tables
    from encsteal.experiments.imagenet import headline_text, paper_keep_range

    paper = paper_tables.imagenet_table()
    low, high = paper_keep_range(paper)
    assert 0 < low < 100 < high  # a few of the paper's copies beat its victim on SVHN
    wide = headline_text({"victim_rgb": 70.0, "random_rgb": 40.0}, paper)
    assert "by 30.0 points, so a copy" in wide["imagenet_worth"]
    assert "shown, not judged" in headline_text({"victim_rgb": 50.0, "random_rgb": 45.0}, paper)["imagenet_worth"]
    assert "nothing to steal" in headline_text({"victim_rgb": 40.0, "random_rgb": 45.0}, paper)["imagenet_worth"]
    assert f"{low:.0f} to {high:.0f} %" in wide["imagenet_paper_range"]
