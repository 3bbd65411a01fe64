"""Chapter 5, the rotation watermark's transferability: which models carry the victim's watermark.

:func:`build_transferability` trains or loads every model of the chapter (stolen copies,
independent references, models on other data, a random encoder) and :func:`transferability_table`
scores each through the victim's rotation MLP and tests it against the references
(:func:`encsteal.watermark.ownership_test`). :func:`headline` and :func:`plot_transferability` give
the numbers and the figure the chapter shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from encsteal.api import EncoderAPI
from encsteal.attack import steal
from encsteal.cache import ResultCache
from encsteal.data.imageset import ImageSet
from encsteal.probe import evaluate_encoder
from encsteal.victims import Victim, VictimConfig, build_victim_modules, train_victim
from encsteal.watermark import TASKS, WatermarkedVictim, WatermarkScore, ownership_test, watermark_accuracy

ROLE_COLORS: dict[str, str] = {
    "victim": "#c44e52",
    "stolen": "#dd8452",
    "reference": "#4c72b0",
    "same lineage": "#8172b3",
    "other data": "#55a868",
    "stolen from independent": "#64b5cd",
    "random": "#999999",
}
"""Bar colour of each row role in :func:`plot_transferability`."""


def transferability_table(
    watermarked: WatermarkedVictim,
    suspects: Mapping[str, tuple[str, nn.Module]],
    references: Mapping[str, nn.Module],
    images: ImageSet | torch.Tensor,
    alpha: float = 0.05,
    method: str = "prediction",
    seed: int = 0,
    probe_splits: Mapping[str, ImageSet] | None = None,
) -> pd.DataFrame:
    """One row per model: role, watermark accuracy (%), Wilson 95% interval, p-value, the
    threshold (%) and the decision of :func:`ownership_test` against ``references``.

    ``suspects`` maps a name to (role, encoder). References are listed too, each tested against
    the other references (leave-one-out). With ``probe_splits`` a linear-probe accuracy column
    (the downstream usefulness, and for the victim the watermark's cost) is added.
    """
    task = watermarked.config.task
    ref_scores = {
        name: watermark_accuracy(enc, watermarked.mlp, images, task, seed) for name, enc in references.items()
    }
    ref_acc = [s.accuracy for s in ref_scores.values()]
    rows = []

    def row(name: str, role: str, encoder: nn.Module, score: WatermarkScore, others: list[float], against: str):
        r: dict[str, Any] = {
            "model": name,
            "role": role,
            "watermark_acc": 100 * score.accuracy,
            "ci_low": 100 * score.ci_low,
            "ci_high": 100 * score.ci_high,
        }
        if len(others) >= 2:
            d = ownership_test(score.accuracy, others, alpha, method, score.n)
            r |= {"p_value": d.p_value, "threshold": 100 * d.threshold, "stolen": d.stolen}
        else:
            r |= {"p_value": float("nan"), "threshold": float("nan"), "stolen": None}
        r["tested_against"] = against
        if probe_splits is not None:
            r["probe"] = 100 * evaluate_encoder(encoder, dict(probe_splits)).accuracy
        rows.append(r)

    for name, (role, encoder) in suspects.items():
        row(
            name,
            role,
            encoder,
            watermark_accuracy(encoder, watermarked.mlp, images, task, seed),
            ref_acc,
            f"{len(ref_acc)} references",
        )
    for name, encoder in references.items():
        others = [s.accuracy for k, s in ref_scores.items() if k != name]
        row(name, "reference", encoder, ref_scores[name], others, f"{len(others)} other references")
    return pd.DataFrame(rows).set_index("model")


def build_transferability(
    watermarked: WatermarkedVictim,
    splits: Mapping[str, ImageSet],
    steal_configs: Mapping[str, Any],
    budgets: Sequence[int] = (500, 2000),
    reference_seeds: Sequence[int] = (1, 2, 3),
    reference_epochs: int | None = None,
    other_data: Sequence[VictimConfig] = (),
    original: Victim | None = None,
    control_steal: str | None = None,
    eval_role: str = "probe_test",
    alpha: float = 0.05,
    method: str = "prediction",
    probe: bool = True,
    cache: ResultCache | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Train/load everything and build the transferability table.

    Rows: the watermarked victim; stolen copies of it (each of ``steal_configs`` x ``budgets``
    queries, the first images of ``splits["query"]``); independent SimCLR references trained on
    the victim's data with ``reference_seeds`` (``reference_epochs`` if given, else the victim's);
    models trained on ``other_data``; optionally the ``original`` victim before watermarking
    (same lineage: not independent) and a copy stolen with ``control_steal`` from the first
    reference (stealing an unwatermarked model should not carry the watermark). Watermark
    accuracy is measured on ``splits[eval_role]``.
    """
    cache = cache if cache is not None else ResultCache()
    base = watermarked.base
    api = EncoderAPI(watermarked.encoder, watermarked.head)
    suspects: dict[str, tuple[str, nn.Module]] = {"watermarked victim": ("victim", watermarked.encoder)}
    if original is not None:
        suspects["victim before watermarking"] = ("same lineage", original.encoder)
    queries = splits["query"]
    for loss, cfg in steal_configs.items():
        for b in budgets:
            if b > len(queries):
                raise ValueError(f"Budget {b} exceeds the {len(queries)} query images.")
            res = steal(
                api, queries.subset(torch.arange(b)), cfg, user=f"attacker-{loss}-{b}", cache=cache, progress=progress
            )
            suspects[f"stolen {loss}, {b} queries"] = ("stolen", res.encoder)
    references: dict[str, nn.Module] = {}
    ref_victims = []
    for s in reference_seeds:
        cfg = replace(base, seed=s, epochs=reference_epochs or base.epochs)
        v = train_victim(cfg, cache, progress=progress)
        ref_victims.append(v)
        references[f"independent seed {s} ({cfg.epochs} ep)"] = v.encoder
    for cfg in other_data:
        v = train_victim(cfg, cache, progress=progress)
        suspects[f"independent on {cfg.dataset} ({cfg.num_train} imgs, seed {cfg.seed})"] = ("other data", v.encoder)
    if control_steal is not None and ref_victims:
        ref_api = EncoderAPI(ref_victims[0].encoder, ref_victims[0].head)
        b = max(budgets)
        res = steal(
            ref_api, queries.subset(torch.arange(b)), steal_configs[control_steal], cache=cache, progress=progress
        )
        suspects[f"stolen {control_steal} from independent seed {reference_seeds[0]}, {b} queries"] = (
            "stolen from independent",
            res.encoder,
        )
    torch.manual_seed(base.seed + 1000)
    c, h, _ = splits[eval_role].shape
    random_encoder, _ = build_victim_modules(base, c, h, 10)
    suspects["random init"] = ("random", random_encoder.eval())
    return transferability_table(
        watermarked, suspects, references, splits[eval_role], alpha, method, probe_splits=splits if probe else None
    )


def victim_row(table: pd.DataFrame) -> pd.Series:
    """The watermarked victim's row of a transferability table (role ``victim``)."""
    rows = table[table["role"] == "victim"]
    if len(rows) != 1:
        raise ValueError(f"Expected one row with role 'victim', found {len(rows)}.")
    return rows.iloc[0]


def decision_threshold(table: pd.DataFrame) -> float:
    """The watermark accuracy (%) above which a suspect is called stolen: the threshold the victim
    and every suspect were tested against (NaN with fewer than two references)."""
    return float(victim_row(table)["threshold"])


def headline(table: pd.DataFrame) -> dict[str, float]:
    """The numbers the watermark chapter's prose quotes, from a :func:`transferability_table`.

    ``wm_victim_acc``: the victim's watermark accuracy (%); ``wm_threshold``: the decision threshold
    (%); ``wm_refs_mean``: the references' mean watermark accuracy (%); ``wm_stolen_flagged`` of
    ``wm_stolen_total`` stolen copies called stolen; ``wm_cost``: the victim's probe accuracy before
    minus after embedding (points; NaN without a ``same lineage`` row or a ``probe`` column).
    """
    victim = victim_row(table)
    before = table[table["role"] == "same lineage"]
    stolen = table[table["role"] == "stolen"]
    has_cost = len(before) > 0 and "probe" in table.columns
    return {
        "wm_victim_acc": float(victim["watermark_acc"]),
        "wm_cost": float(before["probe"].iloc[0] - victim["probe"]) if has_cost else math.nan,
        "wm_threshold": decision_threshold(table),
        "wm_refs_mean": float(table.loc[table["role"] == "reference", "watermark_acc"].mean()),
        "wm_stolen_flagged": int((stolen["stolen"] == True).sum()),  # noqa: E712 (None = not tested)
        "wm_stolen_total": len(stolen),
    }


def plot_transferability(table: pd.DataFrame, task: str = "binary") -> Figure:
    """Horizontal bars of every model's watermark accuracy with its 95 % Wilson interval, coloured
    by role, with the decision threshold and chance (``task``'s number of rotation classes).
    A pyplot figure: a notebook renders it with ``plt.show()``."""
    order = table.sort_values("watermark_acc")
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(table) + 1))
    errors = [order["watermark_acc"] - order["ci_low"], order["ci_high"] - order["watermark_acc"]]
    ax.barh(
        order.index, order["watermark_acc"], xerr=errors, color=[ROLE_COLORS.get(r, "#999999") for r in order["role"]]
    )
    threshold = decision_threshold(table)
    if not math.isnan(threshold):
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"decision threshold ({threshold:.1f} %)")
    ax.axvline(100 / TASKS[task], color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel("watermark accuracy through the victim's rotation MLP (%), 95 % Wilson interval")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Which models carry the rotation watermark?")
    return fig
