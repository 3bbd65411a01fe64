"""The full profile: the paper's setups at paper scale, on one GPU or several (torchrun + DDP).

One GPU::

    python -m encsteal.full params/full.yaml

N GPUs on one machine (DistributedDataParallel, one process per GPU)::

    torchrun --nproc_per_node=N -m encsteal.full params/full.yaml

Smoke run of the same code path on the CPU, on tiny stand-in files written in the real on-disk
formats and a stand-in SimSiam checkpoint with SimSiam's key names (under a minute)::

    python -m encsteal.full params/full.yaml --tiny

The YAML's ``experiments`` section holds two chapters (``--only`` picks one):

* ``cifar``: the loss table (NOTES 2.1, 5.1-5.3). A SimCLR ResNet-34 victim trained on CIFAR10
  for 200 epochs; each of the six losses steals it with 9,000 CIFAR10-test queries (the test set
  minus its last 1,000 images, kept for the probe) and with 9,000 SVHN queries, for 100 epochs,
  with the per-loss batch sizes, optimisers and temperatures of the official code; linear probes
  of the victim and every stolen copy on CIFAR10 and on STL10 at 32x32.
* ``imagenet``: the ImageNet table (NOTES 2.2, 5.4). The SimSiam ResNet-50 from its published
  checkpoint (:mod:`encsteal.simsiam`), stolen by a ResNet-50 with InfoNCE from 50K/250K queries
  drawn from CIFAR10, SVHN and ImageNet; probes on CIFAR10, CIFAR100, STL10, SVHN and
  Fashion-MNIST at 224 px. ImageNet query subsets are uniform random draws over the whole train
  folder (every class), not the first images in class order as in the official fallback.
  "250K SVHN queries": SVHN train has only 73,257 images, so the 250,000 queries are distinct
  images drawn uniformly at random from SVHN ``train`` + ``extra`` (73,257 + 531,131 = 604,388).
  The paper does not say how it formed them (NOTES 2.2, open question); this is our choice.

Before any training, every data set the chosen chapters need is checked, and a missing one stops
the run with the data root and how to get it (``--download`` lets torchvision fetch the ones it
can; ImageNet must be placed by hand). Results go to ``<out>/results.json`` and
``<out>/summary.md``; victims and stolen encoders are cached (``ResultCache``) so an interrupted
run resumes at the next unfinished step.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from encsteal import distributed, simsiam
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data.imageset import ImageSet
from encsteal.data.paper import PAPER_SPLITS, load_paper_set
from encsteal.data.splits import draw_disjoint
from encsteal.data.transforms import adapt
from encsteal.losses import LOSSES
from encsteal.paths import cache_root, data_root
from encsteal.runtime import RunOptions, autocast, prepare_device
from encsteal.training import cosine_with_warmup, make_optimizer, shuffled_batches
from encsteal.victims import VictimConfig, train_victim

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS: tuple[str, ...] = ("cifar", "imagenet")
DOWNLOADABLE: tuple[str, ...] = ("cifar10", "cifar100", "stl10", "svhn", "fmnist")

_EXPECTED: dict[str, dict[str, tuple[str, ...]]] = {
    "cifar10": {"train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)) + ("cifar-10-batches-py/batches.meta",),
                "test": ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta")},
    "cifar100": {"train": ("cifar-100-python/train", "cifar-100-python/meta"),
                 "test": ("cifar-100-python/test", "cifar-100-python/meta")},
    "stl10": {s: ("stl10_binary/train_X.bin", "stl10_binary/train_y.bin", "stl10_binary/test_X.bin",
                  "stl10_binary/test_y.bin", "stl10_binary/unlabeled_X.bin") for s in ("train", "test", "unlabeled")},
    "svhn": {s: (f"svhn/{s}_32x32.mat",) for s in ("train", "test", "extra")},
    "fmnist": {"train": ("FashionMNIST/raw/train-images-idx3-ubyte", "FashionMNIST/raw/train-labels-idx1-ubyte"),
               "test": ("FashionMNIST/raw/t10k-images-idx3-ubyte", "FashionMNIST/raw/t10k-labels-idx1-ubyte")},
}


class DataMissing(FileNotFoundError):
    """A data set the run needs is not under the data root (the message says how to get it)."""


def log(msg: str) -> None:
    if distributed.is_main():
        print(f"[full] {msg}", flush=True)


# ---------------------------------------------------------------------------- configuration


def deep_merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: nested dicts merged, ``~`` (null) removes a key,
    everything else replaced."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_experiments(path: str | os.PathLike, tiny: bool = False) -> dict:
    """The ``experiments`` section of a profile YAML (with its ``tiny`` overlay if ``tiny``)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if "experiments" not in raw:
        raise ValueError(f"{path} has no 'experiments' section: the full-profile pipeline reads it "
                         "(see params/full.yaml).")
    exp = raw["experiments"]
    if tiny:
        if "tiny" not in raw:
            raise ValueError(f"{path} has no 'tiny' overlay for --tiny.")
        exp = deep_merge(exp, raw["tiny"])
    validate(exp)
    return exp


