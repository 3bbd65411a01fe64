"""The parameter schema: defaults, profiles, checks with messages naming the allowed values."""

import json
from pathlib import Path

import pytest

from encsteal import notebook, params
from encsteal.params import Params, chapter_parameters, resolve, validate, victim_config

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"profile": "huge"}, "Allowed: smoke, quick, full"),
        ({"losses": ["mse", "l1"]}, "Known losses: mse, infonce"),
        ({"losses": "[mse, infonce]"}, "Use a list"),
        ({"query_sets": ["cifar11"]}, "Known data sets"),
        ({"budgets": [50, 50]}, "List each budget once"),
        ({"steal_epochs": 0}, "positive integer"),
        ({"device": "tpu"}, "Allowed: auto, cpu, cuda"),
        ({"probe_cs": [0.1, -1]}, "positive"),
        ({"watermark_task": "three_way"}, "Allowed: binary, four_way"),
        ({"loss_settings": {"infonce": {"temprature": 0.1}}}, "temprature"),
        ({"loss_settings": {"l1": {}}}, "Known losses"),
        ({"budjet": 10}, "Did you mean 'budget'"),
    ],
)
def test_bad_parameters_raise(values, message):
    with pytest.raises(ValueError, match=message):
        validate(values)


def test_profiles_overlay_the_schema_defaults():
    quick, smoke = resolve("quick"), resolve("smoke")
    assert quick.budget == Params().budget and quick.profile == "quick"
    assert smoke.budget < quick.budget and smoke.profile == "smoke"
    assert smoke.loss_settings == quick.loss_settings  # smoke extends quick (base: quick)
    assert quick.loss_settings["infonce"] == {"temperature": 0.1}
    assert resolve("smoke", {"seed": 3, "budget": None}).seed == 3  # None = the profile's value


def test_a_chapter_rejects_parameters_it_does_not_declare():
    with pytest.raises(ValueError, match="not used by chapter 'claims'"):
        resolve("smoke", {"budget": 5}, chapter="claims")
    with pytest.raises(ValueError, match="parameters of chapter 'losses' are: profile"):
        resolve("smoke", {"budjet": 5}, chapter="losses")


def test_configs_follow_the_parameters():
    p = resolve("smoke", {"victim_num_train": 100, "victim_epochs": 2})
    cfg = victim_config(p, method="supervised")
    assert (cfg.method, cfg.num_train, cfg.epochs, cfg.temperature) == ("supervised", 100, 2, p.victim_temperature)
    assert [c.seed for c in params.reference_configs(p)] == p.reference_seeds


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_notebook_declares_exactly_its_schema_parameters(path):
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "one papermill parameters cell"
    chapter = path.stem.split("_", 1)[1]
    assert "".join(cells[0]["source"]) == notebook.parameters_cell(chapter)
    assert chapter_parameters(chapter)[0] == "profile"
