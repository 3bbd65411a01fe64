"""Victim training: it learns, it is deterministic, and the cache reuses it."""

import pytest
import torch

from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.victims import VictimConfig, fit_victim, train_victim

TINY = dict(dataset="mnist5k", num_train=256, epochs=2, batch_size=64)


def _digits(n=256):
    d = load("mnist5k", "train")
    return d.subset(torch.arange(n))


def test_simclr_loss_decreases_and_seed_repeats():
    data = _digits()
    cfg = VictimConfig(**{**TINY, "epochs": 4}, lr=2e-3)
    a = fit_victim(cfg, data, device="cpu", progress=False)
    b = fit_victim(cfg, data, device="cpu", progress=False)
    curve = a.record["loss_curve"]
    assert curve[-1] < curve[0]
    assert curve == b.record["loss_curve"], "the same seed must give the same numbers on CPU"
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(a.encoder(x), b.encoder(x))


def test_supervised_victim_fits_its_labels():
    data = _digits(512)
    cfg = VictimConfig(**{**TINY, "num_train": 512, "epochs": 5}, method="supervised", lr=3e-3)
    v = fit_victim(cfg, data, device="cpu", progress=False)
    with torch.no_grad():
        acc = (v.head(v.encoder(data.float())).argmax(1) == data.labels).float().mean().item()
    assert acc > 0.5, f"a supervised victim should fit MNIST digits well above chance, got {acc}"


def test_train_victim_uses_the_cache(tmp_path):
    cache = ResultCache(tmp_path)
    cfg = VictimConfig(**{**TINY, "epochs": 1})
    first = train_victim(cfg, cache, device="cpu", progress=False)
    entries = list((tmp_path / "victim").glob("*.json"))
    assert len(entries) == 1
    second = train_victim(cfg, cache, device="cpu", progress=False)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(first.encoder(x), second.encoder(x))
    assert second.record["train_seconds"] == first.record["train_seconds"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "byol"}, "Allowed: simclr, supervised"),
        ({"dataset": "mnist"}, "Known data sets"),
        ({"arch": "vgg"}, "Known: convnet"),
        ({"epochs": 0}, "epochs must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
    ],
)
def test_bad_config_raises(change, message):
    with pytest.raises(ValueError, match=message):
        VictimConfig(**change)
