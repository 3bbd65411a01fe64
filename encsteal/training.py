"""Training shared by victims, attacks, the watermark and the torch probe: the one training loop
(:func:`fit`), optimisers (Adam, SGD, LARS), the LR schedule, index batches and the batch source
that puts them on the device (in memory, or a multi-worker, pinned-memory DataLoader on GPUs)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from encsteal.runtime import RunOptions, autocast, channels_last, choose_loader, prepare_device

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "lars")


def make_optimizer(
    params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """Adam, SGD with momentum, or SGD with LARS (the paper's official code uses all three:
    book/paper_setup.md#setup-victims, #setup-stealing, #setup-probes)."""
    if lr <= 0:
        raise ValueError(f"Learning rate must be > 0, got {lr}.")
    if weight_decay < 0:
        raise ValueError(f"Weight decay must be >= 0, got {weight_decay}.")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimiser {name!r}. Allowed: {', '.join(OPTIMIZERS)}.")


class LARS(torch.optim.SGD):
    """SGD with layer-wise adaptive rate scaling in NVIDIA apex's ``LARC`` clip mode, which the
    official ImageNet scripts use (book/paper_setup.md#setup-stealing-imagenet; You et al. 2017, arXiv:1708.03888).

    Before each SGD step, every parameter's gradient (plus weight decay) is multiplied by
    ``min(trust * |w| / (|g| + wd |w| + eps) / lr, 1)``; parameters whose weight or gradient norm
    is zero are left alone. Weight decay is folded into the gradient there, so the inner SGD step
    runs without it.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.trust_coefficient, self.eps = trust_coefficient, eps

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        decays = []
        for group in self.param_groups:
            wd, lr = group["weight_decay"], group["lr"]
            decays.append(wd)
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = p.norm(), p.grad.norm()
                adaptive = self.trust_coefficient * w_norm / (g_norm + wd * w_norm + self.eps)
                scale = torch.where(
                    (w_norm > 0) & (g_norm > 0), (adaptive / lr).clamp(max=1.0), torch.ones_like(w_norm)
                )
                if wd:
                    p.grad.add_(p, alpha=wd)
                p.grad.mul_(scale)
            group["weight_decay"] = 0.0
        try:
            return super().step(closure)
        finally:
            for group, wd in zip(self.param_groups, decays):
                group["weight_decay"] = wd


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, to be stepped once per *batch*.

    The official code steps a cosine with ``T_max = len(loader)`` once per epoch, so its LR
    oscillates (book/paper_setup.md#setup-official-code item 1; sthalles/SimCLR #8 and #43); this schedule spans the
    whole run.
    """
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True
) -> Iterator[torch.Tensor]:
    """Index batches of one epoch over ``range(n)`` in a seeded random order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}.")
    order = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if (drop_last and n >= batch_size) else n
    for s in range(0, stop, batch_size):
        yield order[s : s + batch_size]


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = True) -> int:
    if drop_last and n >= batch_size:
        return n // batch_size
    return math.ceil(n / batch_size)


class _Rows(torch.utils.data.Dataset):
    """``dataset[index_tensor]`` is the batch ``images[index_tensor]`` (used with ``batch_size=None``)."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]


class _EpochSampler:
    """Yields the index batches set for the current epoch (re-read by persistent workers)."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class BatchSource:
    """Puts index batches of ``images`` (uint8 or float, (N, C, H, W)) on ``device``.

    ``mode="memory"``: the images are moved to the device once and indexed there (on the CPU
    this is plain indexing, bit-identical to ``images[idx]``). ``mode="dataloader"``: a
    ``torch.utils.data.DataLoader`` with ``num_workers`` persistent workers gathers each batch
    (from RAM or a memory-mapped file), pins it and copies it with ``non_blocking=True`` while
    the GPU works on the previous one.
    """

    def __init__(
        self,
        images: torch.Tensor,
        device: torch.device,
        mode: str = "memory",
        num_workers: int = 0,
        pin_memory: bool = True,
        prefetch_factor: int = 4,
    ):
        if mode not in ("memory", "dataloader"):
            raise ValueError(f"Unknown batch source mode {mode!r}. Allowed: memory, dataloader.")
        self.device, self.mode = device, mode
        self.images = images.to(device) if mode == "memory" else images
        self._loader = None
        if mode == "dataloader":
            self._sampler = _EpochSampler()
            extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers > 0 else {}
            self._loader = torch.utils.data.DataLoader(
                _Rows(images),
                sampler=self._sampler,
                batch_size=None,
                num_workers=num_workers,
                pin_memory=pin_memory and device.type == "cuda",
                **extra,
            )

    def fetch(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each index batch, on the device, in order."""
        if self._loader is None:
            for idx in batches:
                yield self.images[idx.to(self.images.device)]
            return
        self._sampler.batches = list(batches)
        for xb in self._loader:
            yield xb.to(self.device, non_blocking=True)


