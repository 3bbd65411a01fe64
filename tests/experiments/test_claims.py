"""Verdicts are computed from numbers: each judge says 'reproduced' or not on constructed inputs."""

import pandas as pd
import pytest

from encsteal.experiments import claims


def _loss_results(values):
    return {
        "means": [
            {"loss": l, "query_set": "q", "downstream": "d", "few_label": v, "probe": v} for l, v in values.items()
        ],
        "budget": 1000,
        "values": {"victim_probe": 80.0},
    }


def test_losses_verdicts():
    good = _loss_results({"infonce": 80, "softnn": 78, "mse": 75, "wasserstein": 70, "barlow": 60})
    assert claims.judge_losses(good).verdict == "reproduced"
    bad = _loss_results({"infonce": 70, "softnn": 68, "mse": 75, "wasserstein": 60, "barlow": 72})
    assert claims.judge_losses(bad).verdict == "not reproduced"


def test_few_queries_threshold():
    r = _loss_results({"infonce": 78, "mse": 70, "barlow": 60})  # query set and task "q" / "d"
    assert claims.judge_few_queries(r, victim_probe=80.0, num_train=10_000).verdict == "reproduced"
    assert claims.judge_few_queries(r, victim_probe=90.0, num_train=10_000).verdict == "not reproduced"
    assert claims.judge_few_queries(r, victim_probe=80.0, num_train=4_000).verdict == "not reproduced"
    # close to the victim, but no better than a random encoder: only partly
    assert claims.judge_few_queries(r, 80.0, 10_000, random_probe=77.5).verdict == "partly reproduced"
    assert claims.judge_few_queries(r, 80.0, 10_000, random_probe=70.0).verdict == "reproduced"


def test_defense_verdict():
    table = pd.DataFrame({"strength": [0, 1, 3], "legit": [80, 70, 50], "attacker_mse": [82, 81, 78]})
    assert claims.judge_defense(table, ["attacker_mse"]).verdict == "reproduced"
    table = pd.DataFrame({"strength": [0, 1], "legit": [80, 79], "attacker_mse": [82, 60]})
    assert claims.judge_defense(table, ["attacker_mse"]).verdict == "not reproduced"


def test_watermark_verdict():
    table = pd.DataFrame(
        {
            "role": ["victim", "stolen", "stolen", "reference", "random"],
            "watermark_acc": [95, 80, 75, 55, 50],
            "stolen": [True, True, False, False, False],
        }
    )
    assert claims.judge_watermark(table).verdict == "reproduced"
    table.loc[3, "stolen"] = True
    assert claims.judge_watermark(table).verdict == "not reproduced"


def test_leakage_and_cost():
    r = {
        "values": {
            "budget": 2000,
            "repr_few": 80,
            "prob_few": 75,
            "label_few": 70,
            "train_usd": 10.0,
            "steal_usd": 0.5,
            "breakeven": 5.0,
            "price_per_1k": 1.0,
            "cpu_price_per_hour": 0.1,
        }
    }
    assert claims.judge_leakage(r).verdict == "reproduced"
    assert claims.judge_cost(r).verdict == "reproduced"
    r["values"]["steal_usd"] = 20.0
    assert claims.judge_cost(r).verdict == "not reproduced"


def test_a_stale_chapter_is_an_error_and_a_missing_one_not_evaluated():
    from encsteal.notebook import StaleResults

    def missing(chapter):
        raise FileNotFoundError(chapter)

    table = claims.judge_all(missing)
    assert set(table.verdict) == {"not evaluated"}
    assert claims.verdict_counts(table)["n_missing"] == len(table)

    def stale(chapter):
        raise StaleResults(chapter)

    with pytest.raises(StaleResults):
        claims.judge_all(stale)
