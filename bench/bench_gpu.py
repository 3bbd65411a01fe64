"""Benchmark: a scaled-down full-profile steal on shipped data, fp32 vs bf16, on a GPU.

The full profile's stealing code path (``encsteal.attack.steal`` with ``RunOptions``: device,
bf16 autocast, channels-last, in-memory or DataLoader batches) on Fashion-MNIST (shipped in the
Debian package, no download) resized to 32x32 RGB, with the paper's CIFAR ResNet-18 as victim
and stolen encoder, InfoNCE, batch 256, SimCLR augmentation on the stolen side. Prints the
stolen encoder's training throughput (images/s, forward + backward, after one warm-up epoch) for
fp32 and for bf16. ``--arch resnet50 --size 224`` gives the ImageNet-scale figure instead.

On a machine without CUDA it says so, skips bf16 (refused on CPUs: >50x slower there) and
prints an fp32 CPU figure at a much smaller size. It asserts nothing.

Usage: python bench/bench_gpu.py [--queries 10240] [--epochs 3] [--batch-size 256]
                                 [--arch resnet18] [--size 32] [--loader auto] [--num-workers 8]
"""

from __future__ import annotations

import argparse

import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.models import build_encoder
from encsteal.runtime import RunOptions


def run(
    queries, arch: str, size: int, epochs: int, batch: int, amp: bool, device: str, loader: str, workers: int
) -> float:
    torch.manual_seed(0)
    victim = build_encoder(arch, 3, size).eval()
    api = EncoderAPI(victim, device=device, batch_size=batch)
    cfg = StealConfig(
        loss="infonce",
        loss_params={"temperature": 0.07},
        epochs=epochs,
        batch_size=batch,
        arch=arch,
        lr=3e-4,
        augment="stolen_only",
    )
    opts = RunOptions(device=device, amp=amp, loader=loader, num_workers=workers)
    if device == "cuda":  # warm-up: cuDNN's algorithm search and the allocator, not measured
        warm = StealConfig(**{**cfg.__dict__, "epochs": 1})
        steal(api, queries, warm, input_size=size, cache=ResultCache(enabled=False), progress=False, options=opts)
    res = steal(api, queries, cfg, input_size=size, cache=ResultCache(enabled=False), progress=False, options=opts)
    return res.images_per_second  # stolen-encoder training images (forward + backward) per second


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=10240)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--loader", default="auto", choices=("auto", "memory", "dataloader"))
    p.add_argument("--num-workers", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (CPU fallback only)")
    a = p.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(a.threads)
        print(
            "No CUDA device: bf16 autocast needs a GPU (on a CPU it is >50x slower and refused), so only an "
            "fp32 CPU figure is printed, at a much smaller size (128 queries, batch 32, 1 epoch)."
        )
        a.queries, a.batch_size, a.epochs, a.num_workers = min(a.queries, 128), min(a.batch_size, 32), 1, 0
    fmnist = load("fmnist", "train").subset(torch.arange(a.queries))
    queries = fmnist.images.expand(-1, 3, -1, -1).contiguous()  # grey -> RGB; resized to --size per batch
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} thread(s)"
    print(
        f"{name}; steal: {a.arch} victim and copy at {a.size}px, InfoNCE, batch {a.batch_size}, "
        f"{a.queries} Fashion-MNIST queries, {a.epochs} epochs, loader {a.loader}"
    )
    for amp in (False, True) if cuda else (False,):
        rate = run(queries, a.arch, a.size, a.epochs, a.batch_size, amp, device, a.loader, a.num_workers)
        print(f"  {'bf16 autocast' if amp else 'fp32 (TF32 matmuls)' if cuda else 'fp32':20s}: {rate:9.0f} images/s")


if __name__ == "__main__":
    main()
