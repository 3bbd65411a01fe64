"""The paper-scale data hub: every data set of the paper's tables from one data root, checked up
front (a missing set stops the run with the data root and how to get it), loaded once, and
ImageNet subsets decoded once into memory-mapped files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encsteal import distributed
from encsteal.data.imageset import ImageSet
from encsteal.data.paper import load_paper_set
from encsteal.paths import cache_root, data_root

DOWNLOADABLE: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "svhn", "fmnist")

EXPECTED_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "cifar10": {
        "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
        + ("cifar-10-batches-py/batches.meta",),
        "test": ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"),
    },
    "cifar100": {
        "train": ("cifar-100-python/train", "cifar-100-python/meta"),
        "test": ("cifar-100-python/test", "cifar-100-python/meta"),
    },
    "stl10": {
        s: (
            "stl10_binary/train_X.bin",
            "stl10_binary/train_y.bin",
            "stl10_binary/test_X.bin",
            "stl10_binary/test_y.bin",
            "stl10_binary/unlabeled_X.bin",
        )
        for s in ("train", "test", "unlabeled")
    },
    "svhn": {s: (f"svhn/{s}_32x32.mat",) for s in ("train", "test", "extra")},
    "fmnist": {
        "train": ("FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/train-labels-idx1-ubyte"),
        "test": ("FashionMNIST/raw/t10k-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
    },
}
"""The files each (data set, split) reads under the data root (ImageNet: an ImageFolder tree instead)."""


class DataMissing(FileNotFoundError):
    """A data set the run needs is not under the data root (the message says how to get it)."""


def log(msg: str) -> None:
    """A progress line of the paper-scale run (printed by rank 0 only)."""
    if distributed.is_main():
        print(f"[full] {msg}", flush=True)


class DataHub:
    """Loads the paper's data sets from one data root, with clear errors and an image cache.

    ImageNet subsets (JPEG decoding takes long) are decoded once, by rank 0, into a uint8
    ``.npy`` file under ``<cache>/images/`` and memory-mapped by every process afterwards.
    """

    def __init__(
        self,
        root: str | os.PathLike | None,
        download: bool = False,
        cache_dir: str | os.PathLike | None = None,
        seed: int = 0,
    ):
        self.root, self.download, self.seed = data_root(root), download, seed
        self.cache_dir = Path(cache_root(cache_dir)) / "images"
        self._memo: dict[tuple, ImageSet] = {}

    # -- presence -------------------------------------------------------------------------
    def missing(self, needs: set[tuple[str, str]]) -> list[str]:
        """Human-readable lines for every (data set, split) in ``needs`` that is not there."""
        lines = []
        for name, split in sorted(needs):
            if name == "imagenet":
                folder = self.root / "imagenet" / split
                if not (folder.is_dir() and any(p.is_dir() for p in folder.iterdir())):
                    lines.append(f"imagenet ({split}): expected an ImageFolder tree {folder}/<wnid>/*.JPEG")
                continue
            files = [self.root / f for f in EXPECTED_FILES[name][split]]
            absent = [f for f in files if not f.exists()]
            if name == "fmnist" and absent:
                from encsteal.paths import DEBIAN_FASHION_MNIST

                if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
                    continue  # the quick loader decompresses the Debian package's copy
            if absent:
                more = f" (+{len(absent) - 1} more)" if len(absent) > 1 else ""
                lines.append(f"{name} ({split}): expected {absent[0]}{more}")
        return lines

    def require(self, needs: set[tuple[str, str]]) -> None:
        """Download what can be downloaded (``download=True``, rank 0 first), then fail with one
        message listing everything still missing."""
        if self.download:
            if distributed.is_main():
                for name, split in sorted(needs):
                    if name in DOWNLOADABLE and self.missing({(name, split)}):
                        log(f"downloading {name} ({split}) into {self.root}")
                        self._load(name, split, download=True)
            distributed.barrier()
        lines = self.missing(needs)
        if lines:
            raise DataMissing(missing_message(self.root, lines))

    # -- loading --------------------------------------------------------------------------
    def _load(self, name: str, split: str, download: bool = False, **opts: Any) -> ImageSet:
        try:
            if name == "fmnist":
                from encsteal.data.quick import prepare_fashion_mnist

                prepare_fashion_mnist(self.root, download)
            return load_paper_set(name, split, self.root, download=download, **opts)
        except FileNotFoundError as err:
            raise DataMissing(missing_message(self.root, [f"{name} ({split}): {err}"])) from err

    def load(self, name: str, split: str, **opts: Any) -> ImageSet:
        key = (name, split, tuple(sorted(opts.items())))
        if key not in self._memo:
            if name == "imagenet":
                self._memo[key] = self._cached_images(name, split, opts)
            else:
                self._memo[key] = self._load(name, split, **opts)
        return self._memo[key]

    def _cached_images(self, name: str, split: str, opts: dict) -> ImageSet:
        described = json.dumps([str(self.root), name, split, sorted(opts.items())])
        tag = hashlib.sha256(described.encode()).hexdigest()[:16]
        stem = self.cache_dir / f"{name}-{split}-{tag}"
        done = stem.with_suffix(".json")
        if not done.exists() and distributed.is_main():
            log(f"decoding {name} ({split}, {opts}) once into {stem}.npy")
            ds = self._load(name, split, **opts)
            stem.parent.mkdir(parents=True, exist_ok=True)
            np.save(stem.with_suffix(".images.npy"), ds.images.numpy())
            np.save(stem.with_suffix(".labels.npy"), ds.labels.numpy())
            done.write_text(json.dumps({"classes": list(ds.classes), "n": len(ds)}))
        distributed.barrier()
        meta = json.loads(done.read_text())
        images = torch.from_numpy(np.load(stem.with_suffix(".images.npy"), mmap_mode="c"))
        labels = torch.from_numpy(np.load(stem.with_suffix(".labels.npy")))
        return ImageSet(name, images, labels, tuple(meta["classes"]))

    # -- the sets the chapters use ----------------------------------------------------------
    def query_set(self, spec: dict) -> ImageSet:
        """Query images for ``spec``: ``dataset``, ``split`` (or ``splits``, concatenated), then
        ``start``/``stop`` (a fixed range, e.g. CIFAR10 test minus its last 1,000) or ``num``
        (a uniform random subset over the whole split(s), seeded; for ImageNet drawn across all
        class folders)."""
        name, seed = spec["dataset"], int(spec.get("seed", self.seed))
        splits = spec.get("splits") or [spec.get("split", "train")]
        if name == "imagenet":
            if len(splits) != 1:
                raise ValueError("ImageNet queries come from one split.")
            return self.load(
                "imagenet", splits[0], max_images=spec.get("num"), seed=seed, image_size=spec.get("image_size", 224)
            )
        parts = [self.load(name, s) for s in splits]
        data = (
            parts[0]
            if len(parts) == 1
            else ImageSet(
                name, torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), parts[0].classes
            )
        )
        if "start" in spec or "stop" in spec:
            data = data.subset(torch.arange(len(data))[slice(spec.get("start"), spec.get("stop"))])
        if spec.get("num") is not None:
            num = int(spec["num"])
            if num > len(data):
                raise ValueError(
                    f"{num} queries asked from {name} {'+'.join(splits)}, which has only {len(data)} images."
                )
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
            data = data.subset(order[:num].sort().values)
        return data

    def probe_sets(self, spec: dict) -> tuple[ImageSet, ImageSet]:
        """(train, test) of a probe: the ``train_split`` (default train) and ``test_split``
        (default test), the test set optionally cut to ``test_start``/``test_stop``."""
        name = spec["dataset"]
        train = self.load(name, spec.get("train_split", "train"))
        test = self.load(name, spec.get("test_split", "test"))
        if "test_start" in spec or "test_stop" in spec:
            test = test.subset(torch.arange(len(test))[slice(spec.get("test_start"), spec.get("test_stop"))])
        if spec.get("max_train") and spec["max_train"] < len(train):
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            train = train.subset(order[: spec["max_train"]].sort().values)
        return train, test


def missing_message(root: Path, lines: list[str]) -> str:
    """The error for missing data: the data root, each missing set, and how to get them."""
    return (
        f"Data missing under the data root {root} (set it with data_root in the YAML, --data-root, or "
        "$ENCSTEAL_DATA):\n  - " + "\n  - ".join(lines) + "\n"
        "How to get them: `python -m encsteal.full params/full.yaml --download` lets torchvision download "
        "CIFAR10, CIFAR100, STL10, SVHN (train, test, extra) and Fashion-MNIST into that root (needs "
        "internet, about 6 GB). ImageNet (ILSVRC-2012) cannot be downloaded automatically: get it from "
        f"https://image-net.org under its licence and unpack the train set as "
        f"{root}/imagenet/train/<wnid>/*.JPEG."
    )
