"""Benchmark: stealing throughput, query-once design vs the official re-query-every-epoch design.

Same victim, queries, loss and epochs; prints images/s (stolen-encoder training images per
second of wall time, API calls included) and the queries each design paid for. Asserts nothing.
Usage: python bench/bench_steal.py [--queries 1000] [--epochs 5] [--views 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.models import SmallConvNet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    victim = SmallConvNet(1).eval()
    queries = load("fmnist", "train").subset(torch.arange(a.queries))
    print(f"{a.queries} Fashion-MNIST queries, {a.epochs} epochs, convnet victim and copy, "
          f"{a.threads} thread(s)")
    for augment in ("none", "views"):
        rates = {}
        for requery in (False, True):
            cfg = StealConfig(loss="infonce", epochs=a.epochs, augment=augment, views=a.views,
                              requery_every_epoch=requery)
            start = time.perf_counter()
            res = steal(EncoderAPI(victim), queries, cfg, cache=ResultCache(enabled=False), device="cpu",
                        progress=False)
            wall = time.perf_counter() - start
            rates[requery] = res.record_images / wall
            design = "re-query every epoch (official)" if requery else "query once (default)"
            print(f"  augment={augment:5s} {design:34s}: {rates[requery]:7.0f} images/s, "
                  f"{res.queries:6d} queries paid")
        print(f"  augment={augment:5s} speed ratio query-once / re-query: {rates[False] / rates[True]:.2f}x")


if __name__ == "__main__":
    main()
