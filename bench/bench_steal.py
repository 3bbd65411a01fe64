"""Benchmark: stealing throughput, query-once design vs the official re-query-every-epoch design.

Same victim, queries, loss and epochs; prints images/s (stolen-encoder training images per
second of wall time, API calls included), the queries each design paid for, and the ratio.
Usage: python bench/bench_steal.py [--queries 1000] [--epochs 5] [--views 2] [--threads 1]
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from encsteal import benchmarks


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(benchmarks.machine())
    table = pd.DataFrame(benchmarks.stealing(a.queries, a.epochs, a.views))
    print(table.round(2).to_string(index=False))
    for augment in ("none", "views"):
        sub = table[table.what.str.contains(f"augment={augment},")]
        once, again = sub.images_per_s.iloc[0], sub.images_per_s.iloc[1]
        print(f"augment={augment}: query-once / re-query speed ratio = {once / again:.2f}x")


if __name__ == "__main__":
    main()
