"""Tests for encsteal.data.paper: tiny files in the exact on-disk formats torchvision reads.

Real md5 checksums cannot match tiny files, so the CIFAR/SVHN/STL10 tests replace the
``check_integrity`` that those torchvision modules imported with an existence-only check
(``md5_free`` fixture); the loader itself never bypasses integrity (see
``test_cifar10_integrity_is_checked``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from encsteal.data.paper import PAPER_SETS, PAPER_SPLITS, load_paper_set
from encsteal.standin import _py2_pickle

WNIDS = ("n01440764", "n01443537", "n01484850")


# --------------------------------------------------------------------------- helpers


def _images(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    """Random uint8 NCHW images (random, so any transposition or channel mix-up shows)."""
    return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def _assert_set(ds, name: str, images: np.ndarray, labels: np.ndarray, classes) -> None:
    assert ds.name == name
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.images.is_contiguous()
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
    assert ds.classes == tuple(classes)


@pytest.fixture
def md5_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Existence-only integrity check for torchvision's CIFAR, SVHN and STL10 modules."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.stl10 as tv_stl10
    import torchvision.datasets.svhn as tv_svhn

    def exists(fpath: str | os.PathLike, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    for module in (tv_cifar, tv_svhn, tv_stl10):
        monkeypatch.setattr(module, "check_integrity", exists)


# ------------------------------------------------------------------- writers (formats)


def _write_cifar10(root: Path, rng: np.random.Generator):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, test_x = _images(rng, 10, 3, 32, 32), _images(rng, 4, 3, 32, 32)
    train_y, test_y = np.arange(10) % 10, np.array([3, 1, 4, 1])  # train labels name images
    for b in range(5):
        sl = slice(2 * b, 2 * b + 2)
        _py2_pickle(
            folder / f"data_batch_{b + 1}",
            {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                b"labels": [int(v) for v in train_y[sl]],
                b"data": train_x[sl].reshape(-1, 3072),  # R plane, G plane, B plane, row-major
                b"filenames": [f"img{i}.png".encode() for i in range(sl.start, sl.stop)],
            },
        )
    _py2_pickle(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in test_y],
            b"data": test_x.reshape(-1, 3072),
            b"filenames": [b"t.png"] * 4,
        },
    )
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _py2_pickle(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072})
    classes = [n.decode() for n in names]
    return (train_x, train_y), (test_x, test_y), classes


def _write_cifar100(root: Path, rng: np.random.Generator):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_x, test_x = _images(rng, 6, 3, 32, 32), _images(rng, 3, 3, 32, 32)
    train_y, test_y = np.array([0, 99, 42, 7, 7, 63]), np.array([5, 98, 0])
    for fname, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _py2_pickle(
            folder / fname,
            {
                b"filenames": [b"f.png"] * len(y),
                b"batch_label": fname.encode(),
                b"fine_labels": [int(v) for v in y],
                b"coarse_labels": [int(v) // 5 for v in y],
                b"data": x.reshape(-1, 3072),
            },
        )
    fine = [f"fine_{i:02d}".encode() for i in range(100)]
    coarse = [f"coarse_{i:02d}".encode() for i in range(20)]
    _py2_pickle(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse})
    return (train_x, train_y), (test_x, test_y), [n.decode() for n in fine]


def _write_svhn(root: Path, rng: np.random.Generator, split: str, n: int):
    import scipy.io

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    images = _images(rng, n, 3, 32, 32)
    digits = np.arange(n) % 10
    mat_y = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)  # 10 means 0
    mat_x = np.ascontiguousarray(images.transpose(2, 3, 1, 0))  # (H, W, C, N) as in the .mat
    scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": mat_x, "y": mat_y})
    return images, digits


def _write_stl10(root: Path, rng: np.random.Generator):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)

    def write_x(fname: str, x: np.ndarray) -> None:
        # the official binaries are column-major per channel: (N, C, W, H) in C order
        np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tofile(folder / fname)

    train_x, test_x, unl_x = (_images(rng, n, 3, 96, 96) for n in (3, 2, 4))
    train_y, test_y = np.array([0, 9, 4]), np.array([2, 2])
    write_x("train_X.bin", train_x)
    write_x("test_X.bin", test_x)
    write_x("unlabeled_X.bin", unl_x)
    (train_y + 1).astype(np.uint8).tofile(folder / "train_y.bin")  # labels 1..10 on disk
    (test_y + 1).astype(np.uint8).tofile(folder / "test_y.bin")
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(classes) + "\n")
    return (train_x, train_y), (test_x, test_y), unl_x, classes


def _write_fmnist(root: Path, rng: np.random.Generator):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        x = _images(rng, n, 1, 28, 28)[:, 0]
        y = np.arange(n, dtype=np.uint8) * 2 % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())
        out[prefix] = (x[:, None], y)
    return out["train"], out["t10k"]


def _halves(size: tuple[int, int], first, second, vertical: bool) -> Image.Image:
    """An image whose left/right (or top/bottom) halves have different colours."""
    w, h = size
    arr = np.empty((h, w, 3), dtype=np.uint8)
    if vertical:
        arr[: h // 2], arr[h // 2 :] = first, second
    else:
        arr[:, : w // 2], arr[:, w // 2 :] = first, second
    return Image.fromarray(arr)


def _write_imagenet(root: Path) -> dict[str, tuple[int, int]]:
    """3 classes x 4 JPEGs of different sizes/modes; returns file name -> (W, H)."""
    sizes = [(60, 30), (30, 50), (40, 40), (50, 36)]
    written = {}
    for c, wnid in enumerate(WNIDS):
        folder = root / "imagenet" / "train" / wnid
        folder.mkdir(parents=True)
        for i, size in enumerate(sizes):
            v = 250 - 3 * (4 * c + i)  # a distinct brightness makes every image unique
            img = _halves(size, (v, 0, 0), (0, 0, v), vertical=False)  # red | blue
            if i == 1:
                img = _halves(size, (0, v, 0), (v, v, v), vertical=True)  # green / white
            if c == 1 and i == 2:
                img = img.convert("L")  # ImageNet has a few greyscale JPEGs ...
            if c == 2 and i == 3:
                img = img.convert("CMYK")  # ... and a few CMYK ones
            name = f"{wnid}_{i}.JPEG"
            img.save(folder / name, format="JPEG", quality=95)
            written[name] = size
    (root / "imagenet" / "val" / WNIDS[0]).mkdir(parents=True)
    _halves((20, 20), (0, 0, 0), (0, 0, 0), False).save(root / "imagenet" / "val" / WNIDS[0] / "v.JPEG", format="JPEG")
    return written


# ---------------------------------------------------------------------------- tests


def test_constants() -> None:
    assert PAPER_SETS == ("cifar10", "cifar100", "stl10", "svhn", "fmnist", "imagenet")
    assert set(PAPER_SPLITS) == set(PAPER_SETS)
    assert PAPER_SPLITS["stl10"] == ("train", "test", "unlabeled")
    assert PAPER_SPLITS["svhn"] == ("train", "test", "extra")
    assert PAPER_SPLITS["imagenet"] == ("train", "val")


def test_cifar10_round_trip(tmp_path: Path, md5_free: None) -> None:
    (train_x, train_y), (test_x, test_y), classes = _write_cifar10(tmp_path, np.random.default_rng(0))
    _assert_set(load_paper_set("cifar10", "train", tmp_path), "cifar10", train_x, train_y, classes)
    _assert_set(load_paper_set("cifar10", "test", str(tmp_path)), "cifar10", test_x, test_y, classes)


def test_cifar10_subset_and_resize(tmp_path: Path, md5_free: None) -> None:
    (train_x, _), _, _ = _write_cifar10(tmp_path, np.random.default_rng(1))
    a = load_paper_set("cifar10", "train", tmp_path, max_images=4, seed=0)
    b = load_paper_set("cifar10", "train", tmp_path, max_images=4, seed=0)
    c = load_paper_set("cifar10", "train", tmp_path, max_images=4, seed=1)
    assert len(a) == 4 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    idx = a.labels  # train label i names image i
    assert torch.all(idx[1:] > idx[:-1])  # sorted by index
    assert not torch.equal(idx, torch.arange(4))  # not simply the first N
    assert not torch.equal(idx, c.labels)  # another seed, another subset
    assert torch.equal(a.images, torch.from_numpy(train_x)[idx])
    # more than available -> everything
    assert len(load_paper_set("cifar10", "train", tmp_path, max_images=1000)) == 10

    small = load_paper_set("cifar10", "train", tmp_path, image_size=16)
    assert small.shape == (3, 16, 16) and small.images.dtype == torch.uint8
    expected = F.resize(torch.from_numpy(train_x), [16, 16], antialias=True)
    assert torch.equal(small.images, expected)


def test_cifar10_integrity_is_checked(tmp_path: Path) -> None:
    """Without the test-only md5 bypass, tiny files fail torchvision's md5 check."""
    _write_cifar10(tmp_path, np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_paper_set("cifar10", "train", tmp_path)


def test_cifar100_round_trip(tmp_path: Path, md5_free: None) -> None:
    (train_x, train_y), (test_x, test_y), classes = _write_cifar100(tmp_path, np.random.default_rng(2))
    _assert_set(load_paper_set("cifar100", "train", tmp_path), "cifar100", train_x, train_y, classes)
    ds = load_paper_set("cifar100", "test", tmp_path)
    _assert_set(ds, "cifar100", test_x, test_y, classes)
    assert ds.num_classes == 100


def test_svhn_round_trip(tmp_path: Path, md5_free: None) -> None:
    rng = np.random.default_rng(3)
    train = _write_svhn(tmp_path, rng, "train", 12)
    extra = _write_svhn(tmp_path, rng, "extra", 3)
    digits = tuple(str(d) for d in range(10))
    ds = load_paper_set("svhn", "train", tmp_path)
    _assert_set(ds, "svhn", *train, digits)
    assert ds.labels[0] == 0 and ds.labels[10] == 0  # the .mat label 10 is digit 0
    _assert_set(load_paper_set("svhn", "extra", tmp_path), "svhn", *extra, digits)
    with pytest.raises(FileNotFoundError, match="svhn"):
        load_paper_set("svhn", "test", tmp_path)


def test_stl10_round_trip(tmp_path: Path, md5_free: None) -> None:
    (train_x, train_y), (test_x, test_y), unl_x, classes = _write_stl10(tmp_path, np.random.default_rng(4))
    _assert_set(load_paper_set("stl10", "train", tmp_path), "stl10", train_x, train_y, classes)
    _assert_set(load_paper_set("stl10", "test", tmp_path), "stl10", test_x, test_y, classes)
    unl = load_paper_set("stl10", "unlabeled", tmp_path)
    _assert_set(unl, "stl10", unl_x, np.full(4, -1), classes)

    # the paper's CIFAR-scale experiments use STL10 at 32x32
    small = load_paper_set("stl10", "unlabeled", tmp_path, image_size=32, max_images=2, seed=5)
    assert small.images.shape == (2, 3, 32, 32) and torch.all(small.labels == -1)
    again = load_paper_set("stl10", "unlabeled", tmp_path, image_size=32, max_images=2, seed=5)
    assert torch.equal(small.images, again.images)


def test_fmnist_round_trip(tmp_path: Path) -> None:
    from torchvision.datasets import FashionMNIST

    (train_x, train_y), (test_x, test_y) = _write_fmnist(tmp_path, np.random.default_rng(5))
    ds = load_paper_set("fmnist", "train", tmp_path)
    _assert_set(ds, "fmnist", train_x, train_y, FashionMNIST.classes)
    assert ds.shape == (1, 28, 28)
    _assert_set(load_paper_set("fmnist", "test", tmp_path), "fmnist", test_x, test_y, FashionMNIST.classes)
    assert load_paper_set("fmnist", "test", tmp_path, image_size=32).shape == (1, 32, 32)


def test_imagenet_folder(tmp_path: Path) -> None:
    _write_imagenet(tmp_path)
    ds = load_paper_set("imagenet", "train", tmp_path, image_size=16)
    assert ds.name == "imagenet" and ds.classes == WNIDS
    assert ds.images.shape == (12, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.labels, torch.arange(3).repeat_interleave(4))
    img = ds.images.int()
    # image 0 (60x30, red | blue): shorter side -> 16, centre crop keeps both halves
    assert img[0, 0, :, :3].min() > 200 and img[0, 2, :, :3].max() < 50  # left red
    assert img[0, 2, :, -3:].min() > 200 and img[0, 0, :, -3:].max() < 50  # right blue
    # image 1 (30x50, green / white): orientation kept, not transposed
    assert img[1, 1, :3].min() > 200 and img[1, 0, :3].max() < 50  # top green
    assert img[1, :, -3:].min() > 200  # bottom white
    # greyscale and CMYK JPEGs come out as 3-channel RGB
    grey = img[4 + 2]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    cmyk = img[8 + 3]
    assert cmyk[0, :, :3].min() > 180 and cmyk[2, :, -3:].min() > 180

    assert load_paper_set("imagenet", "val", tmp_path).images.shape == (1, 3, 224, 224)


def test_imagenet_subset_spans_classes(tmp_path: Path) -> None:
    _write_imagenet(tmp_path)
    full = load_paper_set("imagenet", "train", tmp_path, image_size=8)
    a = load_paper_set("imagenet", "train", tmp_path, image_size=8, max_images=4, seed=0)
    b = load_paper_set("imagenet", "train", tmp_path, image_size=8, max_images=4, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # the first 4 ImageFolder images are all class 0; a uniform subset is not
    assert len(set(a.labels.tolist())) > 1
    # each subset image is a row of the full set, in increasing row order
    rows = [int(torch.nonzero((full.images == x).flatten(1).all(1))[0]) for x in a.images]
    assert rows == sorted(rows) and len(set(rows)) == 4
    assert torch.equal(full.labels[rows], a.labels)


@pytest.mark.parametrize("name", ["stl1O", "CIFAR10", "mnist"])
def test_unknown_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError) as err:
        load_paper_set(name, "train", tmp_path)
    for known in PAPER_SETS:
        assert known in str(err.value)


@pytest.mark.parametrize(
    ("name", "split"), [("cifar10", "extra"), ("stl10", "train+unlabeled"), ("imagenet", "test"), ("svhn", "val")]
)
def test_unknown_split(tmp_path: Path, name: str, split: str) -> None:
    with pytest.raises(ValueError) as err:
        load_paper_set(name, split, tmp_path)
    for allowed in PAPER_SPLITS[name]:
        assert repr(allowed) in str(err.value)


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("stl10", "stl10_binary"),
        ("svhn", "svhn"),
        ("fmnist", os.path.join("FashionMNIST", "raw")),
    ],
)
def test_missing_data(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_paper_set(name, "train", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / folder) in msg
    assert "pass download=True (needs internet) or place the files there" in msg


def test_imagenet_missing_and_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="imagenet"):
        load_paper_set("imagenet", "val", tmp_path)
    with pytest.raises(ValueError) as err:
        load_paper_set("imagenet", "train", tmp_path, download=True)
    assert "downloaded automatically" in str(err.value)
    assert str(tmp_path / "imagenet" / "train") in str(err.value)


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_max_images(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="max_images"):
        load_paper_set("cifar10", "train", tmp_path, max_images=bad)
