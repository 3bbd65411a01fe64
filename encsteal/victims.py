"""Victim encoders: a SimCLR (self-supervised) victim and a supervised one.

The paper's victims are SimCLR encoders trained with NT-Xent on two augmented views (NOTES 5.1:
ResNet-34, projection head 512-512-128, batch 256, Adam lr 3e-4, weight decay 1e-4, temperature
0.07, 200 epochs). Those optimiser settings are the defaults here; the quick profile scales the
encoder and the epochs down. The supervised victim (same encoder + a linear classifier trained
with cross-entropy) backs the supervised-API comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from encsteal.augment import NO_AUGMENT_JITTER, Augment
from encsteal.cache import ResultCache
from encsteal.checkpoint import flat_state, load_flat_state
from encsteal.data import adapt, check_dataset, role_splits
from encsteal.data.imageset import ImageSet
from encsteal.losses import nt_xent
from encsteal.models import ARCHS, LinearClassifier, ProjectionHead, build_encoder
from encsteal.runtime import channels_last, resolve_device, seed_everything
from encsteal.training import cosine_with_warmup, make_optimizer, shuffled_batches, steps_per_epoch

METHODS: tuple[str, ...] = ("simclr", "supervised")


@dataclass(frozen=True)
class VictimConfig:
    """Everything that determines a victim (its cache key)."""

    method: str = "simclr"
    dataset: str = "fmnist"
    arch: str = "convnet"
    num_train: int = 10_000
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.07
    warmup_epochs: int = 0
    head_hidden: int = 256
    head_dim: int = 128
    input_size: int | None = None
    seed: int = 0
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown victim method {self.method!r}. Allowed: {', '.join(METHODS)}.")
        check_dataset(self.dataset)
        if self.arch not in ARCHS:
            raise ValueError(f"Unknown architecture {self.arch!r}. Known: {', '.join(ARCHS)}.")
        for name in ("num_train", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")


@dataclass
class Victim:
    """A trained victim: encoder, head (projection head or classifier) and training record."""

    config: VictimConfig
    encoder: nn.Module
    head: nn.Module
    classes: tuple[str, ...]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        return float(self.record.get("train_seconds", float("nan")))


def victim_training_set(config: VictimConfig) -> ImageSet:
    """The victim's own training images: the ``victim`` role of the data set's seeded split."""
    return role_splits(config.dataset, {"victim": config.num_train}, seed=config.split_seed)["victim"]


def build_victim_modules(config: VictimConfig, in_channels: int, native_size: int,
                         num_classes: int) -> tuple[nn.Module, nn.Module]:
    encoder = build_encoder(config.arch, in_channels, config.input_size or native_size)
    if config.method == "simclr":
        head: nn.Module = ProjectionHead(encoder.rep_dim, config.head_hidden, config.head_dim)
    else:
        head = LinearClassifier(encoder.rep_dim, num_classes)
    return encoder, head


def _epoch_simclr(encoder, head, x, opt, sched, config, gen, augment) -> float:
    total, count = 0.0, 0
    for idx in shuffled_batches(len(x), config.batch_size, gen):
        batch = x[idx]
        views = channels_last(torch.cat([augment(batch, gen), augment(batch, gen)]))
        z = head(encoder(views))
        loss = nt_xent(z[: len(idx)], z[len(idx):], config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, count = total + loss.item(), count + 1
    return total / max(count, 1)


def _epoch_supervised(encoder, head, x, y, opt, sched, config, gen, augment) -> float:
    total, count = 0.0, 0
    for idx in shuffled_batches(len(x), config.batch_size, gen):
        loss = F.cross_entropy(head(encoder(channels_last(augment(x[idx], gen)))), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total, count = total + loss.item(), count + 1
    return total / max(count, 1)


def fit_victim(config: VictimConfig, data: ImageSet, device: str = "auto",
               progress: bool = True) -> Victim:
    """Train a victim on ``data`` (no cache); returns it on the CPU, in eval mode."""
    gen = seed_everything(config.seed)
    dev = resolve_device(device)
    c, h, _ = data.shape
    encoder, head = build_victim_modules(config, c, h, max(data.num_classes, 1))
    encoder, head = encoder.to(dev, memory_format=torch.channels_last), head.to(dev)
    x = adapt(data.images, encoder.in_channels, encoder.input_size).to(dev)
    y = data.labels.to(dev)
    opt = make_optimizer(list(encoder.parameters()) + list(head.parameters()), config.optimizer,
                         config.lr, config.weight_decay)
    per_epoch = steps_per_epoch(len(x), config.batch_size)
    sched = cosine_with_warmup(opt, per_epoch * config.epochs, per_epoch * config.warmup_epochs)
    augment = Augment() if config.method == "simclr" else NO_AUGMENT_JITTER
    curve: list[float] = []
    start = time.perf_counter()
    encoder.train()
    head.train()
    bar = tqdm(range(config.epochs), desc=f"{config.method} victim", disable=not progress)
    for _ in bar:
        if config.method == "simclr":
            loss = _epoch_simclr(encoder, head, x, opt, sched, config, gen, augment)
        else:
            loss = _epoch_supervised(encoder, head, x, y, opt, sched, config, gen, augment)
        curve.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}")
    seconds = time.perf_counter() - start
    encoder = encoder.to("cpu", memory_format=torch.contiguous_format).eval()
    head = head.cpu().eval()
    record = {"train_seconds": seconds, "loss_curve": curve, "images_per_second":
              config.epochs * per_epoch * config.batch_size * (2 if config.method == "simclr" else 1) / seconds,
              "threads": torch.get_num_threads(), "device": str(dev)}
    return Victim(config, encoder, head, data.classes, record)


def train_victim(config: VictimConfig, cache: ResultCache | None = None, device: str = "auto",
                 progress: bool = True) -> Victim:
    """Train (or load from the cache) the victim that ``config`` describes."""
    cache = cache if cache is not None else ResultCache()
    data = victim_training_set(config)
    hit = cache.get("victim", config)
    if hit is not None:
        tensors, meta = hit
        c, h, _ = data.shape
        encoder, head = build_victim_modules(config, c, h, max(data.num_classes, 1))
        load_flat_state({"encoder": encoder, "head": head}, tensors)
        return Victim(config, encoder.eval(), head.eval(), data.classes, meta.get("record", {}))
    victim = fit_victim(config, data, device, progress)
    cache.put("victim", config, flat_state({"encoder": victim.encoder, "head": victim.head}),
              {"record": victim.record})
    return victim


def with_overrides(config: VictimConfig, **changes: Any) -> VictimConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **changes)
