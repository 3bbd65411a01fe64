"""Seeds, devices and threads: the run-wide settings every experiment takes."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh torch Generator seeded with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but no CUDA GPU is available; use 'cpu' or 'auto'.")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"Unknown device {device!r}. Allowed: 'auto', 'cpu', 'cuda', 'cuda:N'.")
    return torch.device(device)


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """Images in channels-last memory layout (about 1.3x faster convolutions on this CPU)."""
    return images.contiguous(memory_format=torch.channels_last)
