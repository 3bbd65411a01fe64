"""The full profile's command line: it stops with exit status 2 and a clear message when data is
missing, and prints the resolved configuration with its overrides (--dry-run)."""

from __future__ import annotations

from pathlib import Path

import yaml

from encsteal import full

PARAMS = Path(__file__).resolve().parent.parent / "params" / "full.yaml"


def test_missing_data_stops_before_training_with_status_2(tmp_path, capsys):
    code = full.main(
        [
            str(PARAMS),
            "--only",
            "cifar",
            "--data-root",
            str(tmp_path / "nowhere"),
            "--cache",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
            "--no-amp",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Data missing under the data root" in err and str(tmp_path / "nowhere") in err


def test_dry_run_prints_the_resolved_configuration(tmp_path, capsys):
    code = full.main(
        [
            str(PARAMS),
            "--tiny",
            "--dry-run",
            "--only",
            "imagenet",
            "--device",
            "cpu",
            "--no-amp",
            "--num-workers",
            "3",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert code == 0 and printed["chapters"] == ["imagenet"]
    runtime = printed["experiments"]["runtime"]
    assert (runtime["device"], runtime["amp"], runtime["num_workers"]) == ("cpu", False, 3)
    assert printed["experiments"]["out"] == str(tmp_path / "out")
    assert printed["experiments"]["cifar"]["victim"]["epochs"] == 1  # the tiny overlay
