"""Chapter 3: baselines on tiny synthetic tasks, the steal grid's assembly (with a stand-in steal),
and the reader tables, sentences and figures on synthetic long tables."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from encsteal.data.imageset import ImageSet
from encsteal.experiments import imagenet
from encsteal.experiments.downstream import ROLES, Downstream, evaluate
from encsteal.experiments.imagenet import (
    OURS_PANEL,
    PAPER_PANEL,
    PIXELS,
    RANDOM,
    VICTIM,
    baseline_table,
    baseline_value,
    baselines,
    copies_table,
    copies_text,
    copy_short,
    headline,
    model_label,
    paper_share_table,
    paper_table,
    plot_budget_curves,
    plot_share,
    query_pools,
    reference_encoders,
    relative_to_victim,
    seed_interval,
    share_points,
    share_table,
    shared_sets_text,
    steal_grid,
    stolen_mean,
)
from encsteal.probe import extract_features, fit_probe
from encsteal.tables import to_markdown


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
    table = baseline_table(base)
    assert list(table.index) == [
        "digits, all labels",
        "digits, few labels",
        "clothes, all labels",
        "clothes, few labels",
    ]
    assert list(table.columns) == ["victim (%)", "random-init CNN (%)", "raw pixels (%)"]
    assert table.loc["clothes, all labels", "raw pixels (%)"] == baseline_value(base, PIXELS, "clothes")
    assert table.loc["digits, few labels", "victim (%)"] == baseline_value(base, VICTIM, "digits", "few_label")
    to_markdown(table)  # fit for a page: no missing cell, a named index, at most six columns
    with pytest.raises(ValueError, match="lack the rows"):
        baseline_table(base[base.model != PIXELS])


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
        calls.append((queries.name, budget, loss, seed, loss_params))
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


def test_steal_grid_runs_every_job_and_seed_in_order_and_labels_each_copy(monkeypatch):
    calls = []
    monkeypatch.setattr(imagenet, "steal_and_evaluate", _fake_steal(calls))
    pools = {"a": _imageset("a", 4, 0), "b": _imageset("b", 4, 1)}
    grid = steal_grid(
        None,
        pools,
        ["t1", "t2"],
        [50, 100],
        ["mse", "infonce"],
        seeds=[0, 3],
        epochs=1,
        loss_settings={"infonce": {"temperature": 0.5}},
    )
    assert calls == [
        (qs, b, loss, seed, {"temperature": 0.5} if loss == "infonce" else None)
        for qs in "ab"
        for b in (50, 100)
        for loss in ("mse", "infonce")
        for seed in (0, 3)
    ]
    assert len(grid) == 32 and grid.loc[0, "model"] == "stolen, 50 a queries (mse)" == model_label("a", 50, "mse")
    assert list(grid.loc[:3, "seed"]) == [0, 0, 3, 3]  # two tasks per copy, seeds of a label in a row
    with pytest.raises(ValueError, match="at least one seed"):
        steal_grid(None, pools, ["t1"], [50], ["mse"], seeds=[], epochs=1)


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


def _grid(seeds=(0,)) -> pd.DataFrame:
    """Copies from two query sets x two budgets x two losses on two tasks; seed ``s`` adds ``s``
    points to every accuracy."""
    rows = []
    for qs, offset in (("digits", 0.0), ("fmnist", -20.0)):
        for budget, acc in ((50, 50.0), (100, 60.0)):
            for loss, delta in (("mse", -2.0), ("infonce", 2.0)):
                for seed in seeds:
                    for task in ("digits", "fmnist"):
                        rows.append(
                            {
                                "query_set": qs,
                                "budget": budget,
                                "loss": loss,
                                "seed": seed,
                                "downstream": task,
                                "probe": acc + offset + delta + seed,
                                "model": model_label(qs, budget, loss),
                            }
                        )
    return pd.DataFrame(rows)


def test_headline_uses_the_largest_budget_and_averages_the_losses():
    values = headline(_base(), _grid(), task="digits", in_distribution="digits", other="fmnist")
    assert values == {
        "imagenet_victim": 80.0,
        "imagenet_pixels": 40.0,
        "imagenet_random": 30.0,
        "imagenet_stolen_id": 60.0,
        "imagenet_stolen_other": 40.0,
        "imagenet_max_budget": 100.0,
        "imagenet_ratio_id": 75.0,
        "imagenet_seeds": 1.0,
    }
    assert math.isnan(stolen_mean(_grid(), "svhn", "digits", 100))  # a query set the grid never ran
    with pytest.raises(ValueError, match="at least one stolen copy"):
        headline(_base(), _grid().iloc[:0], "digits", "digits", "fmnist")
    with pytest.raises(ValueError, match="found 0"):
        baseline_value(_base(), VICTIM, "svhn")


def _t95(values) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_seed_interval_is_the_t_interval_and_a_single_value_alone():
    mean, low, high = seed_interval([50.0, 52.0, 57.0])
    assert (mean, low, high) == pytest.approx(_t95([50.0, 52.0, 57.0]))
    assert seed_interval([41.0]) == (41.0, 41.0, 41.0) and seed_interval([3.0, 3.0]) == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="at least one value"):
        seed_interval([])


def test_copies_table_shows_mean_and_interval_over_seeds():
    grid = _grid(seeds=(0, 1, 5))
    table = copies_table(grid)
    assert table.index.name == "copy" and list(table.columns) == ["digits (%)", "fmnist (%)"]
    mean, low, high = _t95([58.0, 59.0, 63.0])  # 100 digits queries, mse: 60 - 2 + seed
    assert table.loc[model_label("digits", 100, "mse"), "digits (%)"] == f"{mean:.1f} [{low:.1f}, {high:.1f}]"
    assert copies_table(_grid()).loc[model_label("fmnist", 50, "infonce"), "fmnist (%)"] == "32.0"  # one seed
    to_markdown(table)
    with pytest.raises(ValueError, match="empty"):
        copies_table(_grid().iloc[:0])


def test_share_table_divides_each_seed_by_the_victim():
    grid = _grid(seeds=(0, 1, 5))
    table = share_table(_base(), grid)
    assert list(table.columns) == ["digits (% of victim)", "fmnist (% of victim)"]
    mean, low, high = _t95([100 * a / 90.0 for a in (38.0, 39.0, 43.0)])  # 100 fmnist queries, mse, on fmnist
    cell = table.loc[model_label("fmnist", 100, "mse"), "fmnist (% of victim)"]
    assert cell == f"{mean:.1f} [{low:.1f}, {high:.1f}]"
    to_markdown(table)


def test_the_papers_tables_as_printed_and_as_shares():
    from encsteal import paper_tables

    paper = paper_tables.imagenet_table()
    printed = paper_table(paper)
    assert printed.loc["victim", "CIFAR10 (%)"] == "90.33" and printed.loc["victim", "STL10 (%)"] == "94.9"
    shares = paper_share_table(paper)
    assert "victim" not in shares.index and len(shares) == 5
    assert shares.loc["stolen, 50K CIFAR10 queries", "CIFAR10 (% of victim)"] == pytest.approx(100 * 83.3 / 90.33)
    assert shares.loc["stolen, 250K SVHN queries", "SVHN (% of victim)"] == pytest.approx(100 * 80.2 / 79.39)
    to_markdown(printed), to_markdown(shares)
    rel = relative_to_victim(paper, "victim")
    assert (rel.loc["victim"] == 100).all()
    with pytest.raises(ValueError, match="No victim row"):
        relative_to_victim(paper, VICTIM)


def test_copy_short_drops_the_frame_of_a_label():
    assert copy_short("stolen, 50K CIFAR10 queries") == "50K CIFAR10"
    assert copy_short(model_label("mnistm", 500, "mse")) == "500 mnistm (mse)"
    assert copy_short(VICTIM) == VICTIM


def test_share_points_paper_and_ours_with_intervals():
    paper = pd.DataFrame({"CIFAR10": [80.0, 60.0], "F-MNIST": [90.0, 81.0]}, index=["victim", "stolen, 50K X queries"])
    points = share_points(paper, _base(), _grid(seeds=(0, 1, 5)))
    ours, theirs = points[points.source == "ours"], points[points.source == "paper"]
    assert len(theirs) == 2 and len(ours) == 8 * 2  # the paper's copy x 2 sets; 8 copies x 2 tasks
    first = theirs.iloc[0]
    assert (first["copy"], first["downstream"], first["share"]) == ("50K X", "CIFAR10", 75.0)
    assert first["low"] == first["high"] == 75.0 and first["n"] == 1
    row = ours[(ours["copy"] == "50 digits (mse)") & (ours["downstream"] == "digits")].iloc[0]
    mean, low, high = _t95([100 * a / 80.0 for a in (48.0, 49.0, 53.0)])
    assert (row["share"], row["low"], row["high"], row["n"]) == (
        pytest.approx(mean),
        pytest.approx(low),
        pytest.approx(high),
        3,
    )
    assert set(ours["color_key"]) == {"digits", "F-MNIST"}  # our fmnist takes the paper's colour


def test_plot_share_one_panel_per_side_with_the_victim_line():
    from encsteal import paper_tables

    fig = plot_share(paper_tables.imagenet_table(), _base(), _grid(seeds=(0, 1)))
    try:
        assert fig.get_figwidth() <= 9
        left, right = fig.axes
        assert (left.get_title(), right.get_title()) == (PAPER_PANEL, OURS_PANEL)
        assert [t.get_text() for t in left.get_xticklabels()][0] == "50K CIFAR10"
        assert len(right.get_xticklabels()) == 8
        for ax, sets in ((left, 5), (right, 2)):
            assert len(ax.containers) == sets  # one errorbar series per downstream set
            assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [100]
        bars = right.containers[0].lines[2][0].get_segments()  # our first set's interval bars
        assert any(seg[1][1] > seg[0][1] for seg in bars)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend == ["CIFAR10", "CIFAR100", "STL10", "SVHN", "F-MNIST (ours: fmnist)", "digits", "victim (100 %)"]
    finally:
        plt.close(fig)


def test_copies_text_gives_the_interval_over_seeds_and_the_share():
    text = copies_text(_base(), _grid(seeds=(0, 1, 5)), "digits", "digits", "fmnist")["imagenet_copies_text"]
    mean, low, high = _t95([60.0, 61.0, 65.0])  # 100 digits queries, mean of the two losses, + seed
    assert f"100 digits queries reach {mean:.1f} % [{low:.1f}, {high:.1f}] ({100 * mean / 80:.0f} % of it)" in text
    assert text.startswith("On digits, where the victim scores 80.0 %, copies stolen with 100 digits queries")
    assert text.endswith("; means and 95 % intervals over 3 seeds, averaged over the losses.")
    one = copies_text(_base(), _grid(), "digits", "digits", "svhn")["imagenet_copies_text"]
    assert "60.0 % (75 % of it)" in one and "one seed, so no interval" in one
    assert "and no copy was stolen with 100 svhn queries;" in one


def test_plot_budget_curves_one_panel_per_task_with_reference_lines():
    fig = plot_budget_curves(_base(), _grid(seeds=(0, 1)))
    try:
        assert plt.fignum_exists(fig.number) and len(fig.axes) == 2 and fig.get_figwidth() <= 9
        assert [ax.get_title() for ax in fig.axes] == ["downstream: digits", "downstream: fmnist"]
        lines = {ln.get_label(): ln.get_ydata()[0] for ln in fig.axes[0].get_lines() if len(ln.get_ydata())}
        assert (lines["victim"], lines["raw pixels"]) == (80.0, 40.0)
        assert len(fig.axes[0].collections) >= 2  # a band per query set
    finally:
        plt.close(fig)
    three = plot_budget_curves(_base(), _grid(), ["digits", "fmnist", "digits"])
    try:
        assert len(three.axes) == 3 and three.get_figwidth() <= 9  # two per row, the empty fourth removed
    finally:
        plt.close(three)


def test_headline_text_follows_the_margin():
    from encsteal import paper_tables
    from encsteal.experiments.imagenet import headline_text, paper_keep_range

    paper = paper_tables.imagenet_table()
    low, high = paper_keep_range(paper)
    assert 0 < low < 100 < high  # a few of the paper's copies beat its victim on SVHN
    wide = headline_text({"imagenet_victim": 70.0, "imagenet_random": 40.0}, paper)
    assert "by 30.0 points, so a copy" in wide["imagenet_worth"]
    close = headline_text({"imagenet_victim": 50.0, "imagenet_random": 45.0}, paper)
    assert "shown, not judged" in close["imagenet_worth"]
    below = headline_text({"imagenet_victim": 40.0, "imagenet_random": 45.0}, paper)
    assert "nothing to steal" in below["imagenet_worth"]
    assert f"{low:.0f} to {high:.0f} %" in wide["imagenet_paper_range"]


def test_shared_sets_text_names_the_sets_both_tables_evaluate():
    paper = pd.DataFrame({"CIFAR10": [90.0], "F-MNIST": [92.0]}, index=["victim"])
    both = shared_sets_text(paper, _grid())["imagenet_shared_text"]  # our fmnist is the paper's F-MNIST
    assert both.startswith("Common to both tables: F-MNIST;")
    none = shared_sets_text(paper, _grid().assign(downstream="mnistm"))["imagenet_shared_text"]
    assert none.startswith("No downstream set is common") and "ours: mnistm" in none
