"""The full profile: its YAML holds the paper's setups, its data checks fail clearly, its query
sets are formed as documented, and the pipeline runs end to end on stand-in files (tiny scale)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from encsteal import full, standin

PARAMS = Path(__file__).resolve().parent.parent / "params" / "full.yaml"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return standin.write_tiny_data(tmp_path_factory.mktemp("data"))


def test_full_yaml_holds_the_paper_setups():
    exp = full.load_experiments(PARAMS)
    c = exp["cifar"]
    v = c["victim"]  # NOTES 5.1
    assert (v["method"], v["dataset"], v["arch"], v["epochs"], v["batch_size"]) == ("simclr", "cifar10", "resnet34", 200, 256)
    assert (v["optimizer"], v["lr"], v["weight_decay"], v["temperature"]) == ("adam", 3e-4, 1e-4, 0.07)
    assert (v["head_hidden"], v["head_dim"], v["num_train"]) == (512, 128, 50000)
    assert (c["steal"]["arch"], c["steal"]["epochs"]) == ("resnet34", 100)  # NOTES 5.2
    cfgs = {loss: full.steal_config(c, loss, 0) for loss in c["run_losses"]}
    assert set(cfgs) == {"mse", "infonce", "softnn", "supcon", "wasserstein", "barlow"}
    assert {k: cfg.batch_size for k, cfg in cfgs.items()} == {
        "mse": 64, "infonce": 256, "softnn": 256, "supcon": 256, "wasserstein": 64, "barlow": 256}
    assert (cfgs["infonce"].lr, cfgs["infonce"].loss_params) == (3e-4, {"temperature": 0.07})
    assert cfgs["softnn"].loss_params == {"temperature": 100.0}
    assert (cfgs["supcon"].optimizer, cfgs["supcon"].lr) == ("sgd", 0.05)
    assert all(cfg.optimizer == "adam" and cfg.weight_decay == 1e-4 for k, cfg in cfgs.items() if k != "supcon")
    q = c["queries"]
    assert q["cifar10-test-9k"] == {"dataset": "cifar10", "split": "test", "start": 0, "stop": 9000}
    assert (q["svhn-9k"]["dataset"], q["svhn-9k"]["num"]) == ("svhn", 9000)
    assert c["probes"]["cifar10"]["test_start"] == -1000 and c["image_size"] == 32
    assert set(c["probes"]) == {"cifar10", "stl10"}
    m = exp["imagenet"]  # NOTES 2.2, 5.4
    s = m["steal"]
    assert (s["arch"], s["loss"], s["loss_params"], s["batch_size"], s["optimizer"], s["lr"], s["epochs"]) == (
        "resnet50", "infonce", {"temperature": 0.1}, 512, "lars", 0.2, 100)
    assert {k: (d["dataset"], d["num"]) for k, d in m["queries"].items()} == {
        "cifar10-50k": ("cifar10", 50000), "svhn-50k": ("svhn", 50000), "svhn-250k": ("svhn", 250000),
        "imagenet-50k": ("imagenet", 50000), "imagenet-250k": ("imagenet", 250000)}
    assert m["queries"]["svhn-250k"]["splits"] == ["train", "extra"]
    assert set(m["probes"]) == {"cifar10", "cifar100", "stl10", "svhn", "fmnist"} and m["image_size"] == 224
    assert exp["runtime"]["amp"] is True and m["victim"]["download"] is False  # bf16 on GPUs; download opt-in


def test_tiny_overlay_is_valid_and_small():
    exp = full.load_experiments(PARAMS, tiny=True)
    assert exp["runtime"]["device"] == "cpu" and exp["runtime"]["amp"] is False
    assert set(exp["imagenet"]["queries"]) == {"cifar10-50k", "svhn-250k", "imagenet-50k"}  # `~` removed two
    assert exp["cifar"]["victim"]["epochs"] == 1


def test_missing_data_names_the_root_and_how_to_download(tmp_path, capsys):
    hub = full.DataHub(tmp_path / "nowhere")
    with pytest.raises(full.DataMissing) as err:
        hub.require({("cifar10", "train"), ("svhn", "extra"), ("imagenet", "train")})
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "svhn (extra)" in msg and "--download" in msg and "image-net.org" in msg
    assert str(tmp_path / "nowhere" / "imagenet" / "train") in msg
    # the command line stops before any training, with exit status 2
    code = full.main([str(PARAMS), "--only", "cifar", "--data-root", str(tmp_path / "nowhere"),
                      "--cache", str(tmp_path / "cache"), "--device", "cpu", "--no-amp"])
    assert code == 2 and "Data missing under the data root" in capsys.readouterr().err


def test_query_sets_are_formed_as_documented(tiny_root):
    hub = full.DataHub(tiny_root)
    with standin.accept_standin_files():
        first = hub.query_set({"dataset": "cifar10", "split": "test", "start": 0, "stop": 40})
        test = hub.load("cifar10", "test")
        assert torch.equal(first.images, test.images[:40])  # the test set minus its last images
        # "250K SVHN queries": distinct images drawn from train + extra (train alone is too small)
        n_train = len(hub.load("svhn", "train"))
        q = hub.query_set({"dataset": "svhn", "splits": ["train", "extra"], "num": 48})
        both = torch.cat([hub.load("svhn", "train").images, hub.load("svhn", "extra").images])
        rows = [int(torch.nonzero((both == x).flatten(1).all(1))[0]) for x in q.images]
        assert len(set(rows)) == 48 and max(rows) >= n_train
        with pytest.raises(ValueError, match="has only 80 images"):
            hub.query_set({"dataset": "svhn", "splits": ["train", "extra"], "num": 81})
    # ImageNet subsets: uniform over the whole folder (the first images in class order are one class)
    sub = hub.query_set({"dataset": "imagenet", "split": "train", "num": 8, "image_size": 16})
    assert len(sub) == 8 and len(torch.unique(sub.labels)) > 1
    again = full.DataHub(tiny_root).query_set({"dataset": "imagenet", "split": "train", "num": 8, "image_size": 16})
    assert torch.equal(sub.images, again.images)  # decoded once, then memory-mapped


def test_pipeline_runs_on_standin_files(tmp_path):
    """Both chapters end to end (victim -> steal -> probes) on stand-in files, scaled further down
    than --tiny (small CIFAR encoder) to keep the test short."""
    exp = full.load_experiments(PARAMS, tiny=True)
    exp = full.deep_merge(exp, {
        "cifar": {"victim": {"arch": "convnet"}, "steal": {"arch": "convnet"},
                  "probes": {"stl10": None}, "probe": {"epochs": 2}},
        "imagenet": {"queries": {"cifar10-50k": None, "svhn-250k": {"num": 16}, "imagenet-50k": None},
                     "probes": {"cifar100": None, "stl10": None, "svhn": None}, "probe": {"epochs": 2}},
    })
    exp = full.tiny_setup(exp, tmp_path / "tiny")
    with standin.accept_standin_files():
        results = full.run(exp, progress=False)
    cifar, imagenet = results["cifar"], results["imagenet"]
    assert set(cifar["steals"]) == {"cifar10-test-9k/mse", "cifar10-test-9k/infonce", "svhn-9k/mse", "svhn-9k/infonce"}
    assert cifar["steals"]["cifar10-test-9k/mse"]["queries"] == 16
    assert set(cifar["probes"]["victim"]) == {"cifar10"}
    assert imagenet["steals"]["svhn-250k"]["queries"] == 16
    assert set(imagenet["probes"]["svhn-250k"]) == {"cifar10", "fmnist"}
    assert all(0 <= r["accuracy"] <= 1 for e in imagenet["probes"].values() for r in e.values())
    assert (tmp_path / "tiny" / "out" / "results.json").exists()
    assert "| encoder |" in (tmp_path / "tiny" / "out" / "summary.md").read_text()
