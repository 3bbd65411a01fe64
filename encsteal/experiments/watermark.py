"""Chapter 5, the rotation watermark's transferability: which models carry the victim's watermark.

The claim (C5): the rotation watermark transfers to copies stolen from the watermarked victim, not
to independent models. Every model is scored through the victim's frozen rotation MLP
(:func:`encsteal.watermark.watermark_accuracy`, the same rotated held-out images for all) and
tested against independently trained references (:func:`encsteal.watermark.ownership_test`, the
one-sided prediction-interval test at level ``alpha``).

Models (the ``role`` column of :func:`transferability_table`):

* ``victim``: the watermarked victim (the positive control, tested alone, not part of the family);
* ``stolen``: copies stolen from it, one per (loss, budget, seed); seed ``s`` draws its own query
  subset (:func:`query_subset`) and its own initial weights (``StealConfig(seed=s)``);
* ``same init``: the same copies, but starting from the victim's initial weights
  (``StealConfig(init_seed=<victim seed>)``), what the old code did by accident;
* ``reference``: independent models trained exactly like the victim (other seeds); each is also
  tested against the *other* references (leave-one-out), one independent-model trial each;
* ``other data``: an independent model trained on other data;
* ``stolen from independent``: copies stolen from a reference (seed ``s`` copies the ``s``-th
  reference), tested against the references other than their source;
* controls shown but outside the family: ``same lineage`` (the victim before watermarking: the
  watermarked victim was fine-tuned from it, so it is neither independent nor stolen), ``random``
  (random-init encoders, from their own stream) and ``initialisation`` (the victim's own initial
  weights, untrained).

Correction. The owner tests every suspect of the *family* (roles in :data:`FAMILY_ROLES`) at once:
Holm's step-down correction over the family's p-values at family-wise level ``alpha``
(:func:`encsteal.stats.holm`); the ``stolen`` column is that corrected decision (for rows outside
the family, the single test at ``alpha``). The false-positive rate is the share of independent
models (:data:`INDEPENDENT_ROLES`) called stolen, the detection rate the share of ``stolen`` copies
called stolen, each with its exact (Clopper-Pearson) 95 % interval over the models tested
(:func:`rate`). :func:`judge_watermark` turns them into a verdict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from scipy import stats as sps
from torch import nn

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data.imageset import ImageSet
from encsteal.experiments.claims import Verdict
from encsteal.models import build_encoder
from encsteal.probe import evaluate_encoder
from encsteal.seeds import generator, random_init_encoder
from encsteal.stats import holm, mean_interval, paired_difference
from encsteal.tables import NA, interval, number
from encsteal.victims import Victim
from encsteal.watermark import TASKS, WatermarkedVictim, WatermarkMLP, ownership_test, watermark_accuracy

CLAIM = "The rotation watermark transfers to stolen copies, not to independent models."
INDEPENDENT_ROLES: tuple[str, ...] = ("reference", "other data", "stolen from independent")
"""Models that owe nothing to the watermarked victim: every one called stolen is a false positive."""
DETECTED_ROLES: tuple[str, ...] = ("stolen",)
"""Copies stolen from the watermarked victim, from their own initialisation: the detection rate's models."""
FAMILY_ROLES: tuple[str, ...] = ("stolen", "same init", *INDEPENDENT_ROLES)
"""The suspects tested together (Holm over their p-values)."""
MIN_SEEDS = 5
"""Seeds (stolen copies) every judged (loss, budget) cell needs for a verdict."""
MIN_INDEPENDENT = 10
"""Independent models a false-positive rate needs for a verdict."""
DETECTION_LEVEL = 0.5
"""The detection rate a verdict of "reproduced" must exceed with confidence (its interval's lower end)."""
PAPER_SAYS = (
    "no number published; independent models near 50 % (chance), stolen copies above it, more with more queries"
)
"""The paper's claim in its own terms (it published no transferability numbers): the ``paper`` field of the verdict."""

ROLE_COLORS: dict[str, str] = {
    "victim": "#c44e52",
    "stolen": "#dd8452",
    "same init": "#937860",
    "same lineage": "#8172b3",
    "initialisation": "#da8bc3",
    "reference": "#4c72b0",
    "other data": "#55a868",
    "stolen from independent": "#64b5cd",
    "random": "#999999",
}
"""Marker colour of each role in :func:`plot_transferability`."""


@dataclass
class Model:
    """One model to score: its name, role, encoder and where it comes from.

    ``source``: the reference a ``stolen from independent`` copy was stolen from (left out of the
    references it is tested against)."""

    name: str
    role: str
    encoder: nn.Module
    loss: str | None = None
    budget: int | None = None
    seed: int | None = None
    source: str | None = None


# ---- building the models ---------------------------------------------------------------------


def query_subset(pool: ImageSet, budget: int, seed: int) -> ImageSet:
    """Seed ``seed``'s ``budget`` queries: the first ``budget`` of a permutation of ``pool`` drawn
    from the ``queries`` stream of ``seed`` (a smaller budget of the same seed is a subset)."""
    if not 0 < budget <= len(pool):
        raise ValueError(f"Budget {budget} must be in [1, {len(pool)}] (the query pool's size).")
    order = torch.randperm(len(pool), generator=generator(seed, "queries"))
    return pool.subset(order[:budget])


