"""Chapter 1's tables and headline numbers, from synthetic grids."""

import pandas as pd
import pytest

from encsteal import cost
from encsteal.experiments import api_cost

APIS = ["SSL: representation", "supervised: label", "supervised: probabilities", "supervised model: representation"]


def _leak():
    rows = []
    for i, api in enumerate(APIS):
        for budget in (100, 200):
            for task in ("fmnist", "mnistm"):
                rows.append(
                    {
                        "API": api,
                        "budget": budget,
                        "queries_paid": budget,
                        "downstream": task,
                        "attack_seconds": 10.0,
                        "few_label": 10.0 * i + budget / 100 + (task == "mnistm"),
                    }
                )
    return pd.DataFrame(rows)


def _outputs():
    return pd.DataFrame({"values returned": [256, 1, 10, 256]}, index=pd.Index(APIS, name="API"))


def test_leakage_table_has_one_cell_per_api_task_budget():
    table = api_cost.leakage_table(_leak())
    assert table.shape == (4, 4)
    assert table.loc["supervised: label", ("mnistm", 200)] == pytest.approx(10 + 2 + 1)


def test_cost_table_and_comparison():
    prices = cost.Prices(compute_per_hour=3.6, api_per_1k=1.0)  # 0.001 USD per second
    costs = api_cost.cost_table(100.0, _leak(), 200, prices)
    assert list(costs.usd) == pytest.approx([0.1, 0.2, 0.01])
    bars = api_cost.cost_comparison(costs)
    assert bars["steal (ours)"] == pytest.approx(0.21) and bars["train ResNet-50 SSL (quoted)"] > 1000
    with pytest.raises(ValueError, match="budget 300"):
        api_cost.cost_table(100.0, _leak(), 300, prices)


def test_headline_reads_the_largest_budget_on_the_transfer_task():
    prices = cost.Prices(compute_per_hour=3.6, api_per_1k=1.0)
    v = api_cost.headline(_outputs(), _leak(), 100.0, prices, "mnistm")
    assert v["budget"] == 200 and v["repr_dim"] == 256 and v["label_dim"] == 1
    assert (v["ssl_repr_few"], v["label_few"], v["prob_few"], v["repr_few"]) == pytest.approx((3, 13, 23, 33))
    assert v["train_usd"] == pytest.approx(0.1) and v["steal_usd"] == pytest.approx(0.21)
    assert v["train_over_steal"] == pytest.approx(0.1 / 0.21)