def validate(exp: dict) -> None:
    """Build every configuration once so that a typo fails before hours of training."""
    RunOptions(**exp.get("runtime", {}))
    if "cifar" in exp:
        c = exp["cifar"]
        VictimConfig(**c["victim"])
        for loss in c["run_losses"]:
            if loss not in c["losses"]:
                raise ValueError(f"cifar.run_losses names {loss!r} but cifar.losses has no settings for it.")
            steal_config(c, loss, 0)
        for q in c["queries"].values():
            _check_query_spec(q)
    if "imagenet" in exp:
        m = exp["imagenet"]
        StealConfig(**m["steal"])
        for q in m["queries"].values():
            _check_query_spec(q)


def steal_config(chapter: dict, loss: str, seed: int) -> StealConfig:
    """The CIFAR chapter's StealConfig for ``loss``: common settings + that loss's (NOTES 5.2)."""
    return StealConfig(**{**chapter["steal"], **chapter["losses"][loss], "loss": loss, "seed": seed})


def _check_query_spec(q: dict) -> None:
    splits = q.get("splits") or [q.get("split", "train")]
    name = q["dataset"]
    if name not in PAPER_SPLITS:
        raise ValueError(f"Unknown query data set {name!r}. Known: {', '.join(PAPER_SPLITS)}.")
    bad = [s for s in splits if s not in PAPER_SPLITS[name]]
    if bad:
        raise ValueError(f"Unknown split(s) {bad} for {name!r}; allowed: {PAPER_SPLITS[name]}.")


# ---------------------------------------------------------------------------- data


class DataHub:
    """Loads the paper's data sets from one data root, with clear errors and an image cache.

    ImageNet subsets (JPEG decoding takes long) are decoded once, by rank 0, into a uint8
    ``.npy`` file under ``<cache>/images/`` and memory-mapped by every process afterwards.
    """

    def __init__(self, root: str | os.PathLike | None, download: bool = False,
                 cache_dir: str | os.PathLike | None = None, seed: int = 0):
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
            files = [self.root / f for f in _EXPECTED[name][split]]
            absent = [f for f in files if not f.exists()]
            if name == "fmnist" and absent:
                from encsteal.paths import DEBIAN_FASHION_MNIST

                if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
                    continue  # the quick loader decompresses the Debian package's copy
            if absent:
                lines.append(f"{name} ({split}): expected {absent[0]}" + (f" (+{len(absent) - 1} more)" if len(absent) > 1 else ""))
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
        tag = hashlib.sha256(json.dumps([str(self.root), name, split, sorted(opts.items())]).encode()).hexdigest()[:16]
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
            return self.load("imagenet", splits[0], max_images=spec.get("num"), seed=seed,
                             image_size=spec.get("image_size", 224))
        parts = [self.load(name, s) for s in splits]
        data = parts[0] if len(parts) == 1 else ImageSet(
            name, torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), parts[0].classes)
        if "start" in spec or "stop" in spec:
            data = data.subset(torch.arange(len(data))[slice(spec.get("start"), spec.get("stop"))])
        if spec.get("num") is not None:
            num = int(spec["num"])
            if num > len(data):
                raise ValueError(f"{num} queries asked from {name} {'+'.join(splits)}, which has only {len(data)} images.")
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
    return (f"Data missing under the data root {root} (set it with data_root in the YAML, --data-root, or "
            "$ENCSTEAL_DATA):\n  - " + "\n  - ".join(lines) + "\n"
            "How to get them: `python -m encsteal.full params/full.yaml --download` lets torchvision download "
            "CIFAR10, CIFAR100, STL10, SVHN (train, test, extra) and Fashion-MNIST into that root (needs "
            "internet, about 6 GB). ImageNet (ILSVRC-2012) cannot be downloaded automatically: get it from "
            f"https://image-net.org under its licence and unpack the train set as {root}/imagenet/train/<wnid>/*.JPEG.")


