"""Quick-profile evidence for the foundation and stealing issues, printed as Markdown tables.

1. the Fashion-MNIST SimCLR victim next to a random-initialised encoder and raw pixels;
2. stealing it with InfoNCE from 1/5 of its training-set size in queries (held-out images);
3. representation stealing vs label / probability stealing from a supervised victim at an equal
   number of queries.

Usage: python scripts/quick_report.py [--victim-epochs 20] [--queries 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data import role_splits
from encsteal.models import build_encoder
from encsteal.report import encoder_table, with_ratio
from encsteal.victims import VictimConfig, train_victim


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--victim-epochs", type=int, default=20)
    p.add_argument("--num-train", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=2_000)
    p.add_argument("--steal-epochs", type=int, default=30)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-supervised", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    sizes = {"victim": a.num_train, "probe_train": 5000, "probe_val": 1000, "query": a.queries, "probe_test": 2000}
    splits = role_splits("fmnist", sizes, seed=0)
    cfg = VictimConfig(num_train=a.num_train, epochs=a.victim_epochs, temperature=a.temperature, lr=a.lr, seed=a.seed)
    victim = train_victim(cfg, progress=False)
    print(f"\n## SimCLR victim: {a.num_train} Fashion-MNIST images, {a.victim_epochs} epochs, "
          f"trained in {victim.train_seconds:.0f} s ({victim.record.get('images_per_second', 0):.0f} views/s, "
          f"{victim.record.get('threads')} thread(s))\n")
    torch.manual_seed(a.seed)
    random_enc = build_encoder("convnet", 1, 28)
    table = encoder_table({"victim (SimCLR)": victim.encoder, "random init": random_enc, "raw pixels": None},
                          splits, victim=victim.encoder)
    print(table.round(2).to_markdown())

    start = time.perf_counter()
    api = EncoderAPI(victim.encoder, victim.head, price_per_1k=1.0)
    stolen = steal(api, splits["query"], StealConfig(loss="infonce", loss_params={"temperature": 0.1},
                                                     epochs=a.steal_epochs, seed=a.seed), progress=False)
    print(f"\n## Stolen with InfoNCE: {stolen.queries} queries (= {stolen.queries / a.num_train:.0%} of the "
          f"victim's training set), ${stolen.spent:.2f} at $1 per 1,000, {stolen.seconds:.0f} s "
          f"(wall {time.perf_counter() - start:.0f} s)\n")
    table = encoder_table({"victim (SimCLR)": victim.encoder, "stolen (InfoNCE)": stolen.encoder,
                           "random init": random_enc, "raw pixels": None}, splits, victim=victim.encoder)
    print(with_ratio(table, "victim (SimCLR)").round(2).to_markdown())
    if a.skip_supervised:
        return
    sup = train_victim(VictimConfig(method="supervised", num_train=a.num_train, epochs=a.victim_epochs,
                                    lr=a.lr, seed=a.seed), progress=False)
    print(f"\n## Supervised victim (same encoder + linear classifier): trained in {sup.train_seconds:.0f} s\n")
    encoders = {"supervised victim": sup.encoder}
    for output in ("label", "probabilities"):
        api = EncoderAPI(sup.encoder, sup.head, mode="supervised", output=output)
        res = steal(api, splits["query"], StealConfig(loss="mse", epochs=a.steal_epochs, seed=a.seed), progress=False)
        encoders[f"stolen from {output} ({res.queries} q)"] = res.encoder
    api = EncoderAPI(sup.encoder)
    res = steal(api, splits["query"], StealConfig(loss="mse", epochs=a.steal_epochs, seed=a.seed), progress=False)
    encoders[f"stolen from representations, MSE ({res.queries} q)"] = res.encoder
    api = EncoderAPI(victim.encoder)
    res = steal(api, splits["query"], StealConfig(loss="mse", epochs=a.steal_epochs, seed=a.seed), progress=False)
    encoders[f"SimCLR victim stolen from representations, MSE ({res.queries} q)"] = res.encoder
    print(encoder_table(encoders, splits, victim=sup.encoder).round(2).to_markdown())


if __name__ == "__main__":
    main()
