"""Victim encoders: a SimCLR (self-supervised) victim and a supervised one.

The paper's victims are SimCLR encoders trained with NT-Xent on two augmented views
(book/paper_setup.md#setup-victim-cifar:
ResNet-34, projection head 512-512-128, batch 256, Adam lr 3e-4, weight decay 1e-4, temperature
0.07, 200 epochs). Those optimiser settings are the defaults here; the quick profile scales the
encoder and the epochs down. The supervised victim (same encoder + a linear classifier trained
with cross-entropy) backs the supervised-API comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from encsteal.augment import NO_AUGMENT_JITTER, Augment
from encsteal.cache import ResultCache
from encsteal.checkpoint import flat_state, load_flat_state
from encsteal.data import adapt, check_dataset, role_splits
from encsteal.data.imageset import ImageSet
from encsteal.losses import nt_xent
from encsteal.models import ARCHS, LinearClassifier, ProjectionHead, build_encoder
from encsteal.runtime import RunOptions, seed_everything
from encsteal.training import Batch, OptimizerSpec, StepFn, fit

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


def build_victim_modules(
    config: VictimConfig, in_channels: int, native_size: int, num_classes: int
) -> tuple[nn.Module, nn.Module]:
    encoder = build_encoder(config.arch, in_channels, config.input_size or native_size)
    if config.method == "simclr":
        head: nn.Module = ProjectionHead(encoder.rep_dim, config.head_hidden, config.head_dim)
    else:
        head = LinearClassifier(encoder.rep_dim, num_classes)
    return encoder, head


class _VictimNet(nn.Module):
    """Encoder + head as one module (what DDP wraps)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _run_options(device: str, options: RunOptions | None) -> RunOptions:
    if options is None:
        return RunOptions(device=device)
    if device != "auto" and options.device == "auto":
        return replace(options, device=device)
    return options


def fit_victim(
    config: VictimConfig, data: ImageSet, device: str = "auto", progress: bool = True, options: RunOptions | None = None
) -> Victim:
    """Train a victim on ``data`` (no cache); returns it on the CPU, in eval mode.

    ``options`` (:class:`~encsteal.runtime.RunOptions`) set the device, bf16 autocast (CUDA
    only), channels-last and the batch loader; ``device`` is a shortcut for ``options.device``.
    Under ``torchrun`` (an initialised process group) every process trains its share of each
    global batch of ``config.batch_size`` images with DDP, with batch-norm statistics and the
    NT-Xent loss computed over the global batch, so the result matches a single-process run
    (:mod:`encsteal.distributed`). The cosine schedule is stepped once per batch over the whole
    run (the official code steps a per-batch cosine once per epoch; book/paper_setup.md#setup-official-code item 1).
    """
    opts = _run_options(device, options)
    gen = seed_everything(config.seed)
    c, h, _ = data.shape
    encoder, head = build_victim_modules(config, c, h, max(data.num_classes, 1))
    net = _VictimNet(encoder, head)
    simclr = config.method == "simclr"
    step = _victim_step(config, data.labels, encoder.in_channels, encoder.input_size)
    fitted = fit(
        net,
        list(net.parameters()),
        step,
        data.images,
        optimizer=OptimizerSpec(config.optimizer, config.lr, config.weight_decay, config.warmup_epochs),
        epochs=config.epochs,
        batch_size=config.batch_size,
        generator=gen,
        options=opts,
        views=2 if simclr else 1,
        progress=progress,
        label=f"{config.method} victim",
    )
    record = {
        "train_seconds": fitted.seconds,
        "loss_curve": fitted.loss_curve,
        "images_per_second": fitted.images_per_second,
        "threads": fitted.threads,
        "device": fitted.device,
        "world_size": fitted.world_size,
        "amp": fitted.amp,
    }
    return Victim(config, fitted.model.encoder, fitted.model.head, data.classes, record)


def _victim_step(config: VictimConfig, labels: torch.Tensor, in_channels: int, size: int | None) -> StepFn:
    """One victim batch: NT-Xent on two augmented views (SimCLR) or cross-entropy on the labels
    (supervised, light jitter), over the global batch."""
    simclr = config.method == "simclr"
    augment = Augment() if simclr else NO_AUGMENT_JITTER

    def step(batch: Batch) -> torch.Tensor:
        x = adapt(batch.x, in_channels, size)
        if simclr:
            z = batch.forward(torch.cat([batch.augment(augment, x) for _ in range(2)]), blocks=2)
            n = len(z) // 2
            return nt_xent(z[:n], z[n:], config.temperature)
        logits = batch.forward(batch.augment(augment, x))
        return F.cross_entropy(logits, labels[batch.idx].to(batch.device))

    return step


def victim_cache_key(config: VictimConfig, options: RunOptions | None = None) -> Any:
    """The cache key of a victim: its configuration (plus ``{"amp": "bf16"}`` for bf16 runs)."""
    tag = options.cache_tag() if options is not None else None
    return config if tag is None else {"config": config, **tag}


def train_victim(
    config: VictimConfig,
    cache: ResultCache | None = None,
    device: str = "auto",
    progress: bool = True,
    options: RunOptions | None = None,
    data: ImageSet | None = None,
) -> Victim:
    """Train (or load from the cache) the victim that ``config`` describes.

    ``data``: the training images, when the caller has loaded them (e.g. from another data
    root); by default :func:`victim_training_set`. Under ``torchrun`` only rank 0 writes the
    cache entry; the others wait for it.
    """
    cache = cache if cache is not None else ResultCache()
    data = data if data is not None else victim_training_set(config)

    def load(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Victim:
        c, h, _ = data.shape
        encoder, head = build_victim_modules(config, c, h, max(data.num_classes, 1))
        load_flat_state({"encoder": encoder, "head": head}, tensors)
        return Victim(config, encoder.eval(), head.eval(), data.classes, meta.get("record", {}))

    def save(victim: Victim) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return flat_state({"encoder": victim.encoder, "head": victim.head}), {"record": victim.record}

    return cache.get_or_compute(
        "victim",
        victim_cache_key(config, options),
        lambda: fit_victim(config, data, device, progress, options),
        save,
        load,
    )


def with_overrides(config: VictimConfig, **changes: Any) -> VictimConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **changes)
