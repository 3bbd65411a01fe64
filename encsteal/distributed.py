"""Multi-process training under ``torchrun`` with DistributedDataParallel (DDP).

Design: N processes train *the same model as one process with the same global batch*.

* **Batches.** Every rank draws the same seeded permutation of the data each epoch (the same
  draws as the single-process :func:`encsteal.training.shuffled_batches`), cuts it into global
  batches of ``batch_size`` and takes its own contiguous slice of each global batch
  (:func:`sharded_epoch`). This plays the role of a ``DistributedSampler`` (which deals rank
  ``r`` the indices ``r, r + N, ...`` of the permutation) but keeps the union of the ranks' shards
  equal to the single-process batch, so the learning-rate schedule, the number of steps and the
  batch composition do not change with N.
* **Augmentation.** Random views are drawn for the whole global batch from the shared generator
  and each rank keeps the views of its own images (:func:`augment_shard`); the augmentation is
  per image, so rank r's views are exactly those a single process would make.
* **Losses that couple a batch** (NT-Xent, InfoNCE, SoftNN, SupCon, Barlow) are computed on the
  features gathered from every rank (:func:`gather_with_grad` keeps this rank's rows
  differentiable); each rank backpropagates ``world_size x loss`` through its own rows and DDP
  averages the gradients, which gives exactly the single-process gradient.
* **Batch norm** statistics are computed over the global batch (:func:`convert_sync_batchnorm`:
  torch's ``SyncBatchNorm`` on CUDA/NCCL; on the CPU, where ``SyncBatchNorm`` is not supported,
  :class:`AllReduceBatchNorm` all-reduces the sums over gloo).
* Only rank 0 shows progress bars and writes cache entries (the others wait at a barrier).

Start: ``torchrun --nproc_per_node=N -m encsteal.full params/full.yaml``; :func:`init_from_env`
reads the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). Without them everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from encsteal.training import shuffled_batches

TORCHRUN_VARS: tuple[str, ...] = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the number of processes and its local GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """This process's rank and world size (rank 0 of 1 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return DistInfo(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    return DistInfo()


def is_main() -> bool:
    return info().is_main


