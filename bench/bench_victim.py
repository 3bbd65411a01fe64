"""Benchmark: victim-training throughput and probe time of the quick encoder.

Prints figures; asserts nothing. Usage: python bench/bench_victim.py [--threads 1] [--images 2560]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from encsteal.data import load, role_splits
from encsteal.models import SmallConvNet
from encsteal.probe import extract_features, probe_features
from encsteal.victims import VictimConfig, fit_victim


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=2560)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    data = load("fmnist", "train").subset(torch.arange(args.images))
    for method in ("simclr", "supervised"):
        cfg = VictimConfig(method=method, num_train=args.images, epochs=args.epochs)
        v = fit_victim(cfg, data, device="cpu", progress=False)
        print(f"{method:10s} victim training: {v.record['images_per_second']:7.0f} images/s "
              f"(views through encoder+head, forward+backward, batch {cfg.batch_size}, 28x28x1)")
    enc = SmallConvNet(1).eval()
    x = torch.rand(2048, 1, 28, 28)
    start = time.perf_counter()
    with torch.no_grad():
        enc(x)
    print(f"convnet inference: {2048 / (time.perf_counter() - start):7.0f} images/s")
    splits = role_splits("fmnist", {"probe_train": 5000, "probe_val": 1000, "probe_test": 2000}, seed=0)
    start = time.perf_counter()
    feats = {r: extract_features(enc, splits[r]) for r in ("probe_train", "probe_val", "probe_test")}
    t_feat = time.perf_counter() - start
    result = probe_features(feats, splits)
    print(f"probe (5,000 train / 1,000 val / 2,000 test, 4 C values): features {t_feat:.1f} s, "
          f"logistic regression + k-NN {result.seconds:.1f} s")
    result10 = probe_features(feats, splits, per_class=10)
    print(f"few-label probe (10 per class): {result10.seconds:.1f} s")


if __name__ == "__main__":
    main()
