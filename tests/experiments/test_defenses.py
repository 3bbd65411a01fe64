"""The defense trade-off table and plot on a tiny victim."""

import pytest
import torch
from matplotlib.figure import Figure

from encsteal.attack import StealConfig
from encsteal.cache import ResultCache
from encsteal.data import role_splits
from encsteal.experiments.defenses import augmented_pair_stream, plot_tradeoff, tradeoff_table, victim_output_std
from encsteal.probe import evaluate_encoder
from encsteal.victims import VictimConfig, train_victim

SIZES = {"victim": 256, "probe_train": 300, "probe_val": 100, "query": 128, "probe_test": 200}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cache = ResultCache(tmp_path_factory.mktemp("cache"))
    victim = train_victim(VictimConfig(dataset="mnist5k", num_train=256, epochs=1, batch_size=64), cache,
                          device="cpu", progress=False)
    return victim, role_splits("mnist5k", SIZES, seed=0), cache


def test_noise_tradeoff_table(setup):
    victim, splits, cache = setup
    attacks = {"mse": StealConfig(loss="mse", epochs=1, batch_size=64)}
    table = tradeoff_table(victim, splits, "noise", [0.0, 30.0], attacks, base_params={"mean": 0.0},
                           num_queries=128, cache=cache)
    assert list(table.columns) == ["strength", "legit", "attacker_mse", "seconds"]
    clean = evaluate_encoder(victim.encoder, splits).accuracy
    assert table.loc[0, "legit"] == pytest.approx(100 * clean)  # zero noise = the undefended API
    assert table.loc[1, "legit"] < table.loc[0, "legit"] - 20
    assert table.attrs["params"]["reference_std"] == pytest.approx(float(victim_output_std(victim)), rel=1e-4)
    again = tradeoff_table(victim, splits, "noise", [30.0], attacks, base_params={"mean": 0.0},
                           num_queries=128, cache=cache)  # the steal is a cache hit, the answers identical
    assert again.loc[0, "legit"] == table.loc[1, "legit"]
    assert again.loc[0, "attacker_mse"] == table.loc[1, "attacker_mse"]
    fig = plot_tradeoff(table, "noise")
    assert isinstance(fig, Figure)
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert all(x and y for x, y in labels)


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