def victim_initialisation(base: Any, in_channels: int, input_size: int) -> nn.Module:
    """The encoder a victim with configuration ``base`` starts from (its seed's initial weights,
    as ``StealConfig(init_seed=base.seed)`` builds it), untrained."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base.seed)
        return build_encoder(base.arch, in_channels, input_size).eval()


def build_models(
    watermarked: WatermarkedVictim,
    pool: ImageSet,
    attacks: Mapping[str, StealConfig],
    budgets: Sequence[int],
    seeds: Sequence[int],
    references: Mapping[str, Victim],
    other_data: Mapping[str, Victim] = {},
    original: Victim | None = None,
    arm_loss: str | None = None,
    cache: ResultCache | None = None,
    progress: bool = False,
) -> list[Model]:
    """Steal, load or build every model of the chapter but the references (see the module docstring).

    ``attacks`` maps a loss to its :class:`StealConfig` (its ``seed`` is replaced by each of
    ``seeds``). Copies of the watermarked victim: every loss x budget x seed, each seed with its own
    query subset of ``pool``. The same-initialisation arm and the copies of independent models use
    ``arm_loss`` (default: the first attack) at the smallest budget (where the initial weights weigh
    most: fewest training steps), with the same seeds and query subsets; seed number ``i`` copies
    the ``i``-th reference (cycling).
    """
    if not attacks or not budgets or not seeds:
        raise ValueError("build_models needs at least one attack, one budget and one seed.")
    base = watermarked.base
    arm_loss = arm_loss or next(iter(attacks))
    arm_budget = min(budgets)
    api = EncoderAPI(watermarked.encoder, watermarked.head)

    def copy(target: EncoderAPI, cfg: StealConfig, b: int, s: int, user: str) -> nn.Module:
        return steal(target, query_subset(pool, b, s), cfg, user=user, cache=cache, progress=progress).encoder

    models = [Model("watermarked victim", "victim", watermarked.encoder)]
    if original is not None:
        models.append(Model("victim before watermarking", "same lineage", original.encoder))
    for loss, cfg in attacks.items():
        for b in budgets:
            for s in seeds:
                enc = copy(api, replace(cfg, seed=s, init_seed=None), b, s, "attacker")
                models.append(Model(f"stolen {loss}, {b} queries, seed {s}", "stolen", enc, loss, b, s))
    arm = attacks[arm_loss]
    for s in seeds:
        enc = copy(api, replace(arm, seed=s, init_seed=base.seed), arm_budget, s, "attacker")
        name = f"stolen {arm_loss}, {arm_budget} queries, seed {s}, victim's init"
        models.append(Model(name, "same init", enc, arm_loss, arm_budget, s))
    names = list(references)
    for i, s in enumerate(seeds):
        if not names:
            break
        src = names[i % len(names)]
        ref_api = EncoderAPI(references[src].encoder, references[src].head)
        enc = copy(ref_api, replace(arm, seed=s, init_seed=None), arm_budget, s, "attacker")
        name = f"stolen {arm_loss} from {src}, {arm_budget} queries, seed {s}"
        models.append(Model(name, "stolen from independent", enc, arm_loss, arm_budget, s, source=src))
    for name, v in other_data.items():
        models.append(Model(name, "other data", v.encoder))
    c, h, _ = pool.shape
    init = victim_initialisation(base, c, h)
    models.append(Model(f"victim's initial weights (seed {base.seed}, untrained)", "initialisation", init))
    for s in seeds:
        models.append(Model(f"random init, seed {s}", "random", random_init_encoder(base.arch, c, h, s), seed=s))
    return models


# ---- scoring and testing ---------------------------------------------------------------------


def transferability_table(
    mlp: WatermarkMLP,
    task: str,
    models: Sequence[Model],
    references: Mapping[str, nn.Module],
    images: ImageSet | torch.Tensor,
    alpha: float = 0.05,
    method: str = "prediction",
    seed: int = 0,
) -> pd.DataFrame:
    """One row per model (``models``, then the references): watermark accuracy (%) through the
    victim's frozen ``mlp`` with its Wilson 95 % interval over the images, the references it is
    tested against, the single test's threshold (%) and p-value, and the decision ``stolen``.

    Each model is tested against every reference but itself (leave-one-out) and its ``source``.
    ``stolen``: for rows of :data:`FAMILY_ROLES`, Holm's correction over the family's p-values at
    family-wise level ``alpha``; for the others, the single test at ``alpha`` (``single``).
    Every model sees the same rotated images (``seed``), so accuracies are paired across models.
    """
    if len(references) < 3:
        raise ValueError(f"Leave-one-out tests need at least 3 references, got {len(references)}.")
    rows_in = list(models) + [Model(n, "reference", e, source=n) for n, e in references.items()]
    names = [m.name for m in rows_in]
    if len(set(names)) != len(names):
        raise ValueError("Model names must be unique (a reference and a suspect share a name).")
    ref_scores = {n: watermark_accuracy(e, mlp, images, task, seed) for n, e in references.items()}
    rows = []
    for m in rows_in:
        score = ref_scores[m.name] if m.role == "reference" else watermark_accuracy(m.encoder, mlp, images, task, seed)
        others = [s.accuracy for n, s in ref_scores.items() if n != m.source]
        d = ownership_test(score.accuracy, others, alpha, method, score.n)
        rows.append(
            {
                "model": m.name,
                "role": m.role,
                "loss": m.loss,
                "budget": m.budget,
                "seed": m.seed,
                "source": m.source,
                "watermark_acc": 100 * score.accuracy,
                "ci_low": 100 * score.ci_low,
                "ci_high": 100 * score.ci_high,
                "references": len(others),
                "threshold": 100 * d.threshold,
                "p_value": d.p_value,
                "single": d.stolen,
                "family": m.role in FAMILY_ROLES,
            }
        )
    table = pd.DataFrame(rows)
    table["stolen"] = table["single"]
    fam = table.index[table["family"]]
    if len(fam):
        table.loc[fam, "stolen"] = holm(table.loc[fam, "p_value"].tolist(), alpha)
    table["stolen"] = table["stolen"].astype(bool)
    return table.set_index("model")


def watermark_cost(before: nn.Module, after: nn.Module, splits: Mapping[str, ImageSet]) -> dict[str, float]:
    """Linear-probe accuracy (%) of the victim before and after embedding the watermark on the
    probe roles of ``splits``, and the difference before - after (points): one probe each, descriptive."""
    b = 100 * evaluate_encoder(before, dict(splits)).accuracy
    a = 100 * evaluate_encoder(after, dict(splits)).accuracy
    return {"probe_before": b, "probe_after": a, "cost": b - a}


# ---- rates and summaries ---------------------------------------------------------------------


def rate(k: int, n: int, confidence: float = 0.95) -> dict[str, float]:
    """``k`` of ``n`` with the exact (Clopper-Pearson) interval of the proportion (fractions);
    ``n = 0`` gives NaNs."""
    if not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n, got k={k}, n={n}.")
    if n == 0:
        return {"k": 0, "n": 0, "rate": math.nan, "low": math.nan, "high": math.nan}
    ci = sps.binomtest(k, n).proportion_ci(confidence, method="exact")
    return {"k": k, "n": n, "rate": k / n, "low": float(ci.low), "high": float(ci.high)}


def _table(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    table = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return table.reset_index() if "model" not in table.columns else table


def _flagged(table: pd.DataFrame, column: str = "stolen") -> int:
    return int(table[column].astype(bool).sum())


def detection_rate(rows: pd.DataFrame | Sequence[Mapping[str, Any]], column: str = "stolen") -> dict[str, float]:
    """Share of the copies stolen from the watermarked victim (own initialisation) called stolen
    (``column``: ``stolen``, Holm's decision, or ``single``, the uncorrected test)."""
    t = _table(rows)
    t = t[t["role"].isin(DETECTED_ROLES)]
    return rate(_flagged(t, column), len(t))


def false_positive_rate(rows: pd.DataFrame | Sequence[Mapping[str, Any]], column: str = "stolen") -> dict[str, float]:
    """Share of the independent models (:data:`INDEPENDENT_ROLES`) called stolen (``column`` as
    in :func:`detection_rate`)."""
    t = _table(rows)
    t = t[t["role"].isin(INDEPENDENT_ROLES)]
    return rate(_flagged(t, column), len(t))


def same_init_comparison(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Same-initialisation copies against copies from their own initialisation, paired by seed
    (same loss, budget, queries and batch order; only the initial weights differ): the mean
    difference of watermark accuracy (points) with its 95 % interval and p-value, and how many of
    each were called stolen. None with fewer than two pairs."""
    t = _table(rows)
    same = t[t["role"] == "same init"]
    own = t[t["role"] == "stolen"]
    pairs = same.merge(own, on=["loss", "budget", "seed"], suffixes=("_same", "_own"))
    if len(pairs) < 2:
        return None
    diff, p = paired_difference(pairs["watermark_acc_same"].tolist(), pairs["watermark_acc_own"].tolist())
    return {
        "n": len(pairs),
        "loss": str(pairs["loss"].iloc[0]),
        "budget": int(pairs["budget"].iloc[0]),
        "same_mean": float(pairs["watermark_acc_same"].mean()),
        "own_mean": float(pairs["watermark_acc_own"].mean()),
        "diff": diff.mean,
        "low": diff.low,
        "high": diff.high,
        "p_value": p,
        "same_flagged": int(pairs["stolen_same"].astype(bool).sum()),
        "own_flagged": int(pairs["stolen_own"].astype(bool).sum()),
    }


def cell_shifts(rows: pd.DataFrame | Sequence[Mapping[str, Any]], alpha: float = 0.05) -> list[dict[str, Any]]:
    """Does the watermark transfer *on average*? For each (loss, budget) cell of copies stolen from
    the watermarked victim: their mean watermark accuracy (%) with its 95 % t interval over seeds,
    the references' mean, the difference, and the one-sided Welch t-test that the copies score
    higher than the references (``p_value``), Holm-corrected over the cells at ``alpha`` (``above``).
    Cells with fewer than two copies, or fewer than two references, are left out."""
    t = _table(rows)
    refs = t.loc[t["role"] == "reference", "watermark_acc"].to_numpy(dtype=float)
    copies = t[t["role"].isin(DETECTED_ROLES)]
    if len(refs) < 2 or not len(copies):
        return []
    out = []
    for (loss, budget), g in copies.groupby(["loss", "budget"]):
        acc = g["watermark_acc"].to_numpy(dtype=float)
        if len(acc) < 2:
            continue
        iv = mean_interval(acc) if np.ptp(acc) > 0 else None
        with warnings.catch_warnings():  # identical accuracies (a degenerate smoke run): p = NaN, taken as 1
            warnings.simplefilter("ignore", RuntimeWarning)
            p = float(sps.ttest_ind(acc, refs, equal_var=False, alternative="greater").pvalue)
        out.append(
            {
                "loss": str(loss),
                "budget": int(budget),
                "n": len(acc),
                "mean": float(acc.mean()),
                "low": iv.low if iv else float(acc.mean()),
                "high": iv.high if iv else float(acc.mean()),
                "refs_mean": float(refs.mean()),
                "diff": float(acc.mean() - refs.mean()),
                "p_value": p if math.isfinite(p) else 1.0,
            }
        )
    for cell, above in zip(out, holm([c["p_value"] for c in out], alpha), strict=True):
        cell["above"] = above
    return out


def _group(row: pd.Series) -> str:
    role = row["role"]
    if role in ("stolen", "same init", "stolen from independent"):
        tail = ", victim's initial weights" if role == "same init" else ""
        what = "copies of references" if role == "stolen from independent" else "copies of the watermarked victim"
        budget = row.get("budget")
        queries = f", {int(budget)} queries" if budget is not None and not pd.isna(budget) else ""
        return f"{what}: {row.get('loss')}{queries}{tail}"
    return {"reference": "references (leave-one-out)", "random": "random-init encoders"}.get(role, row["model"])


def _short(group: str) -> str:
    """A group's label as a figure shows it (``copies of the victim: mse, 250 queries, victim's init``)."""
    return group.replace("copies of the watermarked victim", "copies of the victim").replace(
        "victim's initial weights", "victim's init"
    )


def group_summary(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per group of models (role, loss, budget): how many, their mean watermark accuracy
    (%) with its 95 % t interval over the models (NaN for one model), how many were called stolen
    and that share with its Clopper-Pearson 95 % interval (%)."""
    t = _table(rows)
    t = t.assign(group=t.apply(_group, axis=1))
    out = []
    for group, g in t.groupby("group", sort=False):
        acc = g["watermark_acc"].tolist()
        iv = mean_interval(acc) if len(acc) >= 2 and np.ptp(acc) > 0 else None
        r = rate(_flagged(g), len(g))
        out.append(
            {
                "group": group,
                "role": g["role"].iloc[0],
                "models": len(g),
                "watermark_acc": float(np.mean(acc)),
                "acc_low": iv.low if iv else math.nan,
                "acc_high": iv.high if iv else math.nan,
                "called_stolen": r["k"],
                "share_%": 100 * r["rate"],
                "share_low_%": 100 * r["low"],
                "share_high_%": 100 * r["high"],
                "in_family": bool(g["family"].iloc[0]),
            }
        )
    return pd.DataFrame(out).set_index("group")


def watermark_results(
    table: pd.DataFrame,
    alpha: float,
    cost: Mapping[str, float] | None = None,
    method: str = "prediction",
    task: str = "binary",
) -> dict[str, Any]:
    """What the chapter saves (and :func:`judge_watermark` reads): the test's settings, every row
    of ``table``, the rates, the same-initialisation comparison and the watermark's cost."""
    rows = _table(table).to_dict(orient="records")
    victim = victim_row(table)
    refs = table[table["role"] == "reference"]
    return {
        "alpha": alpha,
        "method": method,
        "correction": "holm",
        "task": task,
        "family_size": int(table["family"].sum()),
        "rows": rows,
        "victim_threshold": float(victim["threshold"]),
        "refs_mean": float(refs["watermark_acc"].mean()),
        "refs_sd": float(refs["watermark_acc"].std(ddof=1)) if len(refs) > 1 else math.nan,
        "detection": detection_rate(table),
        "false_positive": false_positive_rate(table),
        "false_positive_single": false_positive_rate(table, "single"),
        "detection_single": detection_rate(table, "single"),
        "cells": cell_shifts(table, alpha),
        "same_init": same_init_comparison(table),
        "cost": dict(cost) if cost is not None else None,
    }


def victim_row(table: pd.DataFrame) -> pd.Series:
    """The watermarked victim's row of a transferability table (role ``victim``)."""
    t = table.set_index("model") if "model" in table.columns else table
    rows = t[t["role"] == "victim"]
    if len(rows) != 1:
        raise ValueError(f"Expected one row with role 'victim', found {len(rows)}.")
    return rows.iloc[0]


# ---- the verdict -----------------------------------------------------------------------------


def _pct(r: Mapping[str, float]) -> str:
    if not r["n"]:
        return "none tested"
    return f"{r['k']} of {r['n']} ({100 * r['rate']:.0f} %, 95 % CI {100 * r['low']:.0f}-{100 * r['high']:.0f} %)"


def _interval_text(values: Sequence[float]) -> str:
    """``mean %`` with its 95 % t interval over models (none for one model or no spread)."""
    x = [float(v) for v in values]
    if len(x) >= 2 and max(x) > min(x):
        iv = mean_interval(x)
        return f"{iv.mean:.1f} % [{iv.low:.1f}, {iv.high:.1f}]"
    return f"{float(np.mean(x)):.1f} %"


def ours_summary(rows: pd.DataFrame | Sequence[Mapping[str, Any]], alpha: float = 0.05) -> str:
    """Our numbers beside :data:`PAPER_SAYS`, in one short line: the best cell of copies (highest
    mean watermark accuracy over seeds, with its 95 % t interval), the independent models' mean
    (95 % t interval over the models) and how many of each are flagged (called stolen after Holm)."""
    t = _table(rows)
    det, fp = detection_rate(t), false_positive_rate(t)
    independent = t.loc[t["role"].isin(INDEPENDENT_ROLES), "watermark_acc"].tolist()
    parts = []
    cells = cell_shifts(t, alpha)
    if cells:
        best = max(cells, key=lambda c: c["mean"])
        where = f" [{best['low']:.1f}, {best['high']:.1f}]" if best["high"] > best["low"] else ""
        parts.append(f"copies {best['mean']:.1f} %{where} ({best['loss']}, {best['budget']} q.)")
    elif det["n"]:
        parts.append(f"copies {_interval_text(t.loc[t['role'].isin(DETECTED_ROLES), 'watermark_acc'].tolist())}")
    else:
        parts.append("no copies")
    parts.append(f"independent {_interval_text(independent)}" if independent else "no independent models")
    called = f"flagged: {det['k']}/{det['n']} copies, {fp['k']}/{fp['n']} indep."
    return ", ".join(parts) + "; " + called


def judge_watermark(results: Mapping[str, Any]) -> Verdict:
    """C5 from the chapter's saved results (:func:`watermark_results`; only ``alpha`` and ``rows`` are read).

    Decisions are Holm-corrected over the family of suspects; rates carry exact 95 % intervals.
    Rules, in order:

    1. **not evaluated** when the evidence is too thin or the watermark is missing: no rows; fewer
       than :data:`MIN_INDEPENDENT` independent models; a (loss, budget) cell of stolen copies with
       fewer than :data:`MIN_SEEDS` seeds (or none at all); or the watermarked victim itself is not
       called stolen (no watermark to transfer).
    2. **not reproduced** when the watermark flags independent models (the false-positive rate's
       interval lies above ``alpha``: its lower end exceeds ``alpha``), or when it does not transfer
       at all: the detection rate's interval lies below :data:`DETECTION_LEVEL` *and* no cell of
       copies scores higher than the references on average (:func:`cell_shifts`).
    3. **reproduced** when the observed false-positive rate is at most ``alpha`` and the detection
       rate's interval lies above :data:`DETECTION_LEVEL` (its lower end exceeds it).
    4. **partly reproduced** otherwise: a false-positive rate above ``alpha`` but not significantly;
       a detection rate whose interval contains :data:`DETECTION_LEVEL`; or copies that score higher
       than the references on average (the watermark transfers) but too few are called stolen one
       by one (it does not identify them).

    The false-positive rate's upper end is not required to be below ``alpha``: with tens of
    independent models no interval is that narrow (0 of 16 gives an upper end of 21 %).
    """
    alpha = float(results.get("alpha", 0.05))
    rows = results.get("rows") or []
    if not rows:
        return Verdict(CLAIM, "No models were scored.", "not evaluated", paper=PAPER_SAYS, ours="no models scored")
    t = _table(rows)
    ours = ours_summary(t, alpha)
    det, fp = detection_rate(t), false_positive_rate(t)
    stolen = t[t["role"].isin(DETECTED_ROLES)]
    cells = stolen.groupby(["loss", "budget"])["seed"].nunique() if len(stolen) else pd.Series(dtype=int)
    victim = t[t["role"] == "victim"]
    evidence = (
        f"copies stolen from the watermarked victim called stolen: {_pct(det)}; independent models called "
        f"stolen: {_pct(fp)}; Holm over {int(t['family'].sum())} suspects at alpha = {alpha:g}"
    )
    shifts = cell_shifts(t, alpha)
    if shifts:
        above = [f"{c['loss']} at {c['budget']} queries ({c['diff']:+.1f} points)" for c in shifts if c["above"]]
        evidence += (
            f"; cells of copies scoring higher than the references on average (Welch, Holm over cells): "
            f"{len(above)} of {len(shifts)}" + (f" ({', '.join(above)})" if above else "")
        )
    same = same_init_comparison(t)
    if same is not None:
        evidence += (
            f"; copies from the victim's initial weights: {same['same_flagged']} of {same['n']} called stolen, "
            f"{same['diff']:+.1f} points (95 % CI {same['low']:+.1f} to {same['high']:+.1f}) against their "
            "own-initialisation twins"
        )
    thin = []
    if fp["n"] < MIN_INDEPENDENT:
        thin.append(f"{fp['n']} independent models (at least {MIN_INDEPENDENT} needed)")
    if not len(cells) or int(cells.min()) < MIN_SEEDS:
        thin.append(f"{int(cells.min()) if len(cells) else 0} seeds in a judged cell (at least {MIN_SEEDS} needed)")
    if len(victim) != 1 or not bool(victim["stolen"].iloc[0]):
        thin.append("the watermarked victim itself is not called stolen (no watermark to transfer)")
    if thin:
        return Verdict(
            CLAIM,
            "Not judged: " + "; ".join(thin) + ". " + evidence[0].upper() + evidence[1:] + ".",
            "not evaluated",
            paper=PAPER_SAYS,
            ours=ours,
        )
    transfers = any(c["above"] for c in shifts)
    if fp["low"] > alpha or (det["high"] < DETECTION_LEVEL and not transfers):
        verdict = "not reproduced"
    elif fp["rate"] <= alpha and det["low"] > DETECTION_LEVEL:
        verdict = "reproduced"
    else:
        verdict = "partly reproduced"
    return Verdict(CLAIM, evidence[0].upper() + evidence[1:] + ".", verdict, paper=PAPER_SAYS, ours=ours)


# ---- sentences and figure --------------------------------------------------------------------


def conclusion_text(results: Mapping[str, Any], verdict: Verdict) -> dict[str, str]:
    """The chapter's result-dependent sentences, chosen from ``results`` (glued as Markdown).

    ``wm_detection_text``, ``wm_fpr_text``, ``wm_same_init_text``, ``wm_lineage_text``,
    ``wm_paper_text`` (:func:`paper_text`), ``wm_verdict_text``."""
    alpha = float(results["alpha"])
    t = _table(results["rows"])
    det, fp = detection_rate(t), false_positive_rate(t)
    victim = t[t["role"] == "victim"].iloc[0]
    text: dict[str, str] = {}
    if det["n"]:
        cells = []
        for (loss, b), g in t[t["role"].isin(DETECTED_ROLES)].groupby(["loss", "budget"]):
            cells.append(f"{loss} at {int(b)} queries: {_flagged(g)} of {len(g)}")
        text["wm_detection_text"] = (
            f"After Holm's correction, {det['k']} of the {det['n']} copies stolen from the watermarked victim are "
            f"called stolen ({100 * det['rate']:.0f} %, 95 % CI {100 * det['low']:.0f}-{100 * det['high']:.0f} %; "
            f"{'; '.join(cells)})."
        )
        fam = t[t["family"].astype(bool)]
        copies = t[t["role"].isin(DETECTED_ROLES)]
        if len(fam) and len(copies):
            best = copies.loc[copies["p_value"].idxmin()]
            text["wm_detection_text"] += (
                f" Holm's first step asks for p < α/{len(fam)} = {alpha / len(fam):.2g}; the copy with the smallest "
                f"p-value ({best['model']}, {best['watermark_acc']:.1f} %) has p = {best['p_value']:.2g}."
            )
        shifts = cell_shifts(t, alpha)
        if shifts:
            means = "; ".join(
                f"{c['loss']} at {c['budget']} queries {c['mean']:.1f} % (95 % CI {c['low']:.1f}-{c['high']:.1f})"
                for c in shifts
            )
            above = [f"{c['loss']} at {c['budget']} queries" for c in shifts if c["above"]]
            where = f"in {len(above)} of {len(shifts)} cells ({', '.join(above)})" if above else "in no cell"
            text["wm_detection_text"] += (
                f" On average over seeds, the copies score {means}, against the references' "
                f"{shifts[0]['refs_mean']:.1f} %: higher than the references (Welch's one-sided t-test, Holm over "
                f"the cells) {where}."
            )
    else:
        text["wm_detection_text"] = "No copies of the watermarked victim were tested."
    if fp["n"]:
        if fp["k"] == 0:
            how = "none is called stolen"
        elif fp["low"] > alpha:
            how = f"{fp['k']} are called stolen, significantly more than the test's level of {100 * alpha:g} %"
        else:
            how = f"{fp['k']} are called stolen (not significantly more than the test's level of {100 * alpha:g} %)"
        text["wm_fpr_text"] = (
            f"Of {fp['n']} independent models, {how}: a false-positive rate of {100 * fp['rate']:.0f} % "
            f"(95 % CI {100 * fp['low']:.0f}-{100 * fp['high']:.0f} %). Tested one by one at α, without the "
            f"correction, {_pct(false_positive_rate(t, 'single'))} of the independent models and "
            f"{_pct(detection_rate(t, 'single'))} of the copies would be called stolen."
        )
    else:
        text["wm_fpr_text"] = "No independent models were tested."
    same = same_init_comparison(t)
    if same is None:
        text["wm_same_init_text"] = "The same-initialisation arm has fewer than two seeds: not compared."
    else:
        if same["low"] > 0:
            how = "score higher than"
            meaning = "the shared initialisation alone carries watermark signal into a copy"
        elif same["high"] < 0:
            how = "score lower than"
            meaning = "the victim's initialisation does not help a copy carry the watermark"
        else:
            how = "are not separable from"
            meaning = "no effect of the initialisation is detectable at this scale"
        text["wm_same_init_text"] = (
            f"Copies that start from the victim's initial weights ({same['loss']}, {same['budget']} queries, "
            f"{same['n']} seeds) {how} their twins that start from their own "
            f"({same['same_mean']:.1f} % against {same['own_mean']:.1f} %, paired difference "
            f"{same['diff']:+.1f} points, 95 % CI {same['low']:+.1f} to {same['high']:+.1f}): {meaning}; "
            f"called stolen: {same['same_flagged']} of {same['n']} and {same['own_flagged']} of {same['n']}."
        )
    lineage = t[t["role"] == "same lineage"]
    if len(lineage):
        row = lineage.iloc[0]
        called = "is called stolen" if bool(row["stolen"]) else "is not called stolen"
        text["wm_lineage_text"] = (
            f"The victim before watermarking scores {row['watermark_acc']:.1f} % and {called} by the single test "
            f"(p = {row['p_value']:.2g}); the watermarked victim scores {victim['watermark_acc']:.1f} % "
            f"(p = {victim['p_value']:.2g})."
        )
        if bool(row["stolen"]):
            text["wm_lineage_text"] += (
                " The unwatermarked victim already stands out from the references, so part of what the test "
                "detects is the victim's lineage (features the MLP was fitted on), not only the embedded rotation "
                "task; a copy may inherit either."
            )
    else:
        text["wm_lineage_text"] = f"The watermarked victim scores {victim['watermark_acc']:.1f} %."
    text["wm_paper_text"] = paper_text(t, alpha, str(results.get("task", "binary")))
    text["wm_verdict_text"] = f"**Verdict: {verdict.verdict}.** {verdict.evidence}"
    return text


def paper_text(rows: pd.DataFrame | Sequence[Mapping[str, Any]], alpha: float = 0.05, task: str = "binary") -> str:
    """Our models against the paper's claim, which has no number (:data:`PAPER_SAYS`): where the
    independent models' mean (95 % t interval over the models) lies against chance, and the range
    of the copies' cell means (:func:`cell_shifts`)."""
    t = _table(rows)
    chance = 100 / TASKS[task]
    text = (
        "The paper published no transferability numbers, only that an independent model scores about chance "
        f"({chance:.0f} %) and a stolen copy above it, more so with more queries."
    )
    acc = t.loc[t["role"].isin(INDEPENDENT_ROLES), "watermark_acc"].to_numpy(dtype=float)
    if len(acc) >= 2 and np.ptp(acc) > 0:
        iv = mean_interval(acc)
        where = "below" if iv.high < chance else "above" if iv.low > chance else "consistent with"
        text += (
            f" Here the {len(acc)} independent models average {iv.mean:.1f} % (95 % CI {iv.low:.1f}-{iv.high:.1f}), "
            f"{where} chance"
        )
    elif len(acc):
        text += f" Here the {len(acc)} independent model(s) score {acc.mean():.1f} % (no spread to give an interval)"
    else:
        text += " No independent model was scored here"
    cells = cell_shifts(t, alpha)
    if cells:
        lo, hi = min(cells, key=lambda c: c["mean"]), max(cells, key=lambda c: c["mean"])
        if hi["mean"] == lo["mean"]:
            return text + f"; every cell of copies averages {lo['mean']:.1f} %."
        text += (
            f"; the copies' cell means run from {lo['mean']:.1f} % ({lo['loss']}, {lo['budget']} queries) to "
            f"{hi['mean']:.1f} % ({hi['loss']}, {hi['budget']} queries)."
        )
    else:
        text += "; no cell of copies has two seeds to average."
    return text


def plot_transferability(table: pd.DataFrame, task: str = "binary") -> Figure:
    """Every model's watermark accuracy, one line per group of models (:func:`group_summary`'s
    groups), coloured by role: filled if called stolen, hollow if not; with the victim's decision
    threshold (single test against all references) and chance (``task``'s number of classes)."""
    t = _table(table)
    t = t.assign(group=t.apply(_group, axis=1))
    groups = list(dict.fromkeys(t["group"]))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(groups) + 1.5), layout="constrained")
    jitter = np.random.default_rng(0)
    for i, group in enumerate(groups):
        g = t[t["group"] == group]
        y = i + jitter.uniform(-0.15, 0.15, len(g)) * (len(g) > 1)
        color = ROLE_COLORS.get(g["role"].iloc[0], "#999999")
        flagged = g["stolen"].astype(bool).to_numpy()
        ax.scatter(g["watermark_acc"][flagged], y[flagged], color=color, s=36, zorder=3)
        ax.scatter(g["watermark_acc"][~flagged], y[~flagged], facecolors="none", edgecolors=color, s=36, zorder=3)
    ax.set_yticks(range(len(groups)), [_short(g) for g in groups], fontsize=10)
    ax.invert_yaxis()
    threshold = float(victim_row(t)["threshold"])
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"single-test threshold ({threshold:.1f} %)")
    ax.axvline(100 / TASKS[task], color="grey", ls=":", lw=1, label="chance")
    ax.scatter([], [], color="k", s=36, label="called stolen (Holm in the family, else single test)")
    ax.scatter([], [], facecolors="none", edgecolors="k", s=36, label="not called stolen")
    ax.set_xlabel("watermark accuracy through the victim's rotation MLP (%)")
    fig.legend(loc="outside lower center", fontsize=9, ncol=2)
    ax.set_title("Which models carry the rotation watermark?")
    return fig


