"""Notebook parameters: validation with clear errors, and the configurations they imply.

Every chapter starts with a ``parameters`` cell (papermill) holding plain values only; the first
code cell after it calls :func:`validate`, which checks every value and names the allowed ones.
The profiles (``params/smoke.yaml``, ``quick.yaml``, ``full.yaml``) override those values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from encsteal.data.registry import DATASETS
from encsteal.losses import LOSSES
from encsteal.victims import VictimConfig

PROFILES: tuple[str, ...] = ("smoke", "quick", "full")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
LIST_KEYS = ("budgets", "losses", "seeds", "query_sets", "downstream_sets", "leak_budgets", "imagenet_budgets",
             "imagenet_query_sets", "imagenet_downstream_sets", "imagenet_losses", "curve_losses", "strengths",
             "defense_losses", "reference_seeds", "thresholds", "watermark_budgets")
POSITIVE_INT_KEYS = ("victim_num_train", "victim_epochs", "steal_epochs", "probe_train", "probe_val",
                     "probe_test", "few_label_per_class", "threads")


PARAMETER_NAMES = frozenset({
    "profile", "seed", "device", "threads", "victim_dataset", "victim_num_train", "victim_epochs",
    "victim_temperature", "victim_lr", "victim_seed", "probe_train", "probe_val", "probe_test",
    "few_label_per_class", "query_sets", "downstream_sets", "losses", "seeds", "budget", "budgets",
    "steal_epochs", "curve_losses", "price_per_1k", "image_size", "strengths", "defense_losses",
    "watermark_epochs", "reference_seeds", "gpu_price_per_hour", "cpu_price_per_hour", "leak_budgets",
    "imagenet_budgets", "imagenet_query_sets", "imagenet_downstream_sets", "imagenet_losses", "probe_cs",
    "thresholds", "watermark_task", "reference_epochs", "watermark_budgets",
})


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"Parameter {name}={value!r} is not allowed. {allowed}")


def validate(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check notebook parameters; return the known ones as a plain dict.

    ``params`` may be a notebook's ``globals()``: only names in :data:`PARAMETER_NAMES` are kept.
    """
    p = {k: v for k, v in params.items() if k in PARAMETER_NAMES}
    if "profile" in p and p["profile"] not in PROFILES:
        _fail("profile", p["profile"], f"Allowed: {', '.join(PROFILES)}.")
    if "device" in p and not (p["device"] in DEVICES or str(p["device"]).startswith("cuda:")):
        _fail("device", p["device"], f"Allowed: {', '.join(DEVICES)} or cuda:N.")
    if "seed" in p and (not isinstance(p["seed"], int) or p["seed"] < 0):
        _fail("seed", p["seed"], "Use a non-negative integer.")
    for key in LIST_KEYS:
        if key in p and not isinstance(p[key], (list, tuple)):
            _fail(key, p[key], "Use a list (papermill's -p passes lists as strings: use -y or -f YAML).")
    for key in POSITIVE_INT_KEYS:
        if key in p and (not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] <= 0):
            _fail(key, p[key], "Use a positive integer.")
    for key in ("victim_dataset",):
        if key in p and p[key] not in DATASETS:
            _fail(key, p[key], f"Known data sets: {', '.join(DATASETS)}.")
    for key in ("query_sets", "downstream_sets", "imagenet_query_sets", "imagenet_downstream_sets"):
        for name in p.get(key, []):
            if name not in DATASETS:
                _fail(key, name, f"Known data sets: {', '.join(DATASETS)}.")
    for loss in [*p.get("losses", []), *p.get("curve_losses", []), *p.get("defense_losses", []),
                 *p.get("imagenet_losses", [])]:
        if loss not in LOSSES:
            _fail("losses", loss, f"Known losses: {', '.join(LOSSES)}.")
    for budget in [*p.get("budgets", []), *p.get("leak_budgets", []), *p.get("imagenet_budgets", [])]:
        if not isinstance(budget, int) or budget <= 0:
            _fail("budgets", budget, "Each budget is a positive number of queries.")
    if "probe_cs" in p and (not isinstance(p["probe_cs"], (list, tuple)) or not p["probe_cs"]
                            or any(not isinstance(c, (int, float)) or c <= 0 for c in p["probe_cs"])):
        _fail("probe_cs", p["probe_cs"], "Use a non-empty list of positive inverse regularisation strengths.")
    if "budget" in p and (not isinstance(p["budget"], int) or p["budget"] <= 0):
        _fail("budget", p["budget"], "Use a positive number of queries.")
    if "budget" in p and p.get("budgets") and max(p["budgets"]) > p["budget"]:
        _fail("budgets", p["budgets"], f"Each must be at most budget={p['budget']} (the query pool's size).")
    for seed in p.get("seeds", []):
        if not isinstance(seed, int) or seed < 0:
            _fail("seeds", seed, "Each seed is a non-negative integer.")
    return p


def victim_config(p: Mapping[str, Any], method: str = "simclr", seed: int | None = None) -> VictimConfig:
    """The victim a chapter uses, from its parameters (the shipped victims match quick.yaml)."""
    return VictimConfig(method=method, dataset=p.get("victim_dataset", "fmnist"), num_train=p["victim_num_train"],
                        epochs=p["victim_epochs"], temperature=p.get("victim_temperature", 0.2),
                        lr=p.get("victim_lr", 2e-3), seed=p.get("victim_seed", 0) if seed is None else seed)


def probe_sizes(p: Mapping[str, Any]) -> dict[str, int]:
    return {"probe_train": p["probe_train"], "probe_val": p["probe_val"], "probe_test": p["probe_test"]}


def other_data_config(p: Mapping[str, Any]) -> VictimConfig:
    """An independent SimCLR model on other data (MNIST-5k, seed 7): a watermark control."""
    q = {**p, "victim_dataset": "mnist5k", "victim_num_train": min(int(p["victim_num_train"]), 4000)}
    return victim_config(q, seed=7)


def reference_configs(p: Mapping[str, Any]) -> list[VictimConfig]:
    """Independent SimCLR references for the watermark test: the victim's data, other seeds."""
    return [replace(victim_config(p), seed=s, epochs=p.get("reference_epochs") or p["victim_epochs"])
            for s in p["reference_seeds"]]


def watermark_config(p: Mapping[str, Any]) -> "WatermarkConfig":
    from encsteal.watermark import WatermarkConfig

    return WatermarkConfig(task=p.get("watermark_task", "binary"), epochs=p["watermark_epochs"], lr=1e-3,
                           seed=p.get("seed", 0))
