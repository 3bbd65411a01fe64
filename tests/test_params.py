"""Notebook parameters: wrong values stop with a message naming the allowed ones."""

import pytest

from encsteal.params import validate, victim_config


@pytest.mark.parametrize("params, message", [
    ({"profile": "huge"}, "Allowed: smoke, quick, full"),
    ({"losses": ["mse", "l1"]}, "Known losses: mse, infonce"),
    ({"losses": "[mse, infonce]"}, "Use a list"),
    ({"query_sets": ["cifar11"]}, "Known data sets"),
    ({"budget": 100, "budgets": [50, 200]}, "at most budget=100"),
    ({"steal_epochs": 0}, "positive integer"),
    ({"device": "tpu"}, "Allowed: auto, cpu, cuda"),
    ({"probe_cs": [0.1, -1]}, "positive"),
])
def test_bad_parameters_raise(params, message):
    with pytest.raises(ValueError, match=message):
        validate(params)


def test_validate_keeps_only_parameters_and_builds_configs():
    p = validate({"profile": "quick", "victim_num_train": 100, "victim_epochs": 2, "np": object(), "_x": 1})
    assert set(p) == {"profile", "victim_num_train", "victim_epochs"}
    cfg = victim_config(p, method="supervised")
    assert (cfg.method, cfg.num_train, cfg.epochs) == ("supervised", 100, 2)
