"""Chapter 4: the defense trade-off table and plot on a tiny victim; its headline and views on
synthetic tables."""

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from encsteal.attack import StealConfig
from encsteal.cache import ResultCache
from encsteal.data import role_splits
from encsteal.experiments.defenses import (
    attack_configs,
    attacker_columns,
    augmented_pair_stream,
    headline,
    plot_tradeoff,
    tradeoff_table,
    tradeoff_view,
    victim_output_std,
)
from encsteal.probe import evaluate_encoder
from encsteal.victims import VictimConfig, train_victim

SIZES = {"victim": 256, "probe_train": 300, "probe_val": 100, "query": 128, "probe_test": 200}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = ResultCache(tmp_path_factory.mktemp("cache"))
    victim = train_victim(
        VictimConfig(dataset="mnist5k", num_train=256, epochs=1, batch_size=64), cache, device="cpu", progress=False
    )
    return victim, role_splits("mnist5k", SIZES, seed=0), cache


def test_noise_tradeoff_table(setup):
    victim, splits, cache = setup
    attacks = {"mse": StealConfig(loss="mse", epochs=1, batch_size=64)}
    table = tradeoff_table(
        victim, splits, "noise", [0.0, 30.0], attacks, base_params={"mean": 0.0}, num_queries=128, cache=cache
    )
    assert list(table.columns) == ["strength", "legit", "attacker_mse", "seconds"]
    clean = evaluate_encoder(victim.encoder, splits).accuracy
    assert table.loc[0, "legit"] == pytest.approx(100 * clean)  # zero noise = the undefended API
    assert table.loc[1, "legit"] < table.loc[0, "legit"] - 20
    assert table.attrs["params"]["reference_std"] == pytest.approx(float(victim_output_std(victim)), rel=1e-4)
    again = tradeoff_table(
        victim, splits, "noise", [30.0], attacks, base_params={"mean": 0.0}, num_queries=128, cache=cache
    )  # the steal is a cache hit, the answers identical
    assert again.loc[0, "legit"] == table.loc[1, "legit"]
    assert again.loc[0, "attacker_mse"] == table.loc[1, "attacker_mse"]
    fig = plot_tradeoff(table, "noise")
    assert isinstance(fig, Figure)
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert all(x and y for x, y in labels)
    plt.close(fig)


def test_duplicate_detector_tradeoff_reports_detection(setup):
    victim, splits, cache = setup
    attacks = {"infonce_views": StealConfig(loss="infonce", epochs=1, batch_size=64, augment="views", views=2)}
    table = tradeoff_table(victim, splits, "duplicates", [1.0, 0.8], attacks, num_queries=128, cache=cache)
    for col in ("legit_flagged", "attacker_flagged", "precision", "recall", "f1", "roc_auc", "attacker_infonce_views"):
        assert col in table.columns
    assert table.loc[0, "legit_flagged"] == 0.0 and table.loc[0, "recall"] == 0.0  # threshold 1 never flags
    assert table.loc[1, "recall"] > 0


def test_augmented_pair_stream_truth():
    x = torch.randint(0, 255, (6, 1, 12, 12), dtype=torch.uint8)
    stream, truth = augmented_pair_stream(x, seed=1)
    assert stream.shape == (12, 1, 12, 12) and truth.tolist() == [False] * 6 + [True] * 6


def test_unknown_defense_and_strength_parameter(setup):
    victim, splits, cache = setup
    with pytest.raises(ValueError, match="Allowed: noise, rounding, truncation, duplicates"):
        tradeoff_table(victim, splits, "dp", [1.0], {})
    with pytest.raises(ValueError, match="Allowed: k, seed"):
        tradeoff_table(victim, splits, "truncation", [1], {}, strength_param="std")


def _synthetic_noise_table() -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "strength": [0.0, 1.0, 10.0],
            "legit": [80.0, 60.0, 20.0],
            "attacker_mse": [70.0, 65.0, 55.0],
            "attacker_infonce": [75.0, 60.0, 58.0],
            "seconds": [1.0, 1.0, 1.0],
        }
    )
    table.attrs.update({"defense": "noise", "strength_param": "std", "params": {"mean": 0.0, "reference_std": 0.25}})
    return table


def test_headline_reads_the_weakest_and_strongest_rows():
    table = _synthetic_noise_table().iloc[[1, 2, 0]].reset_index(drop=True)  # row order must not matter
    values = headline(table, ["mse", "infonce"])
    assert values == {
        "ref_std": 0.25,
        "legit_clean": 80.0,
        "legit_strong": 20.0,
        "attacker_clean": 75.0,
        "attacker_strong": 58.0,
        "max_strength": 10.0,
    }
    assert headline(table, ["mse"])["attacker_clean"] == 70.0  # only the attackers asked for
    table.attrs["params"] = {}
    assert math.isnan(headline(table, ["mse"])["ref_std"])  # absolute strengths: no reference std


def test_headline_rejects_missing_attackers_and_empty_tables():
    with pytest.raises(ValueError, match="attacker_softnn"):
        headline(_synthetic_noise_table(), ["softnn"])
    with pytest.raises(ValueError, match="at least one strength"):
        headline(_synthetic_noise_table().iloc[:0], ["mse"])


def test_attacker_columns_skip_the_flag_rate():
    table = _synthetic_noise_table().assign(attacker_flagged=0.0)
    assert attacker_columns(table) == ["attacker_mse", "attacker_infonce"]


def test_tradeoff_view_indexes_by_strength_and_rounds():
    table = _synthetic_noise_table().assign(legit=[80.123, 60.0, 20.0])
    view = tradeoff_view(table, decimals=1)
    assert view.index.name == "strength" and list(view.index) == [0.0, 1.0, 10.0]
    assert view.loc[0.0, "legit"] == 80.1 and "strength" not in view.columns


def test_attack_configs_one_per_loss_and_an_augmented_views_attack():
    attacks = attack_configs(
        ["mse", "infonce"],
        epochs=3,
        seed=7,
        views_loss="infonce",
        views=2,
        loss_settings={"infonce": {"temperature": 0.3}},
    )
    assert list(attacks) == ["mse", "infonce", "infonce_views"]
    assert attacks["infonce"].loss_params == {"temperature": 0.3} and attacks["mse"].epochs == 3
    assert attacks["infonce_views"].loss_params == {"temperature": 0.3} and attacks["mse"].loss_params == {}
    assert attacks["infonce_views"].augment == "views" and attacks["infonce_views"].views == 2
    assert all(a.seed == 7 for a in attacks.values())
    assert list(attack_configs(["mse"], 1, 0)) == ["mse"]


def test_plot_tradeoff_is_a_pyplot_figure_the_notebook_can_show():
    fig = plot_tradeoff(_synthetic_noise_table(), "noise")
    try:
        assert plt.fignum_exists(fig.number)  # managed by pyplot: plt.show() renders it in a notebook
        assert [ax.get_xlabel() for ax in fig.axes] == [
            "defense strength (noise std)",
            "legitimate user's accuracy (%)",
        ]
        assert len(fig.axes[0].lines) == 3  # legitimate user and two attackers
    finally:
        plt.close(fig)
