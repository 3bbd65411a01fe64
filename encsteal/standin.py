"""Tiny stand-in files in the real on-disk formats of the paper's data sets (for ``--tiny``).

No machine of this project can download CIFAR, SVHN, STL10 or ImageNet, so the full profile's
smoke run (``python -m encsteal.full params/full.yaml --tiny``) and its tests read a few images
written here in exactly the formats torchvision reads: the CIFAR Python-2 pickles, the SVHN
``.mat`` files, the STL10 column-major binaries, the Fashion-MNIST idx files and an ImageNet
``ImageFolder`` tree of JPEGs. Each class gets its own colour pattern (plus noise) so that the
probes have something to find.

Tiny files cannot match torchvision's md5 list; :func:`accept_standin_files` turns the md5 check
of torchvision's CIFAR/SVHN/STL10 modules into an existence check *inside its ``with`` block
only*. Real data is always checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361")

#: Images per split in the stand-in sets.
TINY_SIZES: dict[str, dict[str, int]] = {
    "cifar10": {"train": 64, "test": 48},
    "cifar100": {"train": 40, "test": 20},
    "svhn": {"train": 40, "extra": 40, "test": 20},
    "stl10": {"train": 30, "test": 20, "unlabeled": 10},
    "fmnist": {"train": 40, "test": 20},
    "imagenet": {"train": 24},
}


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python-2 ``str`` opcodes, like the official CIFAR pickles."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _py2_pickle(path: Path, obj: object) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def class_images(rng: np.random.Generator, labels: np.ndarray, channels: int, size: int) -> np.ndarray:
    """uint8 (N, C, size, size): a per-class stripe pattern and colour, plus noise."""
    n = len(labels)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, channels, size, size), dtype=np.float64)
    for i, y in enumerate(labels):
        y = int(y) % 100
        freq, angle = 1 + y % 5, np.pi * (y % 7) / 7
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        for c in range(channels):
            out[i, c] = wave * (0.3 + 0.7 * ((y * (c + 3)) % 10) / 9)
    out += rng.normal(0, 0.08, size=out.shape)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def write_cifar10(root: Path, rng: np.random.Generator, n_train: int, n_test: int) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    ytr, yte = np.arange(n_train) % 10, rng.integers(0, 10, n_test)
    xtr, xte = class_images(rng, ytr, 3, 32), class_images(rng, yte, 3, 32)
    for b, part in enumerate(np.array_split(np.arange(n_train), 5)):
        _py2_pickle(
            folder / f"data_batch_{b + 1}",
            {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                b"labels": [int(v) for v in ytr[part]],
                b"data": xtr[part].reshape(-1, 3072),
                b"filenames": [f"{i}.png".encode() for i in part],
            },
        )
    _py2_pickle(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in yte],
            b"data": xte.reshape(-1, 3072),
            b"filenames": [b"t.png"] * n_test,
        },
    )
    _py2_pickle(
        folder / "batches.meta",
        {b"num_cases_per_batch": 10000, b"num_vis": 3072, b"label_names": [c.encode() for c in CIFAR10_CLASSES]},
    )


def write_cifar100(root: Path, rng: np.random.Generator, n_train: int, n_test: int) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 100, n)
        _py2_pickle(
            folder / name,
            {
                b"filenames": [b"f.png"] * n,
                b"batch_label": name.encode(),
                b"fine_labels": [int(v) for v in y],
                b"coarse_labels": [int(v) // 5 for v in y],
                b"data": class_images(rng, y, 3, 32).reshape(-1, 3072),
            },
        )
    _py2_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)],
        },
    )


def write_svhn(root: Path, rng: np.random.Generator, sizes: dict[str, int]) -> None:
    import scipy.io

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        digits = rng.integers(0, 10, n)
        x = class_images(rng, digits, 3, 32)
        y = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)  # the .mat uses 10 for 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)), "y": y})


def write_stl10(root: Path, rng: np.random.Generator, sizes: dict[str, int]) -> None:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        y = rng.integers(0, 10, n)
        x = class_images(rng, y, 3, 96)
        np.ascontiguousarray(x.transpose(0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")  # column-major
        if split != "unlabeled":
            (y + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")  # labels 1..10 on disk
    (folder / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")


def write_fmnist(root: Path, rng: np.random.Generator, n_train: int, n_test: int) -> None:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = class_images(rng, y, 1, 28)[:, 0]
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())


def write_imagenet(root: Path, rng: np.random.Generator, n_train: int) -> None:
    """An ImageFolder tree ``root/imagenet/train/<wnid>/*.JPEG`` (JPEGs of varied sizes)."""
    from PIL import Image

    per_class = max(1, n_train // len(IMAGENET_WNIDS))
    for c, wnid in enumerate(IMAGENET_WNIDS):
        folder = root / "imagenet" / "train" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = (48 + 8 * (i % 3), 40 + 8 * (i % 2))
            arr = class_images(rng, np.array([c * 11]), 3, max(w, h))[0].transpose(1, 2, 0)[:h, :w]
            Image.fromarray(np.ascontiguousarray(arr)).save(folder / f"{wnid}_{i}.JPEG", format="JPEG", quality=90)


def write_tiny_data(root: str | os.PathLike, seed: int = 0) -> Path:
    """Write every stand-in set under ``root`` (the data-root layout of :mod:`encsteal.data.paper`)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    s = TINY_SIZES
    write_cifar10(root, rng, s["cifar10"]["train"], s["cifar10"]["test"])
    write_cifar100(root, rng, s["cifar100"]["train"], s["cifar100"]["test"])
    write_svhn(root, rng, s["svhn"])
    write_stl10(root, rng, s["stl10"])
    write_fmnist(root, rng, s["fmnist"]["train"], s["fmnist"]["test"])
    write_imagenet(root, rng, s["imagenet"]["train"])
    return root


@contextlib.contextmanager
def accept_standin_files() -> Iterator[None]:
    """Inside the block, torchvision's CIFAR/SVHN/STL10 loaders check only that files exist
    (tiny stand-ins cannot match the real md5 sums); the real check is restored on exit."""
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.stl10 as tv_stl10
    import torchvision.datasets.svhn as tv_svhn

    def exists(fpath: str | os.PathLike, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    modules = (tv_cifar, tv_svhn, tv_stl10)
    saved = [m.check_integrity for m in modules]
    try:
        for m in modules:
            m.check_integrity = exists
        yield
    finally:
        for m, f in zip(modules, saved):
            m.check_integrity = f
