"""Chapter 2's tables and headline numbers, from synthetic grids."""

import pandas as pd
import pytest

from encsteal import paper_tables
from encsteal.experiments import losses


def _grid():
    rows = []
    for k, loss in enumerate(["mse", "infonce", "barlow", "supcon"]):
        for qs in ("fmnist", "mnist5k"):
            for task in ("fmnist", "mnistm"):
                for seed in (0, 1):
                    v = 70.0 + k + seed + (qs == "mnist5k") * 5
                    rows.append(
                        {
                            "loss": loss,
                            "query_set": qs,
                            "downstream": task,
                            "seed": seed,
                            "probe": v,
                            "few_label": v - 20,
                            "knn": v,
                            "victim_head": v,
                            "cosine": 0.9,
                            "cka": 0.8,
                        }
                    )
    return pd.DataFrame(rows)


def _base():
    return pd.DataFrame(
        [
            {"encoder": e, "downstream": t, "probe": p, "few_label": p - 10}
            for e, p in (("victim", 80.0), ("random init", 60.0))
            for t in ("fmnist", "mnistm")
        ]
    )


def test_side_by_side_puts_ours_beside_the_paper_relative_to_mse():
    table = losses.side_by_side(_grid(), paper_tables.loss_table(), ["fmnist", "mnist5k"], "fmnist")
    ours = table[("accuracy (%)", "ours, fmnist queries (fmnist probe)")]
    assert ours["infonce"] == pytest.approx(71.5)
    rel = table[("minus MSE (points)", "ours, mnist5k queries (fmnist probe)")]
    assert rel["mse"] == 0 and rel["barlow"] == pytest.approx(2)
    assert table[("minus MSE (points)", "paper, in-distribution (CIFAR10 probe)")]["barlow"] == pytest.approx(
        26.9 - 75.5
    )


def test_headline_and_lookups():
    v = losses.headline(_grid(), _base(), "fmnist", "fmnist", 12.0)
    assert (v["victim_probe"], v["random_probe"]) == (80.0, 60.0)
    assert (v["label_free_min"], v["label_free_max"]) == pytest.approx((70.5, 72.5))  # supcon is not label-free
    assert v["seed_spread"] == pytest.approx(pd.Series([0, 1]).std())
    with pytest.raises(KeyError, match="No baseline"):
        losses.baseline_value(_base(), "victim", "cifar10")
    heat = losses.few_label_heatmap(_grid(), "mnistm")
    assert heat.loc["mse", "mnist5k"] == pytest.approx(55.5)
