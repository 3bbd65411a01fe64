"""Training plumbing shared by victims and attacks: optimisers (Adam, SGD, LARS), the LR schedule,
index batches and the batch source that puts them on the device (in memory, or a multi-worker,
pinned-memory DataLoader on GPUs)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd", "lars")


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam, SGD with momentum, or SGD with LARS (the paper's code uses all three, NOTES 5.1-5.4)."""
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
    official ImageNet scripts use (NOTES 5.4; You et al. 2017).

    Before each SGD step, every parameter's gradient (plus weight decay) is multiplied by
    ``min(trust * |w| / (|g| + wd |w| + eps) / lr, 1)``; parameters whose weight or gradient norm
    is zero are left alone. Weight decay is folded into the gradient there, so the inner SGD step
    runs without it.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 1e-8):
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
                scale = torch.where((w_norm > 0) & (g_norm > 0), (adaptive / lr).clamp(max=1.0),
                                    torch.ones_like(w_norm))
                if wd:
                    p.grad.add_(p, alpha=wd)
                p.grad.mul_(scale)
            group["weight_decay"] = 0.0
        try:
            return super().step(closure)
        finally:
            for group, wd in zip(self.param_groups, decays):
                group["weight_decay"] = wd


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int,
                       warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, to be stepped once per *batch*.

    The official code steps a cosine with ``T_max = len(loader)`` once per epoch, so its LR
    oscillates (NOTES 9.4 item 6, sthalles/SimCLR #8 and #43); this schedule spans the whole run.
    """
    total_steps = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator,
                     drop_last: bool = True) -> Iterator[torch.Tensor]:
    """Index batches of one epoch over ``range(n)`` in a seeded random order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}.")
    order = torch.randperm(n, generator=generator)
    stop = n - n % batch_size if (drop_last and n >= batch_size) else n
    for s in range(0, stop, batch_size):
        yield order[s:s + batch_size]


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

    def __init__(self, images: torch.Tensor, device: torch.device, mode: str = "memory",
                 num_workers: int = 0, pin_memory: bool = True, prefetch_factor: int = 4):
        if mode not in ("memory", "dataloader"):
            raise ValueError(f"Unknown batch source mode {mode!r}. Allowed: memory, dataloader.")
        self.device, self.mode = device, mode
        self.images = images.to(device) if mode == "memory" else images
        self._loader = None
        if mode == "dataloader":
            self._sampler = _EpochSampler()
            extra = {"persistent_workers": True, "prefetch_factor": prefetch_factor} if num_workers > 0 else {}
            self._loader = torch.utils.data.DataLoader(
                _Rows(images), sampler=self._sampler, batch_size=None, num_workers=num_workers,
                pin_memory=pin_memory and device.type == "cuda", **extra)

    def fetch(self, batches: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each index batch, on the device, in order."""
        if self._loader is None:
            for idx in batches:
                yield self.images[idx.to(self.images.device)]
            return
        self._sampler.batches = list(batches)
        for xb in self._loader:
            yield xb.to(self.device, non_blocking=True)