def init_from_env(backend: str | None = None, timeout_s: float | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment.

    With ``WORLD_SIZE`` unset or 1 nothing is initialised (a plain single-process run).
    ``backend`` defaults to NCCL when CUDA is available, else gloo (CPU). ``timeout_s`` (default
    ``$ENCSTEAL_DIST_TIMEOUT`` or 3 hours) bounds how long processes wait for each other, e.g.
    while rank 0 decodes an ImageNet subset once (``python -m encsteal.full ... --prepare``
    does that beforehand, in a single process).
    """
    timeout_s = timeout_s if timeout_s is not None else float(os.environ.get("ENCSTEAL_DIST_TIMEOUT", 3 * 3600))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return info()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support.")
    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set: start multi-process runs with "
            "`torchrun --nproc_per_node=N -m encsteal.full ...`, which sets them."
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return info()


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if info().enabled:
        dist.barrier()


# ---------------------------------------------------------------------------- batches


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous share of ``n`` items (sizes differ by <= 1)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def sharded_epoch(
    n: int, batch_size: int, generator: torch.Generator, drop_last: bool = True, rank: int = 0, world_size: int = 1
) -> list[tuple[torch.Tensor, slice]]:
    """One epoch: the global index batches (identical on every rank, the same draws as
    :func:`~encsteal.training.shuffled_batches`) and this rank's slice of each."""
    plan = []
    for idx in shuffled_batches(n, batch_size, generator, drop_last):
        start, stop = shard_bounds(len(idx), rank, world_size)
        plan.append((idx, slice(start, stop)))
    return plan


def augment_shard(
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
    shard: torch.Tensor,
    global_size: int,
    offset: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Views of this rank's ``shard`` exactly as a single process would draw them for the whole
    global batch: the shard is placed at ``offset`` in a zero batch of ``global_size`` images,
    the whole batch is augmented (one random draw per image, in order) and the shard's rows are
    returned. Without sharding this is ``augment(shard, generator)``."""
    if global_size == len(shard):
        return augment(shard, generator)
    full = shard.new_zeros((global_size,) + tuple(shard.shape[1:]))
    full[offset : offset + len(shard)] = shard
    return augment(full, generator)[offset : offset + len(shard)]


# ---------------------------------------------------------------------------- collectives


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks (the gradient is summed over ranks too)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _AllReduceSum.apply(grad, ctx.group), None


def all_reduce_sum(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of ``tensor`` over ranks, differentiable; identity for a single process."""
    if not info().enabled:
        return tensor
    return _AllReduceSum.apply(tensor, group)


def sum_over_ranks(value: float | int) -> float | int:
    """A Python number summed over ranks (for counters)."""
    if not info().enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    out = t.item()
    return int(round(out)) if isinstance(value, int) else out


def all_gather_varlen(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (their first dimensions may differ), in rank order."""
    d = info()
    if not d.enabled:
        return [tensor]
    tensor = tensor.contiguous()
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(d.world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0],) + tuple(tensor.shape[1:]))
        tensor = torch.cat([tensor, pad])
    parts = [torch.empty_like(tensor) for _ in range(d.world_size)]
    dist.all_gather(parts, tensor)
    return [p[:c] for p, c in zip(parts, counts)]


def gather_nograd(tensor: torch.Tensor, blocks: int = 1) -> torch.Tensor:
    """The rows of every rank, concatenated in rank order (no gradient); ``blocks`` as in
    :func:`gather_with_grad`."""
    if not info().enabled:
        return tensor.detach()
    if blocks > 1:
        return torch.cat([gather_nograd(part) for part in tensor.chunk(blocks)])
    return torch.cat(all_gather_varlen(tensor.detach()))


def gather_with_grad(tensor: torch.Tensor, blocks: int = 1) -> torch.Tensor:
    """Rows of every rank concatenated in rank order; this rank's rows keep their gradient.

    ``blocks > 1``: the local tensor is ``blocks`` stacked groups of equal size (e.g. two
    augmented views ``[v1; v2]``); each group is gathered separately and the groups are
    concatenated, giving the single-process order ``[v1 of all ranks; v2 of all ranks]``.
    """
    d = info()
    if not d.enabled:
        return tensor
    if blocks > 1:
        return torch.cat([gather_with_grad(part) for part in tensor.chunk(blocks)])
    parts = all_gather_varlen(tensor.detach())
    parts[d.rank] = tensor
    return torch.cat(parts)


# ---------------------------------------------------------------------------- batch norm


class AllReduceBatchNorm(_BatchNorm):
    """Batch norm over the global batch for CPU/gloo runs (torch's SyncBatchNorm is GPU-only).

    In training, per-channel sums and squared deviations are all-reduced (two passes, so the
    variance has no cancellation); the running statistics are updated from the global batch
    with the unbiased variance, as ``BatchNorm`` does. In eval mode, or with a single process,
    it is a plain ``BatchNorm``.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group=None,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and info().enabled):
            return super().forward(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        shape = [1, c] + [1] * (x.dim() - 2)
        xf = x.float()
        local = torch.cat([xf.sum(dims), xf.new_tensor([x.numel() // c])])
        total = all_reduce_sum(local, self.process_group)
        count = total[c].detach()
        mean = total[:c] / count
        centred = xf - mean.view(shape)
        var = all_reduce_sum((centred * centred).sum(dims), self.process_group) / count
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None  # type: ignore[arg-type]
                    else self.momentum
                )
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)  # type: ignore[union-attr]
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)  # type: ignore[union-attr]
        return y.to(x.dtype)


_SYNC_TYPES = (nn.SyncBatchNorm, AllReduceBatchNorm)


def _swap(module: nn.Module, make: Callable[[nn.Module], nn.Module | None]) -> nn.Module:
    new = make(module)
    if new is not None:
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap(child, make))
    return module


def _copy_bn(src: _BatchNorm, dst: _BatchNorm) -> _BatchNorm:
    if src.affine:
        dst.weight, dst.bias = src.weight, src.bias
    if src.track_running_stats:
        dst.running_mean, dst.running_var = src.running_mean, src.running_var
        dst.num_batches_tracked = src.num_batches_tracked
    dst.train(src.training)
    return dst


def convert_sync_batchnorm(module: nn.Module, device: torch.device, process_group=None) -> nn.Module:
    """Replace every BatchNorm by a synchronised one (SyncBatchNorm on CUDA, :class:`AllReduceBatchNorm`
    on the CPU); :func:`revert_sync_batchnorm` restores the original classes."""

    def make(m: nn.Module) -> nn.Module | None:
        if not isinstance(m, _BatchNorm) or isinstance(m, _SYNC_TYPES):
            return None
        cls = nn.SyncBatchNorm if device.type == "cuda" else AllReduceBatchNorm
        new = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, process_group=process_group)
        new._encsteal_original = type(m)  # type: ignore[assignment]
        return _copy_bn(m, new)

    return _swap(module, make)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm` (same parameters and buffers, original classes)."""

    def make(m: nn.Module) -> nn.Module | None:
        original = getattr(m, "_encsteal_original", None)
        if not isinstance(m, _SYNC_TYPES) or original is None:
            return None
        new = original(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        return _copy_bn(m, new)

    return _swap(module, make)


def wrap_ddp(module: nn.Module, device: torch.device, sync_bn: bool = True) -> nn.Module:
    """``module`` in DistributedDataParallel (batch norm synchronised if ``sync_bn``); unchanged
    for a single process. Unwrap with :func:`unwrap`."""
    if not info().enabled:
        return module
    if sync_bn:
        group = dist.new_group(backend="gloo") if device.type == "cpu" else None
        module = convert_sync_batchnorm(module, device, group)
    ids = [device.index] if device.type == "cuda" else None
    # With synchronised batch norm every rank has the same running statistics: no need to
    # broadcast buffers before each forward pass.
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=not sync_bn)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside DDP, with its batch norms reverted to the original classes."""
    if isinstance(module, nn.parallel.DistributedDataParallel):
        module = module.module
    return revert_sync_batchnorm(module)