def chapter_needs(exp: dict, chapters: tuple[str, ...]) -> set[tuple[str, str]]:
    """Every (data set, split) the chosen chapters read."""
    needs: set[tuple[str, str]] = set()
    for ch in chapters:
        spec = exp[ch]
        if ch == "cifar":
            needs.add((spec["victim"]["dataset"], "train"))
        for q in spec["queries"].values():
            for s in q.get("splits") or [q.get("split", "train")]:
                needs.add((q["dataset"], s))
        for p in spec["probes"].values():
            needs.add((p["dataset"], p.get("train_split", "train")))
            needs.add((p["dataset"], p.get("test_split", "test")))
    return needs


# ---------------------------------------------------------------------------- features, probe


@torch.no_grad()
def encode(encoder: nn.Module, images: torch.Tensor, dev: torch.device, amp: bool = False,
           batch_size: int = 512) -> torch.Tensor:
    """Representations (N, d) of uint8 ``images``, adapted to the encoder on the device; under
    DDP every process encodes its share and the features are gathered (in order)."""
    d = distributed.info()
    lo, hi = distributed.shard_bounds(len(images), d.rank, d.world_size)
    encoder = encoder.to(dev).eval()
    chunks = []
    for s in range(lo, hi, batch_size):
        x = adapt(images[s:min(s + batch_size, hi)].to(dev, non_blocking=True), encoder.in_channels, encoder.input_size)
        with autocast(dev, amp):
            chunks.append(encoder(x.contiguous(memory_format=torch.channels_last)).float())
    mine = torch.cat(chunks) if chunks else torch.empty(0, encoder.rep_dim, device=dev)
    return distributed.gather_nograd(mine).cpu()


