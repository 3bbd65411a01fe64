"""Regenerate the pre-trained victims that ship in ``shipped/`` for the quick profile.

``python -m encsteal.ship`` trains each victim of ``params/quick.yaml`` with its fixed seed (or
takes it from the local cache when the identical configuration is there) and stores it in
``shipped/`` in the cache's format: safetensors weights plus a JSON sidecar with the full
configuration, the package version, the training record and the sha256 of the weights.
``--retrain`` ignores every cache and trains from scratch. The book uses these files when the
configuration matches exactly, so a book build does not spend ten minutes training victims.
"""

from __future__ import annotations

import argparse

from encsteal.book import load_profile
from encsteal.cache import SHIPPED_DIR, ResultCache
from encsteal.checkpoint import flat_state
from encsteal.params import victim_config
from encsteal.victims import VictimConfig, fit_victim, train_victim, victim_training_set


def shipped_victims(profile: str = "quick") -> dict[str, VictimConfig]:
    """The victims the book's chapters use under ``profile``."""
    p = load_profile(profile)
    return {"fmnist_simclr": victim_config(p), "fmnist_supervised": victim_config(p, method="supervised")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--retrain", action="store_true", help="train from scratch, ignoring caches")
    args = parser.parse_args(argv)
    target = ResultCache(SHIPPED_DIR, shipped=())
    for name, config in shipped_victims(args.profile).items():
        if args.retrain:
            victim = fit_victim(config, victim_training_set(config))
        else:
            victim = train_victim(config, ResultCache())
        target.put("victim", config, flat_state({"encoder": victim.encoder, "head": victim.head}),
                   {"record": victim.record, "name": name})
        print(f"{name}: {target.paths('victim', config)[0]} (trained in {victim.train_seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
