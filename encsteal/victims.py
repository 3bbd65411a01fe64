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
from tqdm import tqdm

from encsteal.augment import NO_AUGMENT_JITTER, Augment
from encsteal.cache import ResultCache
from encsteal.checkpoint import flat_state, load_flat_state
from encsteal.data import adapt, check_dataset, role_splits
from encsteal.data.imageset import ImageSet
from encsteal.losses import nt_xent
from encsteal.models import ARCHS, LinearClassifier, ProjectionHead, build_encoder
from encsteal.distributed import augment_shard, barrier, gather_with_grad, sharded_epoch, unwrap, wrap_ddp
from encsteal.distributed import info as dist_info
from encsteal.runtime import RunOptions, autocast, channels_last, choose_loader, prepare_device, seed_everything
from encsteal.training import BatchSource, cosine_with_warmup, make_optimizer, steps_per_epoch

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


def fit_victim(config: VictimConfig, data: ImageSet, device: str = "auto",
               progress: bool = True, options: RunOptions | None = None) -> Victim:
    """Train a victim on ``data`` (no cache); returns it on the CPU, in eval mode.

    ``options`` (:class:`~encsteal.runtime.RunOptions`) set the device, bf16 autocast (CUDA
    only), channels-last and the batch loader; ``device`` is a shortcut for ``options.device``.
    Under ``torchrun`` (an initialised process group) every process trains its share of each
    global batch of ``config.batch_size`` images with DDP, with batch-norm statistics and the
    NT-Xent loss computed over the global batch, so the result matches a single-process run
    (:mod:`encsteal.distributed`). The cosine schedule is stepped once per batch over the whole
    run (the official code steps a per-batch cosine once per epoch, NOTES 9.4 item 6).
    """
    opts = _run_options(device, options)
    gen = seed_everything(config.seed)
    dev = prepare_device(opts)
    ddp = dist_info()
    c, h, _ = data.shape
    encoder, head = build_victim_modules(config, c, h, max(data.num_classes, 1))
    net = _VictimNet(encoder, head).to(dev)
    if opts.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = wrap_ddp(net, dev, opts.sync_bn)
    source = BatchSource(data.images, dev, choose_loader(opts, data.images, dev), opts.num_workers,
                         opts.pin_memory, opts.prefetch_factor)
    labels = data.labels.to(dev)
    params = list(net.encoder.parameters()) + list(net.head.parameters())
    opt = make_optimizer(params, config.optimizer, config.lr, config.weight_decay)
    per_epoch = steps_per_epoch(len(data), config.batch_size)
    sched = cosine_with_warmup(opt, per_epoch * config.epochs, per_epoch * config.warmup_epochs)
    simclr = config.method == "simclr"
    augment = Augment() if simclr else NO_AUGMENT_JITTER
    layout = channels_last if opts.channels_last else (lambda t: t)
    in_ch, size = net.encoder.in_channels, net.encoder.input_size
    curve: list[float] = []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.epochs), desc=f"{config.method} victim", disable=not (progress and ddp.is_main))
    for _ in bar:
        total, count = 0.0, 0
        plan = sharded_epoch(len(data), config.batch_size, gen, True, ddp.rank, ddp.world_size)
        for (idx, part), xb in zip(plan, source.fetch([idx[part] for idx, part in plan])):
            x = adapt(xb, in_ch, size)
            if simclr:
                views = torch.cat([augment_shard(augment, x, len(idx), part.start, gen) for _ in range(2)])
                with autocast(dev, opts.amp):
                    z = model(layout(views))
                z = gather_with_grad(z.float(), blocks=2)
                n = len(z) // 2
                loss = nt_xent(z[:n], z[n:], config.temperature)
            else:
                with autocast(dev, opts.amp):
                    logits = model(layout(augment_shard(augment, x, len(idx), part.start, gen)))
                loss = F.cross_entropy(gather_with_grad(logits.float()), labels[idx.to(dev)])
            opt.zero_grad(set_to_none=True)
            (loss * ddp.world_size).backward()
            opt.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        curve.append(total / max(count, 1))
        bar.set_postfix(loss=f"{curve[-1]:.3f}")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    net = unwrap(model)
    encoder = net.encoder.to("cpu", memory_format=torch.contiguous_format).eval()
    head = net.head.cpu().eval()
    record = {"train_seconds": seconds, "loss_curve": curve, "images_per_second":
              config.epochs * per_epoch * config.batch_size * (2 if simclr else 1) / seconds,
              "threads": torch.get_num_threads(), "device": str(dev), "world_size": ddp.world_size,
              "amp": opts.amp}
    return Victim(config, encoder, head, data.classes, record)


def victim_cache_key(config: VictimConfig, options: RunOptions | None = None) -> Any:
    """The cache key of a victim: its configuration (plus ``{"amp": "bf16"}`` for bf16 runs)."""
    tag = options.cache_tag() if options is not None else None
    return config if tag is None else {"config": config, **tag}


def train_victim(config: VictimConfig, cache: ResultCache | None = None, device: str = "auto",
                 progress: bool = True, options: RunOptions | None = None,
                 data: ImageSet | None = None) -> Victim:
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

    return cache.get_or_compute("victim", victim_cache_key(config, options),
                                lambda: fit_victim(config, data, device, progress, options), save, load)


def with_overrides(config: VictimConfig, **changes: Any) -> VictimConfig:
    """A copy of ``config`` with some fields changed (validated again)."""
    return replace(config, **changes)