def linear_probe_torch(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       num_classes: int, settings: dict, dev: torch.device, seed: int = 0) -> dict:
    """A linear classifier on frozen, standardised features, trained on the device with the
    paper's optimiser settings (NOTES 5.3: Adam lr 3e-4, weight decay 8e-4, batch 256, 100 epochs;
    5.4: SGD + LARS, lr 1.0 x batch/256, no weight decay). Reports test top-1 and k-NN top-1."""
    from encsteal.probe import knn_accuracy

    start = time.perf_counter()
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    tr, te = ((train_x - mean) / std).to(dev), ((test_x - mean) / std).to(dev)
    ytr = train_y.to(dev)
    torch.manual_seed(seed)
    clf = nn.Linear(tr.shape[1], num_classes).to(dev)
    nn.init.normal_(clf.weight, std=0.01)
    nn.init.zeros_(clf.bias)
    bs, epochs = int(settings.get("batch_size", 256)), int(settings.get("epochs", 100))
    opt = make_optimizer(clf.parameters(), settings.get("optimizer", "adam"), float(settings.get("lr", 3e-4)),
                         float(settings.get("weight_decay", 8e-4)))
    sched = cosine_with_warmup(opt, epochs * math.ceil(len(tr) / bs))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in shuffled_batches(len(tr), bs, gen, drop_last=False):
            idx = idx.to(dev)
            loss = F.cross_entropy(clf(tr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        acc = (clf(te).argmax(1).cpu() == test_y).float().mean().item()
    knn = knn_accuracy(tr.cpu(), train_y, te.cpu(), test_y, num_classes=num_classes)
    return {"accuracy": acc, "knn_accuracy": knn, "n_train": len(tr), "n_test": len(te),
            "seconds": time.perf_counter() - start}


def probe_all(encoders: dict[str, nn.Module], probes: dict, settings: dict, hub: DataHub, dev: torch.device,
              amp: bool, seed: int) -> dict[str, dict[str, dict]]:
    """Probe accuracy of every encoder on every probe set: ``{encoder: {probe: result}}``."""
    out: dict[str, dict[str, dict]] = {name: {} for name in encoders}
    for pname, pspec in probes.items():
        train, test = hub.probe_sets(pspec)
        num_classes = max(len(train.classes), int(train.labels.max()) + 1)
        for ename, enc in encoders.items():
            ftr, fte = encode(enc, train.images, dev, amp), encode(enc, test.images, dev, amp)
            if distributed.is_main():
                if settings.get("method", "linear") == "lbfgs":
                    res = _lbfgs_probe(ftr, train.labels, fte, test.labels, settings, seed)
                else:
                    res = linear_probe_torch(ftr, train.labels, fte, test.labels, num_classes, settings, dev, seed)
                out[ename][pname] = res
                log(f"probe {pname:9s} {ename:28s} top-1 {100 * res['accuracy']:5.1f}%  k-NN {100 * res['knn_accuracy']:5.1f}%")
            enc.cpu()
    return out


def _lbfgs_probe(ftr, ytr, fte, yte, settings, seed) -> dict:
    """The package's probe protocol (encsteal.probe: L-BFGS, C chosen on a validation split)."""
    from encsteal.probe import linear_probe

    n_val = max(1, int(len(ftr) * float(settings.get("val_fraction", 0.1))))
    idx = draw_disjoint(len(ftr), {"val": n_val, "train": len(ftr) - n_val}, seed)
    r = linear_probe(ftr[idx["train"]], ytr[idx["train"]], ftr[idx["val"]], ytr[idx["val"]], fte, yte)
    return {"accuracy": r.accuracy, "knn_accuracy": r.knn_accuracy, "val_accuracy": r.val_accuracy, "C": r.C,
            "n_train": r.n_train, "n_test": r.n_test, "seconds": r.seconds}


# ---------------------------------------------------------------------------- chapters


def _steal_record(res) -> dict:
    return {"queries": res.queries, "seconds": res.seconds, "images_per_second": res.images_per_second,
            "final_loss": res.loss_curve[-1] if res.loss_curve else None, "from_cache": res.from_cache}


def run_cifar(spec: dict, hub: DataHub, opts: RunOptions, cache: ResultCache, seed: int, progress: bool) -> dict:
    """The loss table: SimCLR ResNet-34 victim on CIFAR10, six losses x two query sets, probes."""
    dev = prepare_device(opts)
    vcfg = VictimConfig(**spec["victim"])
    train = hub.load(vcfg.dataset, "train")
    if vcfg.num_train > len(train):
        raise ValueError(f"victim.num_train={vcfg.num_train} but {vcfg.dataset} train has {len(train)} images.")
    picked = draw_disjoint(len(train), {"victim": vcfg.num_train}, vcfg.split_seed)["victim"]
    log(f"victim: SimCLR {vcfg.arch} on {vcfg.dataset} ({vcfg.num_train} images, {vcfg.epochs} epochs, batch {vcfg.batch_size})")
    victim = train_victim(vcfg, cache, progress=progress, options=opts, data=train.subset(picked))
    record: dict[str, Any] = {"victim": {k: v for k, v in victim.record.items() if k != "loss_curve"}, "steals": {}}
    api = EncoderAPI(victim.encoder, victim.head, device=dev)
    encoders: dict[str, nn.Module] = {"victim": victim.encoder}
    size = spec.get("image_size", 32)
    for qname, qspec in spec["queries"].items():
        queries = hub.query_set(qspec)
        for loss in spec["run_losses"]:
            cfg = steal_config(spec, loss, seed)
            labels = queries.labels if LOSSES[loss].needs_labels else None
            log(f"steal {qname} ({len(queries)} queries) with {loss}: batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, "
                f"{cfg.epochs} epochs")
            res = steal(api, queries, cfg, query_labels=labels, input_size=size, cache=cache, progress=progress,
                        options=opts)
            encoders[f"{qname}/{loss}"] = res.encoder
            record["steals"][f"{qname}/{loss}"] = _steal_record(res)
    api.encoder.cpu()
    record["probes"] = probe_all(encoders, spec["probes"], spec["probe"], hub, dev, opts.amp, seed)
    return record


def run_imagenet(spec: dict, hub: DataHub, opts: RunOptions, cache: ResultCache, seed: int, progress: bool,
                 download_weights: bool) -> dict:
    """The ImageNet table: SimSiam ResNet-50 victim, InfoNCE stealing from 50K/250K queries, probes at 224 px."""
    dev = prepare_device(opts)
    v = spec["victim"]
    path = Path(v["checkpoint"]) if v.get("checkpoint") else None
    if distributed.is_main():  # download (opt-in) and record/verify the checksum once
        simsiam.fetch_simsiam(path, download=download_weights or bool(v.get("download")), sha256=v.get("sha256"))
    distributed.barrier()
    victim = simsiam.load_simsiam_resnet50(path, sha256=v.get("sha256"))
    size = int(spec.get("image_size", 224))
    victim.input_size = size
    api = EncoderAPI(victim, device=dev, batch_size=int(spec.get("api_batch_size", 512)))
    record: dict[str, Any] = {"victim": {"checkpoint": str(path or simsiam.default_path()), "url": simsiam.SIMSIAM_URL},
                              "steals": {}}
    encoders: dict[str, nn.Module] = {"victim": victim}
    cfg = StealConfig(**{**spec["steal"], "seed": seed})
    for qname, qspec in spec["queries"].items():
        queries = hub.query_set(qspec)
        classes = len(torch.unique(queries.labels)) if len(queries) else 0
        log(f"steal with {qname}: {len(queries)} queries from {qspec['dataset']} "
            f"{'+'.join(qspec.get('splits') or [qspec.get('split', 'train')])} ({classes} classes), {cfg.loss}, "
            f"batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}, {cfg.epochs} epochs at {size} px")
        res = steal(api, queries, cfg, input_size=size, cache=cache, progress=progress, options=opts)
        encoders[qname] = res.encoder
        record["steals"][qname] = {**_steal_record(res), "classes_in_queries": classes}
    api.encoder.cpu()
    probes = {k: {**p, "image_size": size} for k, p in spec["probes"].items()}
    for enc in encoders.values():
        enc.input_size = size
    record["probes"] = probe_all(encoders, probes, spec["probe"], hub, dev, opts.amp, seed)
    return record


def summary_table(results: dict) -> str:
    """Markdown tables: probe top-1 (%) per encoder (rows) and probe set (columns)."""
    lines = []
    for ch, rec in results.items():
        probes = rec.get("probes", {})
        if not probes:
            continue
        cols = sorted({p for r in probes.values() for p in r}, key=lambda c: list(next(iter(probes.values()))).index(c)
                      if c in next(iter(probes.values())) else 99)
        lines += [f"### {ch}", "", "| encoder | " + " | ".join(cols) + " | queries |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for enc, row in probes.items():
            q = rec["steals"].get(enc, {}).get("queries", "")
            lines.append(f"| {enc} | " + " | ".join(f"{100 * row[c]['accuracy']:.1f}" if c in row else "" for c in cols)
                         + f" | {q} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- entry point


def run(exp: dict, chapters: tuple[str, ...] = CHAPTERS, progress: bool = True, download: bool = False,
        download_weights: bool = False, prepare_only: bool = False) -> dict:
    """Run the chosen chapters of ``exp`` (the YAML's ``experiments``); returns the results."""
    info = distributed.init_from_env()
    seed = int(exp.get("seed", 0))
    opts = RunOptions(**exp.get("runtime", {}))
    dev = prepare_device(opts)
    log(f"{info.world_size} process(es), device {dev}, bf16 autocast {'on' if opts.amp else 'off'}, "
        f"channels_last {opts.channels_last}, loader {opts.loader} ({opts.num_workers} workers)")
    hub = DataHub(exp.get("data_root"), download, exp.get("cache"), seed)
    hub.require(chapter_needs(exp, chapters))
    cache = ResultCache(exp.get("cache"))
    if prepare_only:
        for ch in chapters:
            for q in exp[ch]["queries"].values():
                hub.query_set(q)
        if "imagenet" in chapters and distributed.is_main():
            v = exp["imagenet"]["victim"]
            simsiam.fetch_simsiam(v.get("checkpoint"), download=download_weights, sha256=v.get("sha256"))
        log("data and weights are in place")
        return {}
    results: dict[str, Any] = {}
    for ch in chapters:
        start = time.perf_counter()
        if ch == "cifar":
            results[ch] = run_cifar(exp[ch], hub, opts, cache, seed, progress)
        else:
            results[ch] = run_imagenet(exp[ch], hub, opts, cache, seed, progress, download_weights)
        results[ch]["seconds"] = time.perf_counter() - start
    if distributed.is_main():
        out = Path(exp.get("out", "results/full"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        table = summary_table(results)
        (out / "summary.md").write_text(table)
        print(table, flush=True)
        log(f"results in {out / 'results.json'}")
    return results


def tiny_setup(exp: dict, folder: Path) -> dict:
    """Write the stand-in data and checkpoint under ``folder`` (rank 0) and point ``exp`` at them."""
    from encsteal import standin

    if distributed.is_main():
        shutil.rmtree(folder, ignore_errors=True)
        standin.write_tiny_data(folder / "data")
        simsiam.standin_checkpoint(folder / "weights" / simsiam.SIMSIAM_FILE)
    distributed.barrier()
    exp = copy.deepcopy(exp)
    exp["data_root"], exp["cache"], exp["out"] = str(folder / "data"), str(folder / "cache"), str(folder / "out")
    if "imagenet" in exp:
        exp["imagenet"]["victim"]["checkpoint"] = str(folder / "weights" / simsiam.SIMSIAM_FILE)
    return exp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encsteal.full", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", nargs="?", default=str(ROOT / "params" / "full.yaml"))
    parser.add_argument("--only", choices=CHAPTERS, action="append", help="run only this chapter (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="smoke run on tiny stand-in files (CPU, < 1 minute)")
    parser.add_argument("--tiny-dir", default=None, help="where --tiny writes its stand-in files (default: a temp folder)")
    parser.add_argument("--data-root", default=None, help="overrides data_root")
    parser.add_argument("--cache", default=None, help="overrides the result cache folder")
    parser.add_argument("--out", default=None, help="overrides the output folder")
    parser.add_argument("--device", default=None, help="overrides runtime.device (auto, cpu, cuda)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast")
    parser.add_argument("--num-workers", type=int, default=None, help="overrides runtime.num_workers")
    parser.add_argument("--download", action="store_true", help="let torchvision download missing data sets")
    parser.add_argument("--download-weights", action="store_true", help="download the SimSiam checkpoint (opt-in)")
    parser.add_argument("--prepare", action="store_true", help="check/download data and weights, decode ImageNet once, exit")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    exp = load_experiments(args.params, tiny=args.tiny)
    runtime = dict(exp.get("runtime", {}))
    if args.device:
        runtime["device"] = args.device
    if args.no_amp:
        runtime["amp"] = False
    if args.num_workers is not None:
        runtime["num_workers"] = args.num_workers
    exp["runtime"] = runtime
    for key, value in (("data_root", args.data_root), ("cache", args.cache), ("out", args.out)):
        if value is not None:
            exp[key] = value
    chapters = tuple(args.only) if args.only else tuple(c for c in CHAPTERS if c in exp)
    if args.dry_run:
        print(yaml.safe_dump({"chapters": list(chapters), "experiments": exp}, sort_keys=False))
        return 0
    torch.set_num_threads(int(os.environ.get("ENCSTEAL_THREADS", torch.get_num_threads())))
    start = time.perf_counter()
    main_rank = True
    try:
        context = nullcontext()
        if args.tiny:
            from encsteal.standin import accept_standin_files

            distributed.init_from_env()
            folder = Path(args.tiny_dir) if args.tiny_dir else Path(tempfile.gettempdir()) / f"encsteal-tiny-{os.getuid()}"
            exp = tiny_setup(exp, folder)
            if args.out:
                exp["out"] = args.out
            context = accept_standin_files()
        with context:
            main_rank = distributed.init_from_env().is_main
            run(exp, chapters, progress=not args.no_progress, download=args.download,
                download_weights=args.download_weights, prepare_only=args.prepare)
    except DataMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    if main_rank:
        print(f"[full] done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
