"""Loaders for the data sets used in the paper, built on torchvision's own data set classes.

Dziedzic et al., "On the Difficulty of Defending Self-Supervised Learning against Model
Extraction" (ICML 2022) evaluates victim and stolen encoders on CIFAR10, CIFAR100, STL10,
SVHN, Fashion-MNIST (F-MNIST) and ImageNet. :func:`load_paper_set` turns any split of these
into an in-memory :class:`~encsteal.data.imageset.ImageSet` (uint8, N x C x H x W).

Expected layout under ``root`` (the torchvision layouts, except SVHN and ImageNet):

===========  ==============================================================================
cifar10      ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
cifar100     ``root/cifar-100-python/{train,test,meta}``
stl10        ``root/stl10_binary/{train,test}_{X,y}.bin``, ``unlabeled_X.bin``, ``class_names.txt``
svhn         ``root/svhn/{train,test,extra}_32x32.mat`` (a ``svhn`` sub-folder, so that all
             sets can share one ``root``; torchvision itself would put the files in ``root``)
fmnist       ``root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
imagenet     ``root/imagenet/<split>/<wnid>/*.JPEG`` (an ImageFolder tree; never downloaded)
===========  ==============================================================================

The paper's setup (book/paper_setup.md#setup-probes): in the CIFAR-scale experiments STL10 is resized to 32x32 (pass
``image_size=32``);
Fashion-MNIST keeps its single grey channel here (C = 1), callers that need RGB repeat it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encsteal.data.imageset import ImageSet

PAPER_SETS: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "svhn", "fmnist", "imagenet")

PAPER_SPLITS: dict[str, tuple[str, ...]] = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train", "test", "unlabeled"),
    "svhn": ("train", "test", "extra"),
    "fmnist": ("train", "test"),
    "imagenet": ("train", "val"),
}

#: Folder (relative to ``root``) each set is read from; used in error messages.
_DATA_FOLDERS: dict[str, str] = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "stl10": "stl10_binary",
    "svhn": "svhn",
    "fmnist": os.path.join("FashionMNIST", "raw"),
    "imagenet": "imagenet",
}

_IMAGENET_DEFAULT_SIZE = 224


def load_paper_set(
    name: str,
    split: str,
    root: str | os.PathLike,
    download: bool = False,
    max_images: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
) -> ImageSet:
    """Load one split of a paper data set into memory as a uint8 :class:`ImageSet`.

    Args:
        name: one of :data:`PAPER_SETS` (the paper's CIFAR10, CIFAR100, STL10, SVHN, F-MNIST,
            ImageNet).
        split: one of ``PAPER_SPLITS[name]``.
        root: folder holding the data (see the module docstring for the layout).
        download: let torchvision download the files (needs internet; not for ImageNet).
        max_images: keep a seeded, uniformly random subset of this many images, drawn across
            the whole split and kept in index order. (The official code took the first N
            ImageFolder images instead, which are sorted by class and so cover few classes.)
        seed: seed of the ``torch.Generator`` that draws the subset; same seed, same subset.
        image_size: resize to ``image_size x image_size`` (antialiased). For ImageNet the
            shorter side is resized and the centre cropped; default 224 there, while the other
            sets keep their native size when ``None`` (the paper uses 32 for STL10).

    Raises:
        ValueError: unknown ``name`` or ``split``, ``max_images <= 0``, ``image_size <= 0``,
            or ``download=True`` for ImageNet.
        FileNotFoundError: the data is missing (or fails torchvision's integrity check) and
            ``download`` is False.
    """
    if name not in PAPER_SETS:
        raise ValueError(f"unknown paper data set {name!r}; expected one of {PAPER_SETS}")
    allowed = PAPER_SPLITS[name]
    if split not in allowed:
        raise ValueError(f"unknown split {split!r} for {name!r}; expected one of {allowed}")
    if max_images is not None and max_images <= 0:
        raise ValueError(f"max_images must be a positive integer or None, got {max_images}")
    if image_size is not None and image_size <= 0:
        raise ValueError(f"image_size must be a positive integer or None, got {image_size}")
    root = Path(root)

    if name == "imagenet":
        return _load_imagenet(split, root, download, max_images, seed, image_size)

    ds = _torchvision_set(name, split, root, download)
    images, labels, classes = _arrays(name, ds)
    keep = _subset_indices(len(labels), max_images, seed)
    if keep is not None:
        images, labels = images[keep], labels[keep]
    images = torch.as_tensor(np.ascontiguousarray(images))
    if images.ndim == 3:  # Fashion-MNIST: (N, H, W) -> (N, 1, H, W)
        images = images.unsqueeze(1)
    if image_size is not None and tuple(images.shape[-2:]) != (image_size, image_size):
        images = _resize_square(images, image_size)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return ImageSet(name, images.contiguous(), labels, classes)


def _missing_error(name: str, root: Path, cause: str) -> FileNotFoundError:
    folder = root / _DATA_FOLDERS[name]
    return FileNotFoundError(
        f"{name} data not found (or corrupted) in {folder} ({cause}); "
        "pass download=True (needs internet) or place the files there."
    )


def _torchvision_set(name: str, split: str, root: Path, download: bool) -> Any:
    """Build the torchvision data set, turning its bare RuntimeError into a clear error."""
    from torchvision import datasets

    try:
        if name == "cifar10":
            return datasets.CIFAR10(str(root), train=split == "train", download=download)
        if name == "cifar100":
            return datasets.CIFAR100(str(root), train=split == "train", download=download)
        if name == "stl10":
            return datasets.STL10(str(root), split=split, download=download)
        if name == "svhn":
            return datasets.SVHN(str(root / "svhn"), split=split, download=download)
        if name == "fmnist":
            return datasets.FashionMNIST(str(root), train=split == "train", download=download)
    except (RuntimeError, FileNotFoundError) as err:
        # torchvision raises a bare RuntimeError("Dataset not found or corrupted. You can use
        # download=True ...") when its existence/md5 check fails. With download=True the
        # failure is a download problem: let torchvision's own error through unchanged.
        if download:
            raise
        raise _missing_error(name, root, str(err).split(". ")[0].rstrip(".")) from err
    raise AssertionError(name)  # unreachable: name was validated


def _arrays(name: str, ds: Any) -> tuple[Any, Any, tuple[str, ...]]:
    """Images (NCHW, NHWC->NCHW, or NHW), labels and class names straight from ``ds``."""
    if name in ("cifar10", "cifar100"):
        images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # NHWC -> NCHW (a view)
        return images, np.asarray(ds.targets), tuple(ds.classes)
    if name == "svhn":  # .data is NCHW; label 10 already mapped to digit 0 by torchvision
        return ds.data, ds.labels, tuple(str(d) for d in range(10))
    if name == "stl10":  # .data is NCHW; unlabeled split has labels -1
        classes = tuple(getattr(ds, "classes", None) or ())
        return ds.data, ds.labels, classes
    if name == "fmnist":  # .data is a (N, H, W) uint8 tensor
        return ds.data.numpy(), ds.targets.numpy(), tuple(ds.classes)
    raise AssertionError(name)


def _resize_square(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Antialiased resize of uint8 (N, C, H, W) to (N, C, size, size), in chunks of images
    so that large splits (STL10 unlabeled: 100k x 96x96) need no huge intermediate."""
    from torchvision.transforms.v2 import functional as F

    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        out[start : start + chunk] = F.resize(images[start : start + chunk], [size, size], antialias=True)
    return out


def _subset_indices(n: int, max_images: int | None, seed: int) -> torch.Tensor | None:
    """Sorted indices of a uniform random subset of size ``max_images``, or None for all."""
    if max_images is None or max_images >= n:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:max_images].sort().values


