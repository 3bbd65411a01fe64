"""Training plumbing shared by victims and attacks: optimisers, the LR schedule, batches."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")


def make_optimizer(params: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """Adam or SGD with momentum (the paper's code uses both, NOTES 5.1-5.2)."""
    if lr <= 0:
        raise ValueError(f"Learning rate must be > 0, got {lr}.")
    if weight_decay < 0:
        raise ValueError(f"Weight decay must be >= 0, got {weight_decay}.")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimiser {name!r}. Allowed: {', '.join(OPTIMIZERS)}.")


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
