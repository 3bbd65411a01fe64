"""Benchmark: victim-training images/s and probe time for the quick encoder (prints figures).

Usage: python bench/bench_victim.py [--threads 1] [--images 2560] [--epochs 2]
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from encsteal import benchmarks


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=2560)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(benchmarks.machine())
    rows = benchmarks.victim_training(a.images, a.epochs) + benchmarks.probe_time()
    print(pd.DataFrame(rows).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