def _load_imagenet(
    split: str,
    root: Path,
    download: bool,
    max_images: int | None,
    seed: int,
    image_size: int | None,
) -> ImageSet:
    """ImageNet from an ImageFolder tree ``root/imagenet/<split>/<wnid>/*.JPEG``.

    Only the chosen subset is decoded: each image is converted to RGB, its shorter side
    resized to ``image_size`` (default 224) and the centre cropped to a square.
    Class names are the folder names (WordNet ids), sorted as ImageFolder sorts them.
    """
    folder = root / "imagenet" / split
    if download:
        raise ValueError(
            "ImageNet cannot be downloaded automatically (its licence requires a manual "
            f"download); place it at {folder} as <wnid>/*.JPEG folders and use download=False"
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"imagenet data not found: expected an ImageFolder tree at {folder} "
            "(<wnid>/*.JPEG); ImageNet cannot be downloaded automatically, place the files there"
        )
    from PIL import Image
    from torchvision import datasets
    from torchvision.transforms.v2 import functional as F

    try:
        ds = datasets.ImageFolder(str(folder))
    except FileNotFoundError as err:  # no class folders / no images
        raise FileNotFoundError(f"imagenet data not usable in {folder}: {err}") from err
    size = _IMAGENET_DEFAULT_SIZE if image_size is None else image_size
    keep = _subset_indices(len(ds.samples), max_images, seed)
    indices = range(len(ds.samples)) if keep is None else keep.tolist()

    images = torch.empty((len(indices), 3, size, size), dtype=torch.uint8)
    labels = torch.empty(len(indices), dtype=torch.int64)
    for row, idx in enumerate(indices):
        path, target = ds.samples[idx]
        with Image.open(path) as img:
            x = F.pil_to_tensor(img.convert("RGB"))
        x = F.resize(x, [size], antialias=True)  # shorter side -> size
        images[row] = F.center_crop(x, [size, size])
        labels[row] = target
    return ImageSet("imagenet", images, labels, tuple(ds.classes))