def headline(results: Mapping[str, Any]) -> dict[str, float]:
    """The numbers the chapter's prose quotes (glued): the victim's watermark accuracy and its
    single-test threshold (%), the references' mean and standard deviation (%), their number, the
    family's size, the probe accuracy before and after embedding and the cost (points; NaN without)."""
    t = _table(results["rows"])
    victim = t[t["role"] == "victim"].iloc[0]
    cost = results.get("cost") or {}
    return {
        "wm_victim_acc": float(victim["watermark_acc"]),
        "wm_threshold": float(results["victim_threshold"]),
        "wm_refs_mean": float(results["refs_mean"]),
        "wm_refs_sd": float(results["refs_sd"]),
        "wm_refs_n": int((t["role"] == "reference").sum()),
        "wm_family": int(results["family_size"]),
        "wm_alpha_pct": 100 * float(results["alpha"]),
        "wm_probe_before": float(cost.get("probe_before", math.nan)),
        "wm_probe_after": float(cost.get("probe_after", math.nan)),
        "wm_cost": float(cost.get("cost", math.nan)),
    }


def _yes(flag: object) -> str:
    return "yes" if bool(flag) else "no"


def group_table(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """:func:`group_summary` for readers: a row per group of models, its number of models, mean
    watermark accuracy (%) with its 95 % t interval over the models (one model, or no spread: the
    value alone), how many were called stolen, that share (%) with its Clopper-Pearson 95 %
    interval, and whether the group is tested in Holm's family."""
    g = group_summary(rows)
    out = pd.DataFrame(index=g.index)
    out["models"] = [number(int(n)) for n in g["models"]]
    out["watermark accuracy (%)"] = [
        interval(m, lo, hi) for m, lo, hi in zip(g["watermark_acc"], g["acc_low"], g["acc_high"], strict=True)
    ]
    out["called stolen"] = [f"{int(k)} of {int(n)}" for k, n in zip(g["called_stolen"], g["models"], strict=True)]
    out["share called stolen (%)"] = [
        interval(m, lo, hi, digits=0)
        for m, lo, hi in zip(g["share_%"], g["share_low_%"], g["share_high_%"], strict=True)
    ]
    out["in Holm's family"] = [_yes(f) for f in g["in_family"]]
    return out.rename_axis("group of models")


def model_table(table: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Every model for readers: its role, watermark accuracy (%) with its Wilson 95 % interval
    over the test images, the single test's threshold (%) and p-value, and the two decisions:
    the single test at alpha, and Holm's within the family (:data:`~encsteal.tables.NA` for the
    controls outside it)."""
    t = _table(table)
    out = pd.DataFrame(
        {
            "role": t["role"].astype(str).tolist(),
            "watermark accuracy (%)": [
                interval(a, lo, hi) for a, lo, hi in zip(t["watermark_acc"], t["ci_low"], t["ci_high"], strict=True)
            ],
            "threshold (%)": [number(float(v)) for v in t["threshold"]],
            "p-value": [f"{float(v):.2g}" for v in t["p_value"]],
            "stolen, single test": [_yes(v) for v in t["single"]],
            "stolen, Holm": [_yes(v) if fam else NA for v, fam in zip(t["stolen"], t["family"], strict=True)],
        },
        index=pd.Index(t["model"].astype(str), name="model"),
    )
    return out


PAPER_CLAIM_INDEPENDENT = "paper's claim: an independent model scores about chance"
PAPER_CLAIM_STOLEN = "paper's claim: stolen copies score above it (no number published)"
"""Legend labels of the paper's claim in :func:`plot_paper_vs_ours`."""
_COMPARED = {
    **{r: "independent" for r in INDEPENDENT_ROLES},
    "stolen": "stolen",
    "same init": "stolen",
    "victim": "victim",
}


def paper_vs_ours_points(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Our side of :func:`plot_paper_vs_ours`: one row per group of models (:func:`group_summary`'s
    groups) that the paper's claim speaks of: independent models (``side`` ``independent``), copies
    of the watermarked victim (``stolen``) and the victim itself (``victim``), in that order. ``mean``
    with ``low``/``high``: the 95 % t interval over the group's models, or for a single model its
    Wilson interval over the test images (``interval`` says which)."""
    t = _table(rows)
    t = t[t["role"].isin(list(_COMPARED))]
    t = t.assign(group=t.apply(_group, axis=1), side=t["role"].map(_COMPARED))
    out = []
    for role in _COMPARED:  # independent models, then copies, then the victim
        for group, g in t[t["role"] == role].groupby("group", sort=False):
            acc = g["watermark_acc"].to_numpy(dtype=float)
            if len(acc) >= 2 and np.ptp(acc) > 0:
                iv = mean_interval(acc)
                mean, low, high, kind = iv.mean, iv.low, iv.high, "t over models"
            elif len(acc) == 1 and "ci_low" in g and pd.notna(g["ci_low"].iloc[0]):
                mean, low, high, kind = float(acc[0]), float(g["ci_low"].iloc[0]), float(g["ci_high"].iloc[0]), "Wilson"
            else:
                mean = low = high = float(acc.mean())
                kind = "none"
            label = _short(str(group))
            out.append(
                {"label": f"{label} (n={len(acc)})" if len(acc) > 1 else label, "side": _COMPARED[role]}
                | {"role": g["role"].iloc[0], "mean": mean, "low": low, "high": high, "n": len(acc), "interval": kind}
            )
    return pd.DataFrame(out)


def plot_paper_vs_ours(rows: pd.DataFrame | Sequence[Mapping[str, Any]], task: str = "binary") -> Figure:
    """Paper vs ours: the paper's claim, which has no number, as reference marks (a dotted line at
    chance for an independent model, :data:`PAPER_CLAIM_INDEPENDENT`; a shaded region above it
    across the copies' rows, :data:`PAPER_CLAIM_STOLEN`), and our groups of models
    (:func:`paper_vs_ours_points`) as means with 95 % intervals, coloured by role."""
    pts = paper_vs_ours_points(rows)
    if pts.empty:
        raise ValueError("No independent models, copies or victim to compare with the paper's claim.")
    chance = 100 / TASKS[task]
    y = np.arange(len(pts))
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(pts) + 2.2), layout="constrained")
    stolen_y = y[(pts["side"] == "stolen").to_numpy()]
    if len(stolen_y):
        ax.fill_betweenx(
            [stolen_y.min() - 0.45, stolen_y.max() + 0.45],
            chance,
            100,
            color="#dd8452",
            alpha=0.15,
            lw=0,
            label=PAPER_CLAIM_STOLEN,
        )
    ax.axvline(chance, color="k", ls=":", lw=1.2, label=f"{PAPER_CLAIM_INDEPENDENT} ({chance:.0f} %)")
    for i, row in pts.iterrows():
        err = [[max(row["mean"] - row["low"], 0.0)], [max(row["high"] - row["mean"], 0.0)]]
        ax.errorbar(row["mean"], y[i], xerr=err, fmt="o", ms=5, capsize=3, color=ROLE_COLORS.get(row["role"], "#999"))
    ax.errorbar([], [], xerr=[], fmt="o", ms=5, capsize=3, color="#555555", label="ours: mean, 95 % interval")
    edges = [i + 0.5 for i in range(len(pts) - 1) if pts["side"].iloc[i] != pts["side"].iloc[i + 1]]
    for e in edges:
        ax.axhline(e, color="grey", lw=0.6)
    ax.set_yticks(y, pts["label"], fontsize=10)
    ax.set_ylim(len(pts) - 0.5, -0.5)
    ax.set_xlim(min(chance - 10, float(pts["low"].min()) - 3), 100)
    ax.set_xlabel("watermark accuracy through the victim's rotation MLP (%)")
    fig.legend(fontsize=9, loc="outside lower center", ncol=2)
    ax.set_title("The watermark's transferability: the paper's claim and our models", fontsize=11)
    return fig
