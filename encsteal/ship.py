"""Regenerate (or check) the pre-trained models that ship in ``shipped/`` for the quick profile.

``python -m encsteal.ship`` computes every model the quick chapters would otherwise train (the
Fashion-MNIST SimCLR and supervised victims, the watermarked victim, the independent reference
models of the watermark test and the model trained on other data), each with its fixed seed,
through the local result cache (reusing identical entries already there, i.e. same configuration
*and* same code), and copies the entries into ``shipped/``: safetensors weights plus a JSON sidecar
with the key material (configuration, code hash, algorithm version), the package version, the
training record and the sha256 of the weights. ``--retrain`` uses a fresh, empty cache, so
everything is trained from scratch. Every other entry in ``shipped/`` (those the new ones replace,
made by older code) is then removed.

The book uses a shipped entry only when its key matches exactly, which includes the hash of the
code that computes it (:mod:`encsteal.cache`): after a change to that code the shipped entries are
simply not found and the models are trained again, until they are regenerated.
``python -m encsteal.ship --check`` lists every shipped entry as fresh, stale or corrupt and which
of the profile's models are missing, without training anything (exit status 1 if any is not fresh).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from encsteal.cache import SHIPPED_DIR, EntryStatus, ResultCache, atomic_write_bytes, inspect_entry
from encsteal.params import other_data_config, reference_configs, resolve, victim_config, watermark_config
from encsteal.victims import VictimConfig, train_victim, victim_cache_key
from encsteal.watermark import _watermark_key, embed_watermark


def victim_plan(profile: str) -> list[tuple[str, VictimConfig]]:
    """(name, configuration) of every shipped victim of ``profile`` (the watermarked one aside)."""
    p = resolve(profile)
    plan = [("fmnist_simclr", victim_config(p)), ("fmnist_supervised", victim_config(p, method="supervised"))]
    return plan + [
        (f"{cfg.dataset}_simclr_seed{cfg.seed}_{cfg.epochs}ep", cfg)
        for cfg in [*reference_configs(p), other_data_config(p)]
    ]


def build_all(profile: str, cache: ResultCache) -> list[tuple[str, str, Any]]:
    """Train (or load) every shipped model; return (name, cache kind, cache config) for each."""
    plan = victim_plan(profile)
    victim = train_victim(plan[0][1], cache)
    train_victim(plan[1][1], cache)
    wcfg = watermark_config(resolve(profile))
    embed_watermark(victim, wcfg, cache)
    for _, cfg in plan[2:]:
        train_victim(cfg, cache)
    victims = [(name, "victim", victim_cache_key(cfg)) for name, cfg in plan]
    return [
        *victims[:2],
        ("fmnist_simclr_watermarked", "watermarked_victim", _watermark_key(victim, wcfg)),
        *victims[2:],
    ]


def copy_entry(source: ResultCache, kind: str, config: Any, target: Path) -> Path:
    """Copy the verified entry of ``(kind, config)`` from ``source`` into the cache folder ``target``
    (atomically, sidecar last) and verify the copy; returns the copied tensor file."""
    if source.get(kind, config) is None:
        raise FileNotFoundError(f"No valid {kind} entry for {config} in {source.root}.")
    src_tensors, src_meta = source.paths(kind, config)
    out = ResultCache(target, shipped=())
    dst_tensors, dst_meta = out.paths(kind, config)
    dst_meta.unlink(missing_ok=True)
    atomic_write_bytes(dst_tensors, src_tensors.read_bytes())
    atomic_write_bytes(dst_meta, src_meta.read_bytes())
    if out.get(kind, config) is None:
        raise RuntimeError(f"The copy {dst_tensors} does not verify.")
    return dst_tensors


def prune(root: Path, keep: set[Path]) -> list[Path]:
    """Remove every entry file under ``root/<kind>/`` whose tensor file is not in ``keep``; returns them."""
    keep = {p.resolve() for p in keep}
    removed = []
    for path in sorted(root.glob("*/*")):
        if not path.is_file() or path.suffix not in (".safetensors", ".json", ".tmp"):
            continue
        if path.suffix == ".tmp" or path.with_suffix(".safetensors").resolve() not in keep:
            path.unlink()
            removed.append(path)
    return removed


def shipped_status(root: Path = SHIPPED_DIR) -> list[EntryStatus]:
    """:func:`~encsteal.cache.inspect_entry` of every entry under ``root`` (tensors without a sidecar: incomplete)."""
    found = [inspect_entry(meta) for meta in sorted(root.glob("*/*.json"))]
    orphans = [
        EntryStatus(t, t.parent.name, "incomplete", "no sidecar")
        for t in sorted(root.glob("*/*.safetensors"))
        if not t.with_suffix(".json").exists()
    ]
    return found + orphans


def expected_status(profile: str, root: Path = SHIPPED_DIR) -> list[tuple[str, str]]:
    """(name, "found" / "missing" / why unknown) for each model ``profile`` ships, found only in ``root``
    with the current code's keys. Trains nothing (the watermarked victim's key needs its base victim,
    which is loaded from ``root`` when found there)."""
    with tempfile.TemporaryDirectory() as empty:
        reader = ResultCache(empty, shipped=(root,))
        rows, base = [], None
        for name, cfg in victim_plan(profile):
            found = reader.get("victim", victim_cache_key(cfg)) is not None
            rows.append((name, "found" if found else "missing"))
            if name == "fmnist_simclr" and found:
                base = train_victim(cfg, reader, progress=False)  # a hit: loads, never trains
        if base is None:
            rows.append(("fmnist_simclr_watermarked", "unknown (its base victim fmnist_simclr is missing)"))
        else:
            key = _watermark_key(base, watermark_config(resolve(profile)))
            rows.append(
                (
                    "fmnist_simclr_watermarked",
                    "found" if reader.get("watermarked_victim", key) is not None else "missing",
                )
            )
    return rows


def check(profile: str = "quick", root: Path = SHIPPED_DIR) -> int:
    """Print the state of the shipped entries; 0 if every entry is fresh and every model found, else 1."""
    statuses = shipped_status(root)
    for s in statuses:
        print(f"{s.status:10s} {s.path.relative_to(root.parent)}" + (f"  ({s.reason})" if s.reason else ""))
    expected = expected_status(profile, root)
    for name, state in expected:
        print(f"{name}: {state}")
    bad = [s for s in statuses if s.status != "fresh"] + [e for e in expected if e[1] != "found"]
    if bad:
        print(f"{len(bad)} problem(s): regenerate with `python -m encsteal.ship --retrain`.")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--retrain", action="store_true", help="train from scratch in an empty cache")
    parser.add_argument("--check", action="store_true", help="list stale, corrupt and missing entries; train nothing")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.profile)
    with tempfile.TemporaryDirectory() as fresh:
        cache = ResultCache(fresh, shipped=()) if args.retrain else ResultCache(shipped=())
        written = set()
        for name, kind, config in build_all(args.profile, cache):
            path = copy_entry(cache, kind, config, SHIPPED_DIR)
            written.add(path)
            print(f"{name}: {path.relative_to(SHIPPED_DIR.parent)}")
        for path in prune(SHIPPED_DIR, written):
            print(f"removed {path.relative_to(SHIPPED_DIR.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