# ---------------------------------------------------------------------------- the training loop


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimiser to build (:func:`make_optimizer`) and its warm-up, in epochs, before the cosine decay."""

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"Unknown optimiser {self.name!r}. Allowed: {', '.join(OPTIMIZERS)}.")
        if self.lr <= 0:
            raise ValueError(f"Learning rate must be > 0, got {self.lr}.")
        if self.weight_decay < 0:
            raise ValueError(f"Weight decay must be >= 0, got {self.weight_decay}.")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}.")


class Batch:
    """What a step function gets for one batch: this process's images and helpers to use them.

    ``x`` holds this process's rows ``idx[part]`` of the global index batch ``idx``, on ``device``.
    """

    def __init__(
        self,
        x: torch.Tensor,
        idx: torch.Tensor,
        part: slice,
        model: nn.Module,
        device: torch.device,
        generator: torch.Generator,
        options: RunOptions,
        epoch: int,
        world_size: int,
        meter: _Meter,
    ):
        self.x, self.idx, self.part, self.model, self.device = x, idx, part, model, device
        self.generator, self.options, self.epoch, self.world_size = generator, options, epoch, world_size
        self._meter = meter

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory layout the run uses (channels-last for images if ``options.channels_last``)."""
        return channels_last(x) if self.options.channels_last and x.dim() == 4 else x

    def forward(self, x: torch.Tensor, blocks: int = 1) -> torch.Tensor:
        """The model's fp32 output for ``x`` (bf16 autocast if ``options.amp``), gathered from every
        process (this process's rows keep their gradient; ``blocks`` as in ``gather_with_grad``)."""
        from encsteal.distributed import gather_with_grad

        with autocast(self.device, self.options.amp):
            out = self.model(self.layout(x))
        return gather_with_grad(out.float(), blocks) if self.world_size > 1 else out.float()

    def augment(
        self, augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor], x: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Random views of this process's rows, drawn as one process would for the whole global batch."""
        from encsteal.distributed import augment_shard

        x = self.x if x is None else x
        return augment_shard(augment, x, len(self.idx), self.part.start, self.generator)

    def log(self, name: str, value: float, count: int = 1) -> None:
        """Add ``value`` to the epoch's sum of ``name`` and ``count`` to its denominator (the record
        keeps the per-epoch ratio: a mean, or e.g. correct / seen)."""
        self._meter.add(name, value, count)

    def count_images(self, n: int) -> None:
        """Count ``n`` more images through the model (besides ``views`` per sample, see :func:`fit`)."""
        self._meter.images += n


Loss = torch.Tensor | tuple[str, torch.Tensor]
StepFn = Callable[[Batch], Loss | Iterable[Loss] | None]


class _Meter:
    """Per-epoch sums and counts of the logged numbers, and the images seen."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.images = 0

    def add(self, name: str, value: float, count: int = 1) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value
        self.counts[name] = self.counts.get(name, 0) + count

    def means(self) -> dict[str, float]:
        return {k: s / max(self.counts[k], 1) for k, s in self.sums.items()}


@dataclass
class Fitted:
    """What :func:`fit` returns: the trained module (unwrapped, on the CPU, in eval mode) and its record."""

    model: nn.Module
    curves: dict[str, list[float]]
    seconds: float
    images: int
    steps: int
    threads: int
    device: str
    world_size: int
    amp: bool

    @property
    def loss_curve(self) -> list[float]:
        """Mean loss per epoch of the losses yielded without a name (or named ``"loss"``)."""
        return self.curves.get("loss", [])

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def record(self) -> dict[str, Any]:
        """Timing and throughput as a plain dict (for cache metadata)."""
        return {
            "seconds": self.seconds,
            "images": self.images,
            "images_per_second": self.images_per_second,
            "steps": self.steps,
            "threads": self.threads,
            "device": self.device,
            "world_size": self.world_size,
            "amp": self.amp,
        }


def _losses(out: Loss | Iterable[Loss] | None) -> Iterator[tuple[str, torch.Tensor]]:
    """The named losses of one step's result, pulled one at a time (a generator resumes after each is stepped)."""
    if out is None:
        return
    if isinstance(out, torch.Tensor) or (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], str)):
        out = (out,)
    for item in out:
        name, loss = item if isinstance(item, tuple) else ("loss", item)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""
            raise TypeError(
                f"A step must give scalar loss tensors (or (name, loss) pairs); got {type(loss).__name__}{shape}."
            )
        yield name, loss


