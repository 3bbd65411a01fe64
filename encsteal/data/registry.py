"""One entry point for every data set: ``load(name, split)``."""

from __future__ import annotations

import os

from encsteal.data.imageset import ImageSet
from encsteal.data.paper import PAPER_SETS, load_paper_set
from encsteal.data.quick import load_digits, load_fmnist, load_mnist5k, load_mnistm, load_photocrops

QUICK_SETS: tuple[str, ...] = ("fmnist", "mnist5k", "mnistm", "digits", "photocrops")
DATASETS: tuple[str, ...] = tuple(sorted(set(QUICK_SETS) | set(PAPER_SETS)))
QUICK_SPLITS: tuple[str, ...] = ("train", "test")


def check_dataset(name: str) -> str:
    """Return ``name`` if it is a known data set, else raise a ValueError listing them."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}. Known data sets: {', '.join(DATASETS)}.")
    return name


def load(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    **options: object,
) -> ImageSet:
    """Load a data set split as an in-memory :class:`ImageSet`.

    Quick sets (``fmnist``, ``mnist5k``, ``mnistm``, ``digits``) come from installed packages;
    the paper's sets (``cifar10``, ``cifar100``, ``stl10``, ``svhn``, ``imagenet``) are read by
    torchvision from ``root`` (downloaded there only when ``download=True``). ``options`` go to
    :func:`encsteal.data.paper.load_paper_set` (``max_images``, ``seed``, ``image_size``).
    """
    check_dataset(name)
    if name in QUICK_SETS:
        if split not in QUICK_SPLITS:
            raise ValueError(f"Unknown split {split!r} for {name!r}. Allowed: {', '.join(QUICK_SPLITS)}.")
        if options:
            raise TypeError(f"{name!r} takes no options; got {sorted(options)}.")
        if name == "fmnist":
            return load_fmnist(split, root, download)
        loaders = {"mnist5k": load_mnist5k, "mnistm": load_mnistm, "digits": load_digits, "photocrops": load_photocrops}
        return loaders[name](split)
    return load_paper_set(name, split, root=_paper_root(root), download=download, **options)  # type: ignore[arg-type]


def _paper_root(root: str | os.PathLike | None) -> str:
    from encsteal.paths import data_root

    return str(data_root(root))
