"""Regenerate the pre-trained models that ship in ``shipped/`` for the quick profile.

``python -m encsteal.ship`` computes every model the quick chapters would otherwise train (the
Fashion-MNIST SimCLR and supervised victims, the watermarked victim, the independent reference
models of the watermark test and the model trained on other data), each with its fixed seed,
through the local result cache (reusing identical configurations already there), and copies the
entries into ``shipped/``: safetensors weights plus a JSON sidecar with the full configuration,
the package version, the training record and the sha256 of the weights. ``--retrain`` uses a
fresh, empty cache, so everything is trained from scratch. The book uses these files only when a
configuration matches exactly, after checking the sha256.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from typing import Any

from encsteal.book import load_profile
from encsteal.cache import SHIPPED_DIR, ResultCache, file_sha256
from encsteal.params import other_data_config, reference_configs, victim_config, watermark_config
from encsteal.victims import train_victim
from encsteal.watermark import _watermark_key, embed_watermark


def build_all(profile: str, cache: ResultCache) -> list[tuple[str, str, Any]]:
    """Train (or load) every shipped model; return (name, cache kind, cache config) for each."""
    p = load_profile(profile)
    entries: list[tuple[str, str, Any]] = []
    victim = train_victim(victim_config(p), cache)
    entries.append(("fmnist_simclr", "victim", victim.config))
    supervised = train_victim(victim_config(p, method="supervised"), cache)
    entries.append(("fmnist_supervised", "victim", supervised.config))
    wcfg = watermark_config(p)
    embed_watermark(victim, wcfg, cache)
    entries.append(("fmnist_simclr_watermarked", "watermarked_victim", _watermark_key(victim, wcfg)))
    for cfg in [*reference_configs(p), other_data_config(p)]:
        train_victim(cfg, cache)
        entries.append((f"{cfg.dataset}_simclr_seed{cfg.seed}_{cfg.epochs}ep", "victim", cfg))
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--retrain", action="store_true", help="train from scratch in an empty cache")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as fresh:
        cache = ResultCache(fresh, shipped=()) if args.retrain else ResultCache(shipped=())
        target = ResultCache(SHIPPED_DIR, shipped=())
        for name, kind, config in build_all(args.profile, cache):
            for src, dst in zip(cache.paths(kind, config), target.paths(kind, config)):
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            weights, sidecar = target.paths(kind, config)
            meta = json.loads(sidecar.read_text())
            meta["sha256"] = file_sha256(weights)  # entries cached by older versions lack it
            sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True))
            print(f"{name}: {target.paths(kind, config)[0].relative_to(SHIPPED_DIR.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
