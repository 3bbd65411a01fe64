"""Chapter 5: the transferability table on a tiny watermarked encoder; its headline and figure on
synthetic tables."""

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from encsteal.experiments.watermark import (
    decision_threshold,
    headline,
    plot_transferability,
    transferability_table,
    victim_row,
)
from encsteal.models import SmallConvNet
from encsteal.watermark import WatermarkConfig

WIDTHS = (16, 32, 64, 64)


def test_transferability_table_decides(tiny_watermark):
    enc, mlp, held_out, _ = tiny_watermark

    class _WM:  # the table needs only the MLP and the task
        config = WatermarkConfig()

    _WM.mlp = mlp
    refs = {}
    for s in range(3):
        torch.manual_seed(10 + s)
        refs[f"ref {s}"] = SmallConvNet(1, widths=WIDTHS).eval()
    torch.manual_seed(20)
    suspects = {"victim": ("victim", enc), "other": ("random", SmallConvNet(1, widths=WIDTHS).eval())}
    table = transferability_table(_WM, suspects, refs, held_out)
    assert bool(table.loc["victim", "stolen"]) and not bool(table.loc["other", "stolen"])
    assert table.loc["victim", "p_value"] < 0.05 and table.loc["ref 0", "role"] == "reference"
    assert {"watermark_acc", "ci_low", "ci_high", "threshold", "tested_against"} <= set(table.columns)


def _synthetic_table(probe: bool = True) -> pd.DataFrame:
    rows = [
        ("watermarked victim", "victim", 90.0, 60.0, True, 80.0),
        ("victim before watermarking", "same lineage", 52.0, 60.0, False, 81.5),
        ("stolen mse, 50 queries", "stolen", 65.0, 60.0, True, 70.0),
        ("stolen infonce, 50 queries", "stolen", 58.0, 60.0, False, 72.0),
        ("random init", "random", 50.0, 60.0, False, 30.0),
        ("independent seed 1", "reference", 54.0, 58.0, False, 79.0),
        ("independent seed 2", "reference", 56.0, 57.0, False, 78.0),
    ]
    table = pd.DataFrame(rows, columns=["model", "role", "watermark_acc", "threshold", "stolen", "probe"])
    table = table.assign(ci_low=table.watermark_acc - 2, ci_high=table.watermark_acc + 2).set_index("model")
    return table if probe else table.drop(columns="probe")


def test_headline_counts_stolen_copies_and_the_watermarks_cost():
    values = headline(_synthetic_table())
    assert values == {
        "wm_victim_acc": 90.0,
        "wm_cost": pytest.approx(1.5),
        "wm_threshold": 60.0,
        "wm_refs_mean": 55.0,
        "wm_stolen_flagged": 1,
        "wm_stolen_total": 2,
    }
    assert math.isnan(headline(_synthetic_table(probe=False))["wm_cost"])  # no probe column: cost unknown
    assert decision_threshold(_synthetic_table()) == 60.0  # the victim's, not a reference's leave-one-out one


def test_untested_copies_are_not_counted_as_flagged():
    table = _synthetic_table()
    table["stolen"] = table["stolen"].astype(object)
    table.loc["stolen mse, 50 queries", "stolen"] = None  # fewer than two references: no decision
    assert headline(table)["wm_stolen_flagged"] == 0


def test_victim_row_must_be_unique():
    table = _synthetic_table()
    assert victim_row(table).name == "watermarked victim"
    with pytest.raises(ValueError, match="found 0"):
        headline(table[table.role != "victim"])


def test_plot_transferability_draws_every_model_the_threshold_and_chance():
    fig = plot_transferability(_synthetic_table(), "four_way")
    try:
        assert plt.fignum_exists(fig.number)
        ax = fig.axes[0]
        assert len(ax.patches) == 7
        assert [line.get_xdata()[0] for line in ax.get_lines()] == [60.0, 25.0]  # threshold, then chance
    finally:
        plt.close(fig)
