"""Seeds, devices, threads and the GPU options every experiment takes.

:class:`RunOptions` gathers *how* a run executes (device, bf16 autocast, memory layout, data
loading, batch-norm synchronisation under DDP); it is kept apart from the configurations that say
*what* is trained (``VictimConfig``, ``StealConfig``), so that the result caches keyed by those
do not change with the machine. Only ``amp`` changes the numbers enough to enter a cache key.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

LOADERS: tuple[str, ...] = ("auto", "memory", "dataloader")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh torch Generator seeded with ``seed``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cpu"``/``"cuda"``/``"cuda:N"`` as given.

    Under ``torchrun`` (``LOCAL_RANK`` set), ``"auto"`` and ``"cuda"`` mean this process's GPU,
    ``cuda:$LOCAL_RANK``.
    """
    local = os.environ.get("LOCAL_RANK")
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but no CUDA GPU is available; use 'cpu' or 'auto'.")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"Unknown device {device!r}. Allowed: 'auto', 'cpu', 'cuda', 'cuda:N'.")
    if device == "cuda" and local is not None:
        device = f"cuda:{int(local)}"
    return torch.device(device)


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """Images in channels-last memory layout (about 1.3x faster convolutions on this CPU)."""
    return images.contiguous(memory_format=torch.channels_last)


@dataclass(frozen=True)
class RunOptions:
    """How a training run executes (not what it computes).

    Attributes:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`resolve_device`).
        amp: bf16 autocast for the forward passes. CUDA only: on a CPU without native bf16 support,
            bf16 training measured over 50x slower than fp32 (2-core development machine), so
            asking for it there is an error. Losses are always computed in fp32; bf16 needs no
            gradient scaler.
        channels_last: NHWC memory layout for conv nets (faster on tensor cores and on the CPU).
        loader: ``"memory"`` keeps the uint8 images on the device and indexes them there (fast for
            CIFAR-size sets); ``"dataloader"`` reads batches in ``num_workers`` worker processes into
            pinned memory and copies them asynchronously (for ImageNet-size sets that do not fit
            on the GPU); ``"auto"`` picks ``"memory"`` on the CPU or when the images take less
            than ``memory_limit_gb``, else ``"dataloader"``.
        num_workers, pin_memory, prefetch_factor: DataLoader settings (``"dataloader"`` only).
        sync_bn: under DistributedDataParallel, compute batch-norm statistics over the global
            batch (torch's SyncBatchNorm on CUDA, an all-reduce version on the CPU/gloo), so that
            N processes train the same model as one process with the same global batch.
        tf32: allow TF32 matmuls/convolutions for fp32 on CUDA (Ampere and later).
        cudnn_benchmark: let cuDNN pick the fastest convolution algorithms (fixed input sizes).
        memory_limit_gb: threshold of ``loader="auto"``.
    """

    device: str = "auto"
    amp: bool = False
    channels_last: bool = True
    loader: str = "auto"
    num_workers: int = 0
    pin_memory: bool = True
    prefetch_factor: int = 4
    sync_bn: bool = True
    tf32: bool = True
    cudnn_benchmark: bool = True
    memory_limit_gb: float = 8.0

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ValueError(f"Unknown loader {self.loader!r}. Allowed: {', '.join(LOADERS)}.")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}.")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be >= 1, got {self.prefetch_factor}.")

    def cache_tag(self) -> dict | None:
        """What of these options enters a cache key: None unless the numbers change (bf16)."""
        return {"amp": "bf16"} if self.amp else None


def prepare_device(options: RunOptions) -> torch.device:
    """Resolve the device, check ``amp`` against it and apply the CUDA backend switches."""
    dev = resolve_device(options.device)
    check_amp(options.amp, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = options.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = options.tf32
        torch.backends.cudnn.allow_tf32 = options.tf32
    return dev


def check_amp(amp: bool, device: torch.device | str) -> None:
    """Refuse bf16 autocast anywhere but on a CUDA device, with the reason."""
    dev = torch.device(device)
    if amp and dev.type != "cuda":
        raise ValueError(
            f"amp=True (bf16 autocast) was asked for on device {str(dev)!r}. It is only supported on "
            "CUDA GPUs: on a CPU without native bf16, bf16 training measured over 50x slower than fp32 "
            "(on a 2-core development CPU). Set amp: false (or use a GPU)."
        )


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op context otherwise."""
    check_amp(amp, device)
    if amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def choose_loader(options: RunOptions, images: torch.Tensor, device: torch.device) -> str:
    """The loader ``options.loader`` resolves to for ``images`` on ``device``."""
    if options.loader != "auto":
        return options.loader
    if device.type == "cpu":
        return "memory"
    size_gb = images.numel() * images.element_size() / 1e9
    return "memory" if size_gb < options.memory_limit_gb else "dataloader"