def fit(
    model: nn.Module,
    params: Iterable[nn.Parameter],
    step: StepFn,
    images: torch.Tensor,
    *,
    optimizer: OptimizerSpec,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    options: RunOptions | None = None,
    drop_last: bool = True,
    steps_per_batch: int = 1,
    views: int = 1,
    distributed: bool = True,
    progress: bool = True,
    label: str = "train",
    status: Callable[[], dict[str, Any]] | None = None,
) -> Fitted:
    """Train ``model`` with ``step`` over ``epochs`` seeded passes of ``images``; the one training loop.

    Per epoch, ``generator`` draws a permutation of ``images`` cut into batches of ``batch_size``
    (:func:`shuffled_batches`); each batch is put on the device (:class:`BatchSource`) and handed
    to ``step`` as a :class:`Batch`. ``step`` returns a scalar loss, or yields several (e.g. a
    SimCLR loss and then rotation losses): each is back-propagated (times the world size) and
    followed by one optimiser step and one step of the per-batch cosine schedule
    (:func:`cosine_with_warmup`, over ``epochs x batches x steps_per_batch`` steps) before the
    step function is resumed, so a later loss sees the updated weights. A loss may be named,
    ``(name, loss)``; the record keeps each name's mean per epoch. ``None`` or no loss skips the
    batch. Under DDP each yielded loss needs its own forward pass through ``batch.model``.

    The step function does what differs between trainings (augmentation, the API's answers, the
    loss); this does the rest: device, channels-last, DDP, optimiser, schedule, progress bar,
    timing, and moving the result back to the CPU.

    Args:
        model: one module holding everything trained (what DDP wraps); ``step`` calls it through
            ``batch.model`` / ``batch.forward``.
        params: the parameters to optimise (may leave some of ``model`` frozen).
        images: (N, ...) samples indexed by the batches (uint8 images, or float features).
        optimizer: :class:`OptimizerSpec` (name, lr, weight decay, warm-up epochs).
        generator: the seeded generator for batch order (and, through ``batch.generator``, for
            augmentation); the caller seeds it (:func:`~encsteal.runtime.seed_everything`).
        options: device, bf16 autocast, channels-last, batch loading (default: ``RunOptions()``).
        steps_per_batch: losses each batch yields (the schedule's length); more raises.
        views: images through the model per sample, for the images/s figure (2 for two views).
        distributed: under ``torchrun``, shard each global batch between the processes and wrap
            ``model`` in DDP. False: every process trains alone on whole batches (e.g. a probe
            fitted on rank 0 only).
        label: the progress bar's label; ``status``: extra items for its postfix, per epoch.

    Same seed, same options and the same device give the same weights and curves.
    """
    from encsteal import distributed as dist_mod

    for name, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("steps_per_batch", steps_per_batch),
        ("views", views),
    ):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(optimizer, OptimizerSpec):
        raise TypeError(f"optimizer must be an OptimizerSpec, got {type(optimizer).__name__}.")
    if not isinstance(images, torch.Tensor) or len(images) == 0:
        raise ValueError("fit needs a non-empty tensor of images (or features) to draw batches from.")
    if not callable(step):
        raise TypeError(f"step must be callable (Batch -> loss), got {type(step).__name__}.")
    params = list(params)
    if not params:
        raise ValueError("fit needs at least one parameter to optimise.")
    opts = options if options is not None else RunOptions()
    dev = prepare_device(opts)
    ddp = dist_mod.info()
    rank, world = (ddp.rank, ddp.world_size) if distributed else (0, 1)
    net = model.to(dev)
    if opts.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    wrapped = dist_mod.wrap_ddp(net, dev, opts.sync_bn) if distributed else net
    source = BatchSource(
        images, dev, choose_loader(opts, images, dev), opts.num_workers, opts.pin_memory, opts.prefetch_factor
    )
    opt = make_optimizer(params, optimizer.name, optimizer.lr, optimizer.weight_decay)
    per_epoch = steps_per_epoch(len(images), batch_size, drop_last) * steps_per_batch
    sched = cosine_with_warmup(opt, per_epoch * epochs, per_epoch * optimizer.warmup_epochs)
    curves: dict[str, list[float]] = {}
    images_seen, steps = 0, 0
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc=label, disable=not (progress and ddp.is_main))
    for epoch in bar:
        meter = _Meter()
        plan = dist_mod.sharded_epoch(len(images), batch_size, generator, drop_last, rank, world)
        for (idx, part), xb in zip(plan, source.fetch([idx[part] for idx, part in plan])):
            if len(idx) < world:  # a last batch smaller than the number of processes
                continue
            batch = Batch(xb, idx, part, wrapped, dev, generator, opts, epoch, world, meter)
            taken = 0
            for name, loss in _losses(step(batch)):
                taken += 1
                if taken > steps_per_batch:
                    raise ValueError(
                        f"The step gave more than steps_per_batch={steps_per_batch} losses for one "
                        "batch; pass the number of losses it gives (the schedule's length)."
                    )
                opt.zero_grad(set_to_none=True)
                (loss * world).backward()
                opt.step()
                sched.step()
                meter.add(name, loss.item())
            if taken:
                steps += taken
                meter.images += len(idx) * views
        for name, mean in meter.means().items():
            curves.setdefault(name, []).append(mean)
        images_seen += meter.images
        bar.set_postfix({k: f"{v[-1]:.3f}" for k, v in curves.items()} | (status() if status else {}))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    trained = dist_mod.unwrap(wrapped) if distributed else net
    trained = trained.to("cpu", memory_format=torch.contiguous_format).eval()
    return Fitted(trained, curves, seconds, images_seen, steps, torch.get_num_threads(), str(dev), world, opts.amp)
