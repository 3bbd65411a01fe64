"""The quick profile's data sets, the registry and its errors."""

import pytest
import torch

from encsteal.data import DATASETS, load, quick
from encsteal.data.quick import build_mnistm


@pytest.mark.parametrize(
    "name, shape, n_train, n_test, classes",
    [
        ("fmnist", (1, 28, 28), 60000, 10000, 10),
        ("mnist5k", (1, 28, 28), 4000, 1000, 10),
        ("digits", (1, 8, 8), 1438, 359, 10),
        ("mnistm", (3, 32, 32), 4000, 1000, 10),
        ("photocrops", (3, 32, 32), 3300, 1100, 11),
    ],
)
def test_quick_set_shapes_and_labels(name, shape, n_train, n_test, classes):
    train, test = load(name, "train"), load(name, "test")
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.shape == shape and train.images.dtype == torch.uint8
    assert train.num_classes == classes
    assert set(train.labels.tolist()) == set(range(classes)) == set(test.labels.tolist())


def test_fixed_splits_do_not_overlap_and_are_stable():
    a, b = load("mnist5k", "train"), load("mnist5k", "test")
    flat_a = {bytes(img.numpy()) for img in a.images}
    assert not any(bytes(img.numpy()) in flat_a for img in b.images)
    assert torch.equal(load("mnist5k", "train").images, a.images)


def test_fashion_mnist_matches_published_statistics():
    x = load("fmnist", "train").images.float() / 255
    assert x.mean().item() == pytest.approx(0.2860, abs=1e-3)
    assert x.std().item() == pytest.approx(0.3530, abs=1e-3)


def test_mnistm_is_digits_over_photos():
    digits = load("mnist5k", "train").images[:8]
    rgb = build_mnistm(digits, seed=0)
    assert rgb.shape == (8, 3, 32, 32)
    assert torch.equal(rgb, build_mnistm(digits, seed=0)), "deterministic for a seed"
    assert not torch.equal(rgb, build_mnistm(digits, seed=1))
    # Colour: the three channels differ (a grey image would have equal channels).
    assert (rgb[:, 0].float() - rgb[:, 1].float()).abs().mean() > 2


def test_unknown_name_and_split_errors():
    with pytest.raises(ValueError, match="Known data sets: .*cifar10.*fmnist"):
        load("cifar11")
    with pytest.raises(ValueError, match="Allowed: train, test"):
        load("mnist5k", "validation")
    assert "mnistm" in DATASETS and "imagenet" in DATASETS


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(quick, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        quick.prepare_fashion_mnist(tmp_path / "root", download=False)
    assert not (tmp_path / "root" / "FashionMNIST" / "raw").exists() or not any(
        (tmp_path / "root" / "FashionMNIST" / "raw").iterdir()
    )
