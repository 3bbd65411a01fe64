"""The paper-scale chapters: the YAML holds the paper's setups, the pipeline runs end to end on
stand-in files (tiny scale), and the summary is a table of probe accuracies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from encsteal import standin
from encsteal.experiments import paper_scale
from encsteal.experiments.paper_scale import deep_merge, load_experiments, results_table, steal_config, summary_table

PARAMS = Path(__file__).resolve().parent.parent.parent / "params" / "full.yaml"


def test_full_yaml_holds_the_paper_setups():
    exp = load_experiments(PARAMS)
    c = exp["cifar"]
    v = c["victim"]  # book/paper_setup.md#setup-victim-cifar
    assert (v["method"], v["dataset"], v["arch"], v["epochs"], v["batch_size"]) == (
        "simclr",
        "cifar10",
        "resnet34",
        200,
        256,
    )
    assert (v["optimizer"], v["lr"], v["weight_decay"], v["temperature"]) == ("adam", 3e-4, 1e-4, 0.07)
    assert (v["head_hidden"], v["head_dim"], v["num_train"]) == (512, 128, 50000)
    assert (c["steal"]["arch"], c["steal"]["epochs"]) == ("resnet34", 100)  # book/paper_setup.md#setup-stealing-cifar
    cfgs = {loss: steal_config(c, loss, 0) for loss in c["run_losses"]}
    assert set(cfgs) == {"mse", "infonce", "softnn", "supcon", "wasserstein", "barlow"}
    assert {k: cfg.batch_size for k, cfg in cfgs.items()} == {
        "mse": 64,
        "infonce": 256,
        "softnn": 256,
        "supcon": 256,
        "wasserstein": 64,
        "barlow": 256,
    }
    assert (cfgs["infonce"].lr, cfgs["infonce"].loss_params) == (3e-4, {"temperature": 0.07})
    assert cfgs["softnn"].loss_params == {"temperature": 100.0}
    assert (cfgs["supcon"].optimizer, cfgs["supcon"].lr) == ("sgd", 0.05)
    assert all(cfg.optimizer == "adam" and cfg.weight_decay == 1e-4 for k, cfg in cfgs.items() if k != "supcon")
    q = c["queries"]
    assert q["cifar10-test-9k"] == {"dataset": "cifar10", "split": "test", "start": 0, "stop": 9000}
    assert (q["svhn-9k"]["dataset"], q["svhn-9k"]["num"]) == ("svhn", 9000)
    assert c["probes"]["cifar10"]["test_start"] == -1000 and c["image_size"] == 32
    assert set(c["probes"]) == {"cifar10", "stl10"}
    m = exp["imagenet"]  # book/paper_setup.md#setup-victim-imagenet, #setup-stealing-imagenet
    s = m["steal"]
    assert (s["arch"], s["loss"], s["loss_params"], s["batch_size"], s["optimizer"], s["lr"], s["epochs"]) == (
        "resnet50",
        "infonce",
        {"temperature": 0.1},
        512,
        "lars",
        0.2,
        100,
    )
    assert {k: (d["dataset"], d["num"]) for k, d in m["queries"].items()} == {
        "cifar10-50k": ("cifar10", 50000),
        "svhn-50k": ("svhn", 50000),
        "svhn-250k": ("svhn", 250000),
        "imagenet-50k": ("imagenet", 50000),
        "imagenet-250k": ("imagenet", 250000),
    }
    assert m["queries"]["svhn-250k"]["splits"] == ["train", "extra"]
    assert set(m["probes"]) == {"cifar10", "cifar100", "stl10", "svhn", "fmnist"} and m["image_size"] == 224
    assert exp["runtime"]["amp"] is True and m["victim"]["download"] is False  # bf16 on GPUs; download opt-in


def test_tiny_overlay_is_valid_and_small():
    exp = load_experiments(PARAMS, tiny=True)
    assert exp["runtime"]["device"] == "cpu" and exp["runtime"]["amp"] is False
    assert set(exp["imagenet"]["queries"]) == {"cifar10-50k", "svhn-250k", "imagenet-50k"}  # `~` removed two
    assert exp["cifar"]["victim"]["epochs"] == 1


def test_results_table_and_its_markdown():
    results = {
        "cifar": {
            "steals": {"q/mse": {"queries": 9000}},
            "probes": {
                "victim": {"cifar10": {"accuracy": 0.8012}, "stl10": {"accuracy": 0.7}},
                "q/mse": {"cifar10": {"accuracy": 0.5}, "stl10": {"accuracy": 0.45}},
            },
            "seconds": 1.0,
        },
        "imagenet": {"steals": {}, "probes": {"victim": {"svhn": {"accuracy": 0.6}}}, "seconds": 2.0},
    }
    table = results_table(results)
    assert list(table.index) == [("cifar", "victim"), ("cifar", "q/mse"), ("imagenet", "victim")]
    assert list(table.columns) == ["cifar10", "stl10", "svhn", "queries"]  # probe sets in order, then queries
    assert table.loc[("cifar", "victim"), "cifar10"] == 80.12 and table.loc[("cifar", "q/mse"), "queries"] == 9000
    assert pd.isna(table.loc[("cifar", "victim"), "queries"]) and pd.isna(table.loc[("imagenet", "victim"), "stl10"])
    md = summary_table(results)
    cifar, imagenet = md.split("### imagenet")
    assert cifar.startswith("### cifar") and "80.1" in cifar and "9000" in cifar and "svhn" not in cifar
    assert "60.0" in imagenet and "cifar10" not in imagenet and "nan" not in md and "<NA>" not in md
    assert results_table({}).empty and summary_table({}) == ""


def test_pipeline_runs_on_standin_files(tmp_path):
    """Both chapters end to end (victim -> steal -> probes) on stand-in files, scaled further down
    than --tiny (small CIFAR encoder) to keep the test short."""
    exp = load_experiments(PARAMS, tiny=True)
    exp = deep_merge(
        exp,
        {
            "cifar": {
                "victim": {"arch": "convnet"},
                "steal": {"arch": "convnet"},
                "probes": {"stl10": None},
                "probe": {"epochs": 2},
            },
            "imagenet": {
                "queries": {"cifar10-50k": None, "svhn-250k": {"num": 16}, "imagenet-50k": None},
                "probes": {"cifar100": None, "stl10": None, "svhn": None},
                "probe": {"epochs": 2},
            },
        },
    )
    exp = paper_scale.tiny_setup(exp, tmp_path / "tiny")
    with standin.accept_standin_files():
        results = paper_scale.run(exp, progress=False)
    cifar, imagenet = results["cifar"], results["imagenet"]
    assert set(cifar["steals"]) == {"cifar10-test-9k/mse", "cifar10-test-9k/infonce", "svhn-9k/mse", "svhn-9k/infonce"}
    assert cifar["steals"]["cifar10-test-9k/mse"]["queries"] == 16
    assert set(cifar["probes"]["victim"]) == {"cifar10"}
    assert imagenet["steals"]["svhn-250k"]["queries"] == 16
    assert set(imagenet["probes"]["svhn-250k"]) == {"cifar10", "fmnist"}
    assert all(0 <= r["accuracy"] <= 1 for e in imagenet["probes"].values() for r in e.values())
    assert (tmp_path / "tiny" / "out" / "results.json").exists()
    summary = (tmp_path / "tiny" / "out" / "summary.md").read_text()
    assert "### cifar" in summary and "### imagenet" in summary and "cifar10-test-9k/mse" in summary
