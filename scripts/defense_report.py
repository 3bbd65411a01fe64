"""Quick-profile evidence for the defenses issue (NOTES 6-7), printed as Markdown tables.

0. floors: the victim, a random-initialised encoder and raw pixels under the same probe;
1. noise on the API's outputs: legitimate user vs attacker accuracy at five strengths (std as a
   multiple of the victim's per-dimension representation std; zero mean), plus the official
   default N(5, 0.5^2);
2. the augmented-duplicate detector at several thresholds (official 0.8): both accuracies, how
   often each user is flagged, and the detector's precision/recall/F1/AUC on augmented pairs;
3. the rotation watermark: its cost to the victim and its transfer to stolen copies vs
   independent models, decided against independent references (not against chance).

Usage: python scripts/defense_report.py [--parts noise,duplicates,watermark] [--figures DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from encsteal.attack import StealConfig
from encsteal.cache import ResultCache
from encsteal.data import role_splits
from encsteal.experiments.defenses import plot_tradeoff, tradeoff_table, victim_output_std
from encsteal.experiments.watermark import build_transferability
from encsteal.models import build_encoder
from encsteal.probe import evaluate_encoder
from encsteal.report import encoder_table
from encsteal.victims import VictimConfig, train_victim
from encsteal.watermark import WatermarkConfig, embed_watermark

SIZES = {"victim": 10000, "probe_train": 5000, "probe_val": 1000, "query": 2000, "probe_test": 2000}


def _print(table) -> None:
    """Markdown with two decimals, p-values with two significant digits."""
    fmt = ("",) + tuple(".2g" if c == "p_value" else ".2f" for c in table.columns)
    print(table.to_markdown(floatfmt=fmt))
    print()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="baselines,noise,duplicates,watermark")
    p.add_argument("--steal-epochs", type=int, default=30)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--reference-epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--figures", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    parts = set(a.parts.split(","))
    cache = ResultCache()
    splits = role_splits("fmnist", SIZES, seed=0)
    t0 = time.perf_counter()
    victim = train_victim(VictimConfig(num_train=10000, epochs=20, temperature=0.2, lr=2e-3), cache, progress=False)
    ref_std = victim_output_std(victim)
    clean = evaluate_encoder(victim.encoder, splits).accuracy
    print(f"## Victim: SimCLR on 10,000 Fashion-MNIST images, 20 epochs (trained in {victim.train_seconds:.0f} s); "
          f"probe {100 * clean:.2f}%; per-dimension representation std {ref_std:.4f} "
          f"(loaded/trained in {time.perf_counter() - t0:.0f} s)\n")
    if "baselines" in parts:
        torch.manual_seed(0)
        random_init = build_encoder("convnet", 1, 28)
        table = encoder_table({"victim": victim.encoder, "random init": random_init, "raw pixels": None}, splits)
        print("Floors for reading the accuracies below: a stolen encoder keeps its architecture's prior, so an "
              "attacker's probe is bounded below by about the random-init encoder's; a legitimate user who only "
              "sees poisoned answers is not.\n")
        _print(table)
    attacks = {"mse": StealConfig(loss="mse", epochs=a.steal_epochs),
               "infonce": StealConfig(loss="infonce", loss_params={"temperature": 0.1}, epochs=a.steal_epochs)}

    if "noise" in parts:
        t = time.perf_counter()
        table = tradeoff_table(victim, splits, "noise", [0.0, 0.3, 1.0, 3.0, 10.0], attacks, base_params={"mean": 0.0},
                               num_queries=a.queries, cache=cache)
        print(f"## Noise defense: zero-mean Gaussian, std = strength x {ref_std:.4f} (victim's per-dimension std); "
              f"attacker {a.queries} queries, {a.steal_epochs} epochs ({time.perf_counter() - t:.0f} s)\n")
        _print(table.set_index("strength"))
        t = time.perf_counter()
        official = tradeoff_table(victim, splits, "noise", [0.5], attacks, base_params={"mean": 5.0}, relative=False,
                                  num_queries=a.queries, cache=cache)
        print(f"Official default N(5, 0.5^2) (absolute std 0.5 = {0.5 / ref_std:.2f} x the per-dimension std) "
              f"({time.perf_counter() - t:.0f} s):\n")
        _print(official.set_index("strength"))
        if a.figures:
            a.figures.mkdir(parents=True, exist_ok=True)
            plot_tradeoff(table, "Noise defense").savefig(a.figures / "tradeoff_noise.png", dpi=120)

    if "duplicates" in parts:
        t = time.perf_counter()
        dup_attacks = dict(attacks)
        dup_attacks["infonce_views"] = StealConfig(loss="infonce", loss_params={"temperature": 0.1},
                                                   epochs=a.steal_epochs, augment="views", views=2)
        table = tradeoff_table(victim, splits, "duplicates", [1.0, 0.95, 0.9, 0.8], dup_attacks,
                               num_queries=a.queries, cache=cache)
        print(f"## Duplicate detector (rescaled cosine of head outputs vs all earlier queries of the user; poison "
              f"N(1000, 0.5^2)); strength = threshold, 1.0 = off; attacker {a.queries} queries "
              f"(infonce_views: {a.queries // 2} images x 2 augmented views). Flag rates in %; precision/recall/F1 "
              f"(%) and AUC on {a.queries // 2} query images sent as 2 augmented views "
              f"({time.perf_counter() - t:.0f} s)\n")
        _print(table.set_index("strength"))
        if a.figures:
            plot_tradeoff(table, "Duplicate detector").savefig(a.figures / "tradeoff_duplicates.png", dpi=120)

    if "watermark" in parts:
        t = time.perf_counter()
        wcfg = WatermarkConfig(task="binary", epochs=6, lr=1e-3, rotation_steps=1)
        wm = embed_watermark(victim, wcfg, cache, progress=False)
        print(f"## Rotation watermark: {wcfg}\nembedded in {wm.record.get('seconds', float('nan')):.0f} s "
              f"(final rotation train accuracy {100 * wm.record['rotation_train_accuracy'][-1]:.1f}%)\n")
        other = [VictimConfig(dataset="mnist5k", num_train=4000, epochs=20, temperature=0.2, lr=2e-3, seed=7)]
        table = build_transferability(wm, splits, attacks, budgets=(500, a.queries), reference_seeds=(1, 2, 3),
                                      reference_epochs=a.reference_epochs, other_data=other, original=victim,
                                      control_steal="mse", cache=cache)
        print(f"Watermark accuracy on {len(splits['probe_test'])} rotated held-out test images (one rotation each), "
              f"Wilson 95% interval; one-sided prediction-interval t-test against the independent references "
              f"(SimCLR, same data, seeds 1-3, {a.reference_epochs} epochs), alpha 0.05; 'threshold' = accuracy above "
              f"which the suspect is called stolen; 'probe' = Fashion-MNIST linear probe "
              f"({time.perf_counter() - t:.0f} s)\n")
        _print(table)
    print(f"Total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
