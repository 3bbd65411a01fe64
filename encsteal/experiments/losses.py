"""Chapter 2: the impact of the stealing loss (the paper's loss table, claim C1) and how few
queries a copy needs (claim C2), at the quick profile's scale.

What every judged number rests on
---------------------------------
* **Victim**: the quick SimCLR victim (``p.victim_dataset``, ``p.victim_num_train`` images).
* **Queries**: in-distribution queries (``p.query_sets[0]``) come from a held-out *pool*: every
  training image of that data set outside the victim's training images and outside the probe
  images (:func:`query_pool`). Seed ``s`` draws its own queries from the pool with its own
  ``queries`` stream (:func:`seed_queries`); a larger budget of the same seed contains the smaller
  ones. Out-of-distribution query sets (``p.query_sets[1:]``, sklearn's digits by default) are
  shown with the seeds ``p.shown_seeds`` and never judged, like SupCon (it uses the queries' labels).
* **Copies**: ``StealConfig(seed=s)``: the copy's initial weights come from seed ``s``'s own
  ``stolen`` stream, never from the victim's. Every loss runs with the profile's fixed settings
  (``p.loss_settings``; Adam 1e-3, batch 128, ``p.steal_epochs`` epochs): **no loss is tuned**.
* **Evaluation**: :func:`encsteal.experiments.downstream.evaluate` on every judged task
  (``p.downstream_sets``), the few-label subset drawn with seed ``s``'s own stream; the
  out-of-distribution and sweep copies get only the probe and the fidelity measures
  (:func:`evaluate_probe`, same probe). The judged measure is the linear probe's accuracy (``METRIC``).
* **Baselines**: per seed, the victim (its full probe is the same for every seed) and the
  random-init encoder of seed ``s`` (:func:`encsteal.seeds.random_init_encoder`). The share of
  the victim's margin a copy of seed ``s`` recovers is ``(copy_s - random_s) / (victim - random_s)``.
* **The few-queries sweep** (claim C2): one loss (``p.sweep_loss``, InfoNCE: the loss of the
  paper's ImageNet experiments, book/paper_setup.md#setup-stealing-imagenet) at the budgets
  ``p.budgets``, 5 seeds. A run with fewer queries trains for more epochs, so that every run takes
  at least as many optimiser steps as the loss grid's (:func:`sweep_epochs`): an attacker pays
  for queries, not for epochs. The cells at the shared budget are the loss grid's.

Everything the judges need is in :meth:`LossChapter.results` (per-seed values of every cell and
baseline); :func:`judge_losses` and :func:`judge_few_queries` recompute their verdicts from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from encsteal import paper_tables, params, tables
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data.imageset import ImageSet
from encsteal.data.registry import load
from encsteal.data.splits import draw_disjoint
from encsteal.experiments.claims import Verdict
from encsteal.experiments.downstream import Downstream, downstream_tasks, evaluate
from encsteal.fidelity import linear_cka, mean_cosine_similarity
from encsteal.losses import LOSSES
from encsteal.params import Params
from encsteal.probe import extract_features, few_label_indices, fit_probe
from encsteal.seeds import derive_seed, generator, random_init_encoder
from encsteal.stats import holm, mean_interval, paired_difference
from encsteal.victims import train_victim

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("probe", "few_label", "knn", "victim_head", "cosine", "cka")
"""The per-copy measures of :func:`encsteal.experiments.downstream.evaluate`."""
METRIC = "probe"
"""The judged measure: linear-probe accuracy (%) with all probe labels."""
CONTRASTIVE = ("infonce", "softnn")
"""The contrastive losses of claim C1."""
OTHERS = ("mse", "wasserstein")
"""The label-free losses that are neither contrastive nor Barlow Twins."""
PAIRINGS = ("barlow", "barlow_official")
"""The two Barlow Twins pairings, judged separately: stolen vs victim outputs of the same images
(``barlow``), and the official code's first vs second half of the batch (``barlow_official``,
book/paper_setup.md#setup-official-code item 3)."""
LABEL_FREE = ("mse", "infonce", "softnn", "wasserstein", "barlow", "barlow_official")
"""Losses that use no labels of the queries (SupCon does: it is never judged)."""
ALPHA = 0.05
"""Family-wise error level of each judge's Holm-corrected comparisons."""
MIN_SEEDS = 5
"""Seeds a judged cell needs."""
MIN_MARGIN = 5.0
"""Points: a task is judged only when the lower end of the 95 % interval of the victim's margin
over the random-init encoder is at least this."""
LEVELS = (0.5, 0.8)
"""Shares of the victim's margin of claim C2."""
FIFTH = 0.2
"""Claim C2's query budget: a fifth of the victim's training set."""
PAIRING_NAMES = {
    "barlow": "correct pairing (stolen vs victim outputs of the same images)",
    "barlow_official": "official code's pairing (first vs second half of the batch)",
}


# ---- running the chapter ------------------------------------------------------------------------------


def query_pool(
    name: str,
    victim_dataset: str,
    victim_num_train: int,
    victim_split_seed: int,
    probe_sets: Sequence[str],
    probe_sizes: Mapping[str, int],
    probe_seed: int,
) -> ImageSet:
    """Every training image of ``name`` that is neither one of the victim's training images (the
    ``victim`` role drawn with the victim's split seed) nor a probe image of a downstream task on
    ``name`` (the roles :func:`~encsteal.experiments.downstream.downstream_tasks` draws)."""
    train = load(name, "train")
    used: list[torch.Tensor] = []
    if name == victim_dataset:
        used.append(draw_disjoint(len(train), {"victim": victim_num_train}, victim_split_seed)["victim"])
    if name in probe_sets:
        roles = {"victim": victim_num_train} if name == victim_dataset else {}
        roles |= {r: int(probe_sizes[r]) for r in ("probe_train", "probe_val")}
        picked = draw_disjoint(len(train), roles, probe_seed)
        used += [picked[r] for r in ("probe_train", "probe_val")]
    keep = torch.ones(len(train), dtype=torch.bool)
    for idx in used:
        keep[idx] = False
    return train.subset(torch.nonzero(keep).flatten())


def seed_queries(pool: ImageSet, seed: int, n: int) -> ImageSet:
    """Seed ``seed``'s ``n`` queries: the first ``n`` of a permutation of the pool drawn with the
    seed's own ``queries`` stream (so a seed's larger budgets contain its smaller ones)."""
    if n > len(pool):
        raise ValueError(f"Budget {n} exceeds the {len(pool)} images of the {pool.name!r} query pool.")
    order = torch.randperm(len(pool), generator=generator(seed, "queries"))
    return pool.subset(order[:n])


BATCH = 128
"""Batch size of every stealing run."""


def sweep_epochs(budget: int, reference_budget: int, epochs: int, batch_size: int = BATCH) -> int:
    """Epochs of a sweep run with ``budget`` queries: at least ``epochs``, and enough that the copy
    takes at least as many optimiser steps as a run with ``reference_budget`` queries and ``epochs``
    epochs (the loss grid's): an attacker with fewer queries can still train as long."""
    steps = epochs * math.ceil(reference_budget / batch_size)
    return max(epochs, math.ceil(steps / math.ceil(budget / batch_size)))


def steal_and_evaluate(
    api: EncoderAPI,
    queries: ImageSet,
    loss: str,
    budget: int,
    seed: int,
    epochs: int,
    tasks: Sequence[Downstream],
    batch_size: int = 128,
    device: str = "auto",
    loss_params: Mapping[str, Any] | None = None,
) -> list[dict]:
    """Steal with the first ``budget`` query images and evaluate the copy on every task (used by
    the ImageNet chapter). ``loss_params``: the loss's settings (default: its own)."""
    if budget > len(queries):
        raise ValueError(f"Budget {budget} exceeds the {len(queries)} query images of {queries.name!r}.")
    q = queries.subset(torch.arange(budget))
    config = StealConfig(
        loss=loss, loss_params=dict(loss_params or {}), epochs=epochs, batch_size=batch_size, seed=seed
    )
    labels = q.labels if LOSSES[loss].needs_labels else None
    result = steal(api, q, config, query_labels=labels, device=device, progress=False)
    return [
        {
            "loss": loss,
            "query_set": queries.name,
            "budget": budget,
            "seed": seed,
            "downstream": task.name,
            "queries_paid": result.queries,
            **evaluate(result.encoder, task),
        }
        for task in tasks
    ]


@dataclass(frozen=True)
class Cell:
    """One stealing run: a loss, a query set, a budget, its epochs and a seed."""

    loss: str
    query_set: str
    budget: int
    epochs: int
    seed: int
    full: bool = True
    """Every measure of :func:`evaluate` (the loss grid), or only the judged probe and the cheap
    fidelity measures (:func:`evaluate_probe`: the out-of-distribution cells and the sweep)."""


def plan(p: Params) -> list[Cell]:
    """The chapter's runs, each once: the loss grid on the in-distribution queries (every
    label-free loss with every seed of ``p.seeds``; a loss that uses labels, SupCon, with
    ``p.shown_seeds``), the out-of-distribution query sets (every loss, ``p.shown_seeds``) and the
    few-queries sweep (``p.sweep_loss``, every budget and seed), whose cells at the grid's budget
    are the grid's own. Only the grid's cells get every measure (``Cell.full``)."""
    ind = p.query_sets[0]

    def seeds(loss: str) -> list[int]:
        return list(p.shown_seeds if LOSSES[loss].needs_labels else p.seeds)

    cells = [Cell(loss, ind, p.budget, p.steal_epochs, s) for loss in p.losses for s in seeds(loss)]
    shown = [(qs, loss, s) for qs in p.query_sets[1:] for loss in p.losses for s in p.shown_seeds]
    cells += [Cell(loss, qs, p.budget, p.steal_epochs, s, False) for qs, loss, s in shown]
    cells += [
        Cell(p.sweep_loss, ind, b, sweep_epochs(b, p.budget, p.steal_epochs), s, False)
        for b in sorted(set(p.budgets))
        for s in seeds(p.sweep_loss)
    ]
    unique: dict[tuple, Cell] = {}
    for c in cells:
        unique.setdefault((c.loss, c.query_set, c.budget, c.epochs, c.seed), c)
    return list(unique.values())


def steal_cell(
    api: EncoderAPI,
    pool: ImageSet,
    cell: Cell,
    tasks: Sequence[Downstream],
    loss_params: Mapping[str, Any] | None = None,
    batch_size: int = BATCH,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Steal with ``cell``'s queries (its seed's own subset of ``pool``) and evaluate the copy on
    every task; one row per task. SupCon gets the queries' labels (then the attack is not
    label-free)."""
    start = time.perf_counter()
    queries = seed_queries(pool, cell.seed, cell.budget)
    config = StealConfig(
        loss=cell.loss,
        loss_params=dict(loss_params or {}),
        epochs=cell.epochs,
        batch_size=batch_size,
        seed=cell.seed,
    )
    labels = queries.labels if LOSSES[cell.loss].needs_labels else None
    result = steal(api, queries, config, query_labels=labels, device=device, progress=False)
    rows = [
        {
            "loss": cell.loss,
            "query_set": cell.query_set,
            "budget": cell.budget,
            "epochs": cell.epochs,
            "seed": cell.seed,
            "task": task.name,
            "queries_paid": result.queries,
            **(evaluate(result.encoder, task, seed=cell.seed) if cell.full else evaluate_probe(result.encoder, task)),
        }
        for task in tasks
    ]
    for row in rows:
        row["seconds"] = time.perf_counter() - start
    return rows


def evaluate_probe(encoder: torch.nn.Module, task: Downstream) -> dict[str, float]:
    """The measures of :func:`evaluate` without the few-label probe and k-NN (NaN): the judged
    linear probe, fitted exactly as :func:`evaluate` fits it, and the fidelity measures."""
    roles = ("probe_train", "probe_val", "probe_test")
    y = {r: task.splits[r].labels for r in roles}
    feats = {r: extract_features(encoder, task.splits[r]) for r in roles}
    probe = fit_probe(feats["probe_train"], y["probe_train"], feats["probe_val"], y["probe_val"], task.Cs)
    test_x, vict_x = feats["probe_test"], task.victim_features["probe_test"]
    same = test_x.shape[1] == vict_x.shape[1]
    return {
        "probe": 100 * probe.accuracy(test_x, y["probe_test"]),
        "knn": float("nan"),
        "few_label": float("nan"),
        "victim_head": 100 * task.victim_probe.accuracy(test_x, y["probe_test"]) if same else float("nan"),
        "cosine": mean_cosine_similarity(test_x, vict_x) if same else float("nan"),
        "cka": linear_cka(test_x, vict_x),
    }


def victim_rows(task: Downstream, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The victim's scores on ``task`` for each seed: one :func:`evaluate` (its full probe, k-NN
    and fidelity do not depend on the seed), and the few-label probe refitted on each seed's own
    few-label subset, exactly as :func:`evaluate` draws it."""
    first = evaluate(None, task, seed=seeds[0])
    x, y = task.victim_features, {r: task.splits[r].labels for r in ("probe_train", "probe_val", "probe_test")}
    rows = []
    for s in seeds:
        few = first["few_label"]
        if s != seeds[0]:
            idx = few_label_indices(y["probe_train"], task.per_class, derive_seed(s, "few_label"))
            fitted = fit_probe(x["probe_train"][idx], y["probe_train"][idx], x["probe_val"], y["probe_val"], task.Cs)
            few = 100 * fitted.accuracy(x["probe_test"], y["probe_test"])
        rows.append({"encoder": "victim", "seed": s, "task": task.name, **first, "few_label": few})
    return rows


def baseline_rows(
    tasks: Sequence[Downstream], seeds: Sequence[int], arch: str, in_channels: int, input_size: int
) -> list[dict[str, Any]]:
    """Per seed and task: the victim's scores (:func:`victim_rows`) and those of the random-init
    encoder of that seed."""
    rows = [row for task in tasks for row in victim_rows(task, seeds)]
    for s in seeds:
        rand = random_init_encoder(arch, in_channels, input_size, s)
        for task in tasks:
            rows.append({"encoder": "random init", "seed": s, "task": task.name, **evaluate(rand, task, seed=s)})
    return rows


@dataclass
class LossChapter:
    """Everything chapter 2 measured; :meth:`results` is what it saves and what the judges read."""

    cells: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    settings: dict[str, Any]

    def results(self) -> dict[str, Any]:
        """The chapter's saved results: its settings, and per-seed values of every cell and baseline."""
        return {**self.settings, "cells": self.cells, "baselines": self.baselines}


def run(p: Params) -> LossChapter:
    """Chapter 2: steal the quick victim with each loss, query set, budget and seed (:func:`plan`),
    evaluate every copy and the per-seed baselines."""
    started = time.perf_counter()
    victim = train_victim(params.victim_config(p), device=p.device, progress=False)
    api = EncoderAPI(victim.encoder, victim.head)
    tasks = downstream_tasks(p, victim.encoder, p.downstream_sets, p.victim_dataset, p.victim_num_train)
    pools = {
        qs: query_pool(
            qs,
            p.victim_dataset,
            p.victim_num_train,
            victim.config.split_seed,
            p.downstream_sets,
            params.probe_sizes(p),
            p.seed,
        )
        for qs in p.query_sets
    }
    enc = victim.encoder
    base = baseline_rows(tasks, p.seeds, victim.config.arch, enc.in_channels, enc.input_size)
    cells: list[dict[str, Any]] = []
    for cell in tqdm(plan(p), desc="loss chapter", disable=None):  # no bar where stderr is not a terminal
        cells += steal_cell(api, pools[cell.query_set], cell, tasks, params.loss_params(p, cell.loss), device=p.device)
    settings = {
        "metric": METRIC,
        "victim_dataset": p.victim_dataset,
        "victim_num_train": p.victim_num_train,
        "victim_seconds": victim.train_seconds,
        "in_distribution": p.query_sets[0],
        "query_sets": list(p.query_sets),
        "pool_sizes": {qs: len(pool) for qs, pool in pools.items()},
        "judged_tasks": list(p.downstream_sets),
        "losses": list(p.losses),
        "budget": p.budget,
        "epochs": p.steal_epochs,
        "seeds": list(p.seeds),
        "shown_seeds": list(p.shown_seeds),
        "sweep_loss": p.sweep_loss,
        "budgets": sorted(set(p.budgets)),
        "loss_settings": {loss: params.loss_params(p, loss) for loss in p.losses},
        "few_label_per_class": p.few_label_per_class,
        "tuned": False,
        "seconds": time.perf_counter() - started,
    }
    return LossChapter(cells, base, settings)


# ---- reading the results ----------------------------------------------------------------------------


def _interval(values: Sequence[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with the 95 % t interval; NaN bounds for fewer than 2 values."""
    x = [float(v) for v in values]
    if len(x) >= 2:
        i = mean_interval(x)
        return i.mean, i.low, i.high, i.n
    return (x[0] if x else float("nan")), float("nan"), float("nan"), len(x)


def _frame(results: Mapping[str, Any], key: str) -> pd.DataFrame:
    return pd.DataFrame(list(results.get(key) or []))


def cell_values(
    results: Mapping[str, Any],
    loss: str,
    task: str,
    query_set: str | None = None,
    budget: int | None = None,
    metric: str = METRIC,
) -> pd.Series:
    """Per-seed values (index: seed) of one cell; the in-distribution queries and the grid's budget
    unless given."""
    cells = _frame(results, "cells")
    if cells.empty:
        return pd.Series(dtype=float)
    qs = results["in_distribution"] if query_set is None else query_set
    b = results["budget"] if budget is None else budget
    sel = cells[(cells.loss == loss) & (cells.task == task) & (cells.query_set == qs) & (cells.budget == b)]
    return sel.groupby("seed")[metric].mean().sort_index()


def baseline_values(results: Mapping[str, Any], encoder: str, task: str, metric: str = METRIC) -> pd.Series:
    """Per-seed values (index: seed) of the victim or the random-init encoder on ``task``."""
    base = _frame(results, "baselines")
    if base.empty:
        return pd.Series(dtype=float)
    sel = base[(base.encoder == encoder) & (base.task == task)]
    return sel.groupby("seed")[metric].mean().sort_index()


def _baselines(results: Mapping[str, Any], task: str, metric: str = METRIC) -> tuple[pd.Series, pd.Series]:
    """Per-seed values of the victim and of the random-init encoders on ``task``."""
    return baseline_values(results, "victim", task, metric), baseline_values(results, "random init", task, metric)


def shares(copy: pd.Series, victim: pd.Series, random: pd.Series) -> pd.Series:
    """Per seed: the share of the victim's margin over that seed's random-init encoder that the
    copy recovers, (copy - random) / (victim - random); NaN where the seed has no margin."""
    seeds = copy.index.intersection(victim.index).intersection(random.index)
    margin = victim[seeds] - random[seeds]
    return ((copy[seeds] - random[seeds]) / margin.where(margin > 0)).rename("share")


def margin_table(results: Mapping[str, Any], metric: str = METRIC, min_margin: float = MIN_MARGIN) -> pd.DataFrame:
    """Per judged task: the victim, the random-init encoders (mean and 95 % interval over seeds),
    the victim's margin over them, and whether the task is judged (the margin's lower end is at
    least ``min_margin`` points)."""
    rows = []
    for task in results.get("judged_tasks", []):
        victim, random = (
            baseline_values(results, "victim", task, metric),
            baseline_values(results, "random init", task, metric),
        )
        seeds = victim.index.intersection(random.index)
        if len(seeds) == 0:
            continue
        r, m = _interval(random[seeds]), _interval(victim[seeds] - random[seeds])
        rows.append(
            {
                "task": task,
                "victim": float(victim[seeds].mean()),
                "random init": r[0],
                "random low": r[1],
                "random high": r[2],
                "margin": m[0],
                "margin low": m[1],
                "margin high": m[2],
                "seeds": m[3],
                "judged": bool(m[3] >= 2 and m[1] >= min_margin),
            }
        )
    return pd.DataFrame(rows).set_index("task") if rows else pd.DataFrame()


def judged_tasks(results: Mapping[str, Any], min_margin: float = MIN_MARGIN) -> list[str]:
    """The judged tasks on which the victim clearly beats the random-init encoders."""
    table = margin_table(results, min_margin=min_margin)
    return [t for t in table.index if table.loc[t, "judged"]] if len(table) else []


def loss_table(results: Mapping[str, Any], query_set: str | None = None, metric: str = METRIC) -> pd.DataFrame:
    """Per loss (rows) and task: mean, 95 % interval and seeds of ``metric``, and of the share of
    the victim's margin recovered; the in-distribution queries unless ``query_set`` is given."""
    qs = results["in_distribution"] if query_set is None else query_set
    columns: dict[tuple[str, str], dict[str, float]] = {}
    for task in results.get("judged_tasks", []):
        victim, random = (
            baseline_values(results, "victim", task, metric),
            baseline_values(results, "random init", task, metric),
        )
        for loss in results.get("losses", []):
            values = cell_values(results, loss, task, qs, metric=metric)
            if values.empty:
                continue
            acc = _interval(values)
            sh = shares(values, victim, random).dropna()
            share = _interval(sh) if len(sh) else (float("nan"),) * 3 + (0,)
            for stat, v in zip(
                ("mean", "low", "high", "share", "share low", "share high", "seeds"), acc[:3] + share[:3] + (acc[3],)
            ):
                columns.setdefault((task, stat), {})[loss] = v
    table = pd.DataFrame(columns)
    if not table.empty:
        table.columns = pd.MultiIndex.from_tuples(table.columns, names=["task", ""])
    return table.rename_axis("loss")


def _fmt(mean: float, low: float, high: float, digits: int = 1) -> str:
    """``mean [low, high]`` (:func:`encsteal.tables.interval`; n/a when missing)."""
    return tables.interval(mean, low, high, digits)


def _cell(mean: float, low: float, high: float, digits: int = 1) -> str:
    """:func:`_fmt` for a table cell: the bracket never breaks across lines (a narrow column
    wraps between the mean and its interval)."""
    return _fmt(mean, low, high, digits).replace(", ", ",\u00a0")


NOTHING = "none in this build"
"""The row label of a reader table whose results are missing (every cell n/a)."""


def _nothing(index_name: str, columns: Sequence[str]) -> pd.DataFrame:
    """A one-row table of n/a cells for a page whose build did not measure what it shows."""
    return pd.DataFrame({c: [tables.NA] for c in columns}, index=pd.Index([NOTHING], name=index_name))


def loss_display(results: Mapping[str, Any], query_set: str | None = None) -> pd.DataFrame:
    """:func:`loss_table` for a page: per loss, on each task its probe accuracy (%) and the share of
    the victim's margin it recovers, mean [95 % interval] over seeds in one cell (a single seed:
    the value alone; n/a: no margin), and the number of seeds."""
    table = loss_table(results, query_set)
    if table.empty:
        return _nothing("loss", ["probe accuracy (%)", "share of margin", "seeds"])
    out = {}
    for task in dict.fromkeys(table.columns.get_level_values(0)):
        t = table[task]
        out[f"{task}: probe accuracy (%)"] = [_cell(*r) for r in t[["mean", "low", "high"]].itertuples(index=False)]
        out[f"{task}: share of margin"] = [
            _cell(*r, digits=2) for r in t[["share", "share low", "share high"]].itertuples(index=False)
        ]
    display = pd.DataFrame(out, index=table.index)
    display["seeds"] = [tables.number(int(n)) for n in table.xs("seeds", axis=1, level=1).max(axis=1)]
    return display.fillna(tables.NA).rename_axis("loss")


def margin_display(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`margin_table` for a page: per task the victim's probe accuracy, the random-init
    encoders' and the victim's margin over them (mean [95 % interval] over seeds), the seeds and
    whether the task is judged."""
    columns = ["victim (%)", "random init (%)", "margin (points)", "seeds", "judged"]
    m = margin_table(results)
    if m.empty:
        return _nothing("task", columns)
    return pd.DataFrame(
        {
            "victim (%)": m["victim"].map(tables.number),
            "random init (%)": [_cell(*r) for r in m[["random init", "random low", "random high"]].itertuples(False)],
            "margin (points)": [_cell(*r) for r in m[["margin", "margin low", "margin high"]].itertuples(False)],
            "seeds": m["seeds"].map(lambda n: tables.number(int(n))),
            "judged": m["judged"].map({True: "yes", False: "no (margin too small)"}),
        },
        index=m.index,
    ).rename_axis("task")


def fidelity_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Mean over seeds of every measure (:data:`METRICS`), per task (first index level), for each
    loss's copies of the loss grid (in-distribution queries) and for the victim and the
    random-init encoders (not judged); NaN where a measure was not taken."""
    cells, base = _frame(results, "cells"), _frame(results, "baselines")
    if cells.empty or base.empty:
        return pd.DataFrame()
    sel = cells[(cells.query_set == results["in_distribution"]) & (cells.budget == results["budget"])]
    copies = sel.reindex(columns=["task", "loss", *METRICS]).groupby(["task", "loss"], sort=False).mean()
    refs = base.rename(columns={"encoder": "loss"}).reindex(columns=["task", "loss", *METRICS])
    refs = refs.groupby(["task", "loss"], sort=False).mean()
    table = pd.concat([refs, copies]).sort_index(level=0, sort_remaining=False)
    return table.astype(float).rename_axis(["task", "encoder"])


FIDELITY_COLUMNS = {
    "probe": "probe (%)",
    "few_label": "few-label probe (%)",
    "knn": "20-NN (%)",
    "victim_head": "victim's head (%)",
    "cosine": "cosine to victim",
    "cka": "linear CKA",
}
"""Reader headers of the measures of :func:`fidelity_table`."""


def fidelity_display(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`fidelity_table` for a page: one row per task and encoder ("mnistm: victim"),
    accuracies (%) with one decimal, cosine and CKA with two; n/a where a measure was not taken."""
    table = fidelity_table(results)
    if table.empty:
        return _nothing("task: encoder", list(FIDELITY_COLUMNS.values()))
    out = pd.DataFrame(
        {
            header: [tables.number(v, 2 if metric in ("cosine", "cka") else 1) for v in table[metric]]
            for metric, header in FIDELITY_COLUMNS.items()
        }
    )
    out.index = pd.Index([f"{task}: {encoder}" for task, encoder in table.index], name="task: encoder")
    return out


# ---- claim C1: the losses -----------------------------------------------------------------------------


def comparisons(
    results: Mapping[str, Any],
    barlow: str = "barlow",
    tasks: Sequence[str] | None = None,
    alpha: float = ALPHA,
    metric: str = METRIC,
) -> pd.DataFrame:
    """The paired comparisons of claim C1 for one Barlow pairing, on the in-distribution queries:
    each contrastive loss against MSE, Wasserstein and Barlow, and Barlow against MSE and
    Wasserstein (8 per task), ``a - b`` paired by seed, Holm-corrected over all of them.
    ``sign``: +1 where ``a`` is separably better, -1 separably worse, 0 not separable."""
    if barlow not in PAIRINGS:
        raise ValueError(f"Unknown Barlow pairing {barlow!r}. Known: {', '.join(PAIRINGS)}.")
    tasks = judged_tasks(results) if tasks is None else tasks
    pairs = [(c, o) for c in CONTRASTIVE for o in (*OTHERS, barlow)] + [(barlow, o) for o in OTHERS]
    rows = []
    for task in tasks:
        for a, b in pairs:
            x, y = cell_values(results, a, task, metric=metric), cell_values(results, b, task, metric=metric)
            seeds = x.index.intersection(y.index)
            if len(seeds) < 2:
                continue
            diff, pvalue = paired_difference(x[seeds].to_numpy(), y[seeds].to_numpy())
            rows.append(
                {
                    "task": task,
                    "a": a,
                    "b": b,
                    "difference": diff.mean,
                    "low": diff.low,
                    "high": diff.high,
                    "p": pvalue,
                    "seeds": len(seeds),
                }
            )
    table = pd.DataFrame(rows, columns=["task", "a", "b", "difference", "low", "high", "p", "seeds"])
    table["separable"] = holm(table["p"].tolist(), alpha) if len(table) else []
    table["sign"] = np.where(table["separable"], np.sign(table["difference"]), 0).astype(int)
    return table


def _sign(comps: pd.DataFrame, task: str, a: str, b: str) -> int | None:
    sel = comps[(comps.task == task) & (comps.a == a) & (comps.b == b)]
    return int(sel["sign"].iloc[0]) if len(sel) else None


def c1_parts(comps: pd.DataFrame, task: str, barlow: str) -> dict[str, bool]:
    """On ``task``: ``best``: some contrastive loss separably beats MSE, Wasserstein and Barlow;
    ``worst``: Barlow is separably below each of the other four; ``best_reversed``: a
    non-contrastive loss separably beats both contrastive losses; ``worst_reversed``: Barlow
    separably beats one of the other four."""
    beats = lambda a, b: _sign(comps, task, a, b) == 1  # noqa: E731
    loses = lambda a, b: _sign(comps, task, a, b) == -1  # noqa: E731
    others = (*OTHERS, barlow)
    return {
        "best": any(all(beats(c, o) for o in others) for c in CONTRASTIVE),
        "worst": all(beats(c, barlow) for c in CONTRASTIVE) and all(loses(barlow, o) for o in OTHERS),
        "best_reversed": any(all(loses(c, o) for c in CONTRASTIVE) for o in others),
        "worst_reversed": any(loses(c, barlow) for c in CONTRASTIVE) or any(beats(barlow, o) for o in OTHERS),
    }


def _missing(results: Mapping[str, Any], losses: Sequence[str], budget: int | None, min_seeds: int) -> str | None:
    """Why the in-distribution cells of ``losses`` at ``budget`` cannot be judged, or None."""
    if not results.get("cells"):
        return "no stealing results were saved"
    seeds = list(results.get("seeds") or [])
    if len(seeds) < min_seeds:
        return f"only {len(seeds)} seeds (a judged cell needs {min_seeds})"
    for task in results.get("judged_tasks", []):
        for encoder in ("victim", "random init"):
            got = baseline_values(results, encoder, task)
            if not set(seeds) <= set(got.index):
                return f"the {encoder} baseline on {task} lacks seeds {sorted(set(seeds) - set(got.index))}"
        for loss in losses:
            got = cell_values(results, loss, task, budget=budget)
            if not set(seeds) <= set(got.index):
                where = f"at {budget} queries" if budget is not None else ""
                return f"{loss} on {task} {where} lacks seeds {sorted(set(seeds) - set(got.index))}".replace("  ", " ")
    return None


def _losses_claim(barlow: str) -> str:
    return f"Contrastive losses (InfoNCE, SoftNN) steal best and Barlow Twins worst (Barlow: {PAIRING_NAMES[barlow]})."


def _task_ranking(results: Mapping[str, Any], task: str, losses: Sequence[str]) -> str:
    means = {loss: float(cell_values(results, loss, task).mean()) for loss in losses}
    return ", ".join(f"{k} {v:.1f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]))


def _no_judged_task(claim: str, min_margin: float, paper: str, ours: str) -> Verdict:
    """The verdict when no task has a victim margin to judge against."""
    return Verdict(
        claim,
        f"no judged task where the victim beats random init by {min_margin:g}+ points",
        "not evaluated",
        paper,
        ours,
    )


NAMES = {
    "mse": "MSE",
    "infonce": "InfoNCE",
    "softnn": "SoftNN",
    "supcon": "SupCon",
    "wasserstein": "Wasserstein",
    "barlow": "Barlow",
    "barlow_official": "Barlow",
}
"""Short loss names for the paper at a glance (a claim names the Barlow pairing it judges)."""
NOT_MEASURED = "not measured in this build"


def paper_c1() -> str:
    """The paper's numbers behind claim C1 (its table, in-distribution columns), for the paper at a glance."""
    table = paper_tables.loss_table()[KINDS[0]]
    cells = ", ".join(
        f"{NAMES[loss]} {'/'.join(f'{v:.1f}' for v in table.loc[loss])}"
        for loss in ("softnn", "infonce", "mse", "barlow")
    )
    return f"in-dist. {'/'.join(table.columns)}: {cells} %"


def ours_c1(results: Mapping[str, Any], barlow: str, tasks: Sequence[str] | None = None) -> str:
    """This run's numbers behind claim C1 for one Barlow pairing: per task (the judged ones, else
    every task measured) the best contrastive loss and Barlow, probe accuracy mean [95 % interval]."""
    tasks = list(tasks or results.get("judged_tasks", []))
    parts = []
    for task in tasks:
        values = {loss: cell_values(results, loss, task) for loss in (*CONTRASTIVE, barlow)}
        values = {k: v for k, v in values.items() if len(v)}
        best = max((c for c in CONTRASTIVE if c in values), key=lambda c: values[c].mean(), default=None)
        bits = [f"{NAMES[k]} {_fmt(*_interval(values[k])[:3])}" for k in (best, barlow) if k in values]
        if bits:
            parts.append(f"{task} " + ", ".join(bits))
    return "; ".join(parts) + " %" if parts else NOT_MEASURED


PAPER_C2 = "no number published; authors' blog: contrastive losses need fewer queries than a fifth of the training set"
"""The paper's side of claim C2 (it published no number for it; book/paper_setup.md#setup-stealing-cifar)."""


def ours_c2(results: Mapping[str, Any], fraction: float = FIFTH, tasks: Sequence[str] | None = None) -> str:
    """This run's numbers behind claim C2: the share of the victim's margin the sweep's copies
    recover at its largest budget within ``fraction`` of the training set, per task, mean [95 % interval]."""
    n_train = results.get("victim_num_train")
    if not n_train or not any(b <= fraction * n_train for b in results.get("budgets", [])):
        return f"no sweep budget within {fraction:.0%} of the training set"
    sweep = sweep_table(results)
    if sweep.empty:
        return NOT_MEASURED
    sweep = sweep[sweep.budget <= fraction * n_train]
    if tasks:
        sweep = sweep[sweep.task.isin(list(tasks))]
    if sweep.empty:
        return NOT_MEASURED
    b = int(sweep.budget.max())
    at = sweep[sweep.budget == b]
    cells = ", ".join(
        f"{task} {_fmt(m, lo, hi, 2)}" for task, m, lo, hi in zip(at.task, at.share, at["share low"], at["share high"])
    )
    return f"share of margin at {b:,} queries ({b / n_train:.0%}): {cells}"


def judge_losses(
    results: Mapping[str, Any],
    barlow: str = "barlow",
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
    min_margin: float = MIN_MARGIN,
) -> Verdict:
    """Claim C1, "contrastive losses (InfoNCE, SoftNN) steal best and Barlow Twins worst", for one
    Barlow pairing (``barlow`` or ``barlow_official``; call once per pairing).

    Data: the in-distribution cells at the grid's budget of MSE, InfoNCE, SoftNN, Wasserstein and
    the chosen Barlow pairing (SupCon uses labels and is never judged), probe accuracy, paired by
    seed. Rules:

    * **not evaluated**: a loss, seed or baseline is missing, fewer than ``min_seeds`` seeds, or no
      judged task on which the lower end of the victim's margin interval is ``min_margin`` points
      or more;
    * the comparisons (:func:`comparisons`): per judged task, InfoNCE and SoftNN each against MSE,
      Wasserstein and Barlow, and Barlow against MSE and Wasserstein, each a paired t-test over
      seeds, Holm-corrected at ``alpha`` over all of them; a difference counts only where the test
      rejects (the losses are otherwise "not separable at this scale");
    * "best" holds when, on every judged task, one contrastive loss separably beats MSE,
      Wasserstein and Barlow; "worst" when, on every judged task, Barlow is separably below all four;
      the order is *reversed* on a task where a non-contrastive loss separably beats both
      contrastive losses, or Barlow separably beats one of the others (:func:`c1_parts`);
    * **reproduced**: "best" and "worst" both hold; **not reproduced**: the order is reversed on
      some task, or neither part holds; **partly reproduced**: otherwise (one part holds).
    """
    if barlow not in PAIRINGS:
        raise ValueError(f"Unknown Barlow pairing {barlow!r}. Known: {', '.join(PAIRINGS)}.")
    claim = _losses_claim(barlow)
    judged = ("mse", "infonce", "softnn", "wasserstein", barlow)
    paper = paper_c1()
    why = _missing(results, judged, None, min_seeds)
    if why:
        return Verdict(claim, why, "not evaluated", paper, ours_c1(results, barlow))
    tasks = judged_tasks(results, min_margin)
    if not tasks:
        return _no_judged_task(claim, min_margin, paper, ours_c1(results, barlow))
    comps = comparisons(results, barlow, tasks, alpha)
    parts = {t: c1_parts(comps, t, barlow) for t in tasks}
    best = all(p["best"] for p in parts.values())
    worst = all(p["worst"] for p in parts.values())
    reversed_ = [t for t, p in parts.items() if p["best_reversed"] or p["worst_reversed"]]
    lines = []
    for t in tasks:
        sep = comps[(comps.task == t) & comps.separable]
        listed = "; ".join(
            f"{r.a} {'>' if r.sign > 0 else '<'} {r.b} by {abs(r.difference):.1f}" for r in sep.itertuples()
        )
        lines.append(
            f"{t}: {_task_ranking(results, t, judged)} (% probe, mean of {len(results['seeds'])} seeds); "
            + (f"separable: {listed}" if listed else "no difference separable")
        )
    summary = (
        f"{len(comps)} paired comparisons, Holm-corrected at {alpha:g}; contrastive separably best on "
        f"{sum(p['best'] for p in parts.values())} of {len(tasks)} tasks, Barlow separably worst on "
        f"{sum(p['worst'] for p in parts.values())} of {len(tasks)}"
        + (f"; order reversed on {', '.join(reversed_)}" if reversed_ else "")
        + "; losses untuned (fixed settings)"
    )
    evidence = " | ".join(lines + [summary])
    if best and worst:
        verdict = "reproduced"
    elif reversed_ or not (best or worst):
        verdict = "not reproduced"
    else:
        verdict = "partly reproduced"
    return Verdict(claim, evidence, verdict, paper, ours_c1(results, barlow, tasks))


def comparison_display(results: Mapping[str, Any]) -> pd.DataFrame:
    """The comparisons of both Barlow pairings (:func:`comparisons`) for a page, one row per task
    and pair ("mnistm: infonce − mse"): the paired difference with its 95 % interval, its p-value,
    and whether it is separable within each pairing's Holm family (each family holds 16
    comparisons; "–": not in that family)."""
    headers = {b: f"separable ({'official' if b == 'barlow_official' else 'correct'} pairing)" for b in PAIRINGS}
    families = {b: comparisons(results, b) for b in PAIRINGS if b in results.get("losses", [])}
    families = {b: c for b, c in families.items() if not c.empty}
    if not families:
        return _nothing("task: comparison", ["difference (points)", "p", *headers.values()])
    rows: dict[str, dict[str, str]] = {}
    for barlow, c in families.items():
        for r in c.itertuples():
            row = rows.setdefault(
                f"{r.task}: {r.a} − {r.b}",
                {
                    "difference (points)": _cell(r.difference, r.low, r.high),
                    "p": f"{r.p:.4f}",
                    **{headers[b]: "–" for b in families},
                },
            )
            row[headers[barlow]] = {1: "yes, higher", -1: "yes, lower", 0: "no"}[int(r.sign)]
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.rename_axis("task: comparison")


# ---- claim C2: few queries ----------------------------------------------------------------------------


def sweep_table(results: Mapping[str, Any], metric: str = METRIC) -> pd.DataFrame:
    """Per task and budget of the few-queries sweep: the share of the training set the budget
    is, the accuracy and the share of the victim's margin recovered (means, 95 % intervals)."""
    rows = []
    loss, n_train = results.get("sweep_loss"), results.get("victim_num_train")
    for task in results.get("judged_tasks", []):
        victim, random = (
            baseline_values(results, "victim", task, metric),
            baseline_values(results, "random init", task, metric),
        )
        for b in results.get("budgets", []):
            values = cell_values(results, loss, task, budget=b, metric=metric)
            if values.empty:
                continue
            acc = _interval(values)
            sh = shares(values, victim, random).dropna()
            share = _interval(sh) if len(sh) else (float("nan"),) * 3 + (0,)
            rows.append(
                {
                    "task": task,
                    "budget": int(b),
                    "fraction": b / n_train,
                    "accuracy": acc[0],
                    "accuracy low": acc[1],
                    "accuracy high": acc[2],
                    "share": share[0],
                    "share low": share[1],
                    "share high": share[2],
                    "seeds": acc[3],
                }
            )
    return pd.DataFrame(rows)


def crossing(budgets: Sequence[float], values: Sequence[float], level: float) -> float | None:
    """The budget at which ``values`` (one per budget, budgets increasing) first reach ``level``,
    interpolated linearly in log(budget) between the two budgets around the crossing; the
    smallest budget when the first value already reaches it; None when none does (or is NaN)."""
    for i, (b, v) in enumerate(zip(budgets, values)):
        if v is None or math.isnan(v) or v < level:
            continue
        if i == 0:
            return float(b)
        b0, v0 = budgets[i - 1], values[i - 1]
        if v0 is None or math.isnan(v0):
            return float(b)
        t = (level - v0) / (v - v0)
        return float(math.exp(math.log(b0) + t * (math.log(b) - math.log(b0))))
    return None


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def queries_needed(results: Mapping[str, Any], levels: Sequence[float] = LEVELS) -> pd.DataFrame:
    """Per judged task and level: the queries at which the mean share of the margin reaches the
    level (``estimate``), and the interval of that number read off the 95 % band: where the upper
    band reaches it (``low``) and where the lower band does (``high``; NaN: not within the sweep).
    ``seeds_reaching``: how many seeds' own shares reach it within the sweep."""
    sweep = sweep_table(results)
    cells = _frame(results, "cells")
    rows = []
    for task in results.get("judged_tasks", []):
        s = sweep[sweep.task == task].sort_values("budget") if len(sweep) else sweep
        if s.empty:
            continue
        victim, random = _baselines(results, task)
        per_seed = []
        for seed in results.get("seeds", []):
            sel = cells[
                (cells.loss == results["sweep_loss"])
                & (cells.task == task)
                & (cells.seed == seed)
                & (cells.query_set == results["in_distribution"])
                & cells.budget.isin(results["budgets"])
            ]
            copy = sel.groupby("budget")[METRIC].mean().sort_index()
            if seed in victim.index and seed in random.index and victim[seed] > random[seed]:
                per_seed.append((list(copy.index), ((copy - random[seed]) / (victim[seed] - random[seed])).tolist()))
        b = s["budget"].tolist()
        for level in levels:
            rows.append(
                {
                    "task": task,
                    "level": level,
                    "estimate": _nan(crossing(b, s["share"].tolist(), level)),
                    "low": _nan(crossing(b, s["share high"].tolist(), level)),
                    "high": _nan(crossing(b, s["share low"].tolist(), level)),
                    "seeds_reaching": sum(crossing(bs, sh, level) is not None for bs, sh in per_seed),
                    "seeds": len(per_seed),
                    "largest": max(b),
                }
            )
    return pd.DataFrame(rows)


def _queries_text(q: float | None, n_train: int, largest: int, smallest: int) -> str:
    if q is None or math.isnan(q):
        return f"beyond {largest:,} ({largest / n_train:.0%})"
    if q <= smallest:
        return f"at most {smallest:,}"
    return f"{q:,.0f}"


def queries_display(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`queries_needed` for a page, one row per task and level ("mnistm: 50%"): the queries
    at which the mean share reaches the level, the interval read off the 95 % band, and how many
    seeds reach it within the sweep."""
    columns = ["queries (mean)", "interval: from", "interval: to", "seeds reaching it"]
    q = queries_needed(results)
    if q.empty:
        return _nothing("task: share of margin", columns)
    n, smallest = results["victim_num_train"], min(results["budgets"])
    out = {}
    for r in q.itertuples():
        out[f"{r.task}: {r.level:.0%}"] = {
            "queries (mean)": _queries_text(r.estimate, n, r.largest, smallest),
            "interval: from": _queries_text(r.low, n, r.largest, smallest),
            "interval: to": _queries_text(r.high, n, r.largest, smallest),
            "seeds reaching it": f"{r.seeds_reaching} of {r.seeds}",
        }
    return pd.DataFrame.from_dict(out, orient="index")[columns].rename_axis("task: share of margin")


def judge_few_queries(
    results: Mapping[str, Any],
    levels: tuple[float, float] = LEVELS,
    fraction: float = FIFTH,
    min_seeds: int = MIN_SEEDS,
    min_margin: float = MIN_MARGIN,
) -> Verdict:
    """Claim C2, "stealing with fewer queries than a fifth of the victim's training set gets
    close", from the few-queries sweep (one loss, ``results['sweep_loss']``).

    Per judged task and budget, the share of the victim's margin the copies recover is averaged
    over seeds, with its 95 % interval (:func:`sweep_table`); only budgets of at most ``fraction``
    of the victim's training set count. A level is *reached* on a task when the interval's lower
    end reaches it at one of those budgets ("interval included"). Rules:

    * **not evaluated**: a seed, baseline or sweep cell is missing, fewer than ``min_seeds`` seeds,
      no sweep budget within ``fraction`` of the training set, or no judged task (victim's margin
      interval below ``min_margin`` points on every task);
    * **reproduced**: the higher level (80 %) is reached on every judged task;
    * **partly reproduced**: otherwise, the lower level (50 %) is reached on every judged task;
    * **not reproduced**: otherwise.
    """
    low_level, high_level = levels
    claim = "Stealing with fewer queries than a fifth of the victim's training set gets close to the victim."
    n_train = results.get("victim_num_train")
    budgets = [b for b in results.get("budgets", []) if n_train and b <= fraction * n_train]
    ours = ours_c2(results, fraction)
    if not budgets:
        return Verdict(
            claim, f"no sweep budget within {fraction:.0%} of the training set", "not evaluated", PAPER_C2, ours
        )
    for b in budgets:
        why = _missing(results, (results["sweep_loss"],), b, min_seeds)
        if why:
            return Verdict(claim, why, "not evaluated", PAPER_C2, ours)
    tasks = judged_tasks(results, min_margin)
    if not tasks:
        return _no_judged_task(claim, min_margin, PAPER_C2, ours)
    sweep = sweep_table(results)
    sweep = sweep[sweep.budget.isin(budgets)]
    reached: dict[float, list[bool]] = {low_level: [], high_level: []}
    lines = []
    for task in tasks:
        s = sweep[sweep.task == task].sort_values("budget")
        b, lo = s["budget"].tolist(), s["share low"].tolist()
        parts = []
        for level in levels:
            at = crossing(b, lo, level)
            reached[level].append(at is not None)
            parts.append(
                f"{level:.0%} of the margin: "
                + (f"interval above it from {at:,.0f} queries" if at is not None else "not reached within the sweep")
            )
        top = s.iloc[-1]
        lines.append(
            f"{task}: at {int(top.budget):,} queries ({top.fraction:.0%}) the copies recover "
            f"{top.share:.0%} of the margin [{top['share low']:.0%}, {top['share high']:.0%}]; " + "; ".join(parts)
        )
    evidence = (
        f"{results['sweep_loss']} copies, {len(results['seeds'])} seeds, budgets {', '.join(map(str, budgets))} "
        f"of {n_train:,} training images | " + " | ".join(lines)
    )
    if all(reached[high_level]):
        verdict = "reproduced"
    elif all(reached[low_level]):
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    return Verdict(claim, evidence, verdict, PAPER_C2, ours_c2(results, fraction, tasks))


# ---- the paper's table and the sentences of the chapter --------------------------------------------------


PAPER_ROWS = {"barlow_official": "barlow"}
"""Rows of ours whose paper number is another row's: the paper's table has one Barlow Twins row
(which pairing its code used is this book's inference), shown beside both pairings."""
KINDS = ("in-distribution", "out-of-distribution")
"""The paper's two column pairs (their reading is an assumption, book/paper_setup.md#setup-unverified)."""


def paper_losses(results: Mapping[str, Any]) -> list[str]:
    """The rows of the paper comparison: the paper's losses, then those only this run has."""
    return list(dict.fromkeys([*paper_tables.loss_table().index, *results.get("losses", [])]))


def _ranked(values: pd.Series) -> list[str]:
    """Each value as "accuracy (rank)" (rank 1 = best of the column), n/a where missing."""
    ranks = values.rank(ascending=False, method="min")
    return [tables.NA if pd.isna(v) else f"{v:.1f} ({int(r)})" for v, r in zip(values, ranks, strict=True)]


def paper_comparison(results: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The paper's loss table beside ours, one table per kind of queries (:data:`KINDS`), each
    cell "accuracy (rank)" (rank 1 = best in its column): the paper's two downstream columns, then
    ours (mean probe accuracy over seeds, one column per task; the first query set for
    in-distribution, the last for out-of-distribution). The paper's Barlow Twins row stands beside
    both of our pairings (:data:`PAPER_ROWS`); n/a: a loss this run did not steal with (or no
    out-of-distribution query set). Reading of the paper's column pairs (an assumption,
    book/paper_setup.md#setup-unverified): left pair in-distribution queries, right pair
    out-of-distribution queries against the same CIFAR10 victim."""
    paper = paper_tables.loss_table()
    losses = paper_losses(results)
    run = results.get("losses", [])
    query_sets = results.get("query_sets") or [results["in_distribution"]]
    out = {}
    for kind in KINDS:
        table: dict[str, list[str]] = {}
        for task in paper[kind].columns:
            column = paper[(kind, task)]
            values = pd.Series([column.get(PAPER_ROWS.get(loss, loss), np.nan) for loss in losses], index=losses)
            table[f"paper: {task}"] = _ranked(values)
        qs = query_sets[0] if kind == KINDS[0] else (query_sets[-1] if len(query_sets) > 1 else None)
        for task in results.get("judged_tasks", []):
            values = pd.Series(
                [
                    float(cell_values(results, loss, task, qs).mean()) if qs and loss in run else np.nan
                    for loss in losses
                ],
                index=losses,
                dtype=float,
            )
            table[f"ours ({qs or 'not run'}): {task}"] = _ranked(values)
        out[kind] = pd.DataFrame(table, index=pd.Index(losses, name="loss"))
    return out


REFERENCE = "mse"
"""The loss every other is compared with in the paper-vs-ours figure (the paper's first row)."""


def differences_to_mse(results: Mapping[str, Any], metric: str = METRIC) -> pd.DataFrame:
    """Per task and loss (in-distribution queries, the grid's budget): the loss's accuracy minus
    MSE's, paired by seed; ``difference`` is the mean, ``low``/``high`` the 95 % interval (NaN with
    a single common seed), ``seeds`` the seeds both have. Empty when MSE was not run."""
    columns = ["task", "loss", "difference", "low", "high", "seeds"]
    rows = []
    for task in results.get("judged_tasks", []):
        ref = cell_values(results, REFERENCE, task, metric=metric)
        for loss in results.get("losses", []):
            x = cell_values(results, loss, task, metric=metric)
            seeds = x.index.intersection(ref.index)
            if loss == REFERENCE or len(seeds) == 0:
                continue
            if len(seeds) == 1:
                d = float(x[seeds].iloc[0] - ref[seeds].iloc[0])
                rows.append([task, loss, d, np.nan, np.nan, 1])
                continue
            diff, _ = paired_difference(x[seeds].to_numpy(), ref[seeds].to_numpy())
            rows.append([task, loss, diff.mean, diff.low, diff.high, len(seeds)])
    return pd.DataFrame(rows, columns=columns)


def paper_differences_to_mse(kind: str = KINDS[0]) -> pd.DataFrame:
    """The paper's accuracy of each loss minus MSE's (points), per downstream column of one kind
    of queries (rows: losses, MSE excluded)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown kind of queries {kind!r}. Known: {', '.join(KINDS)}.")
    table = paper_tables.loss_table()[kind]
    return table.sub(table.loc[REFERENCE]).drop(index=REFERENCE)


def _span(values: Sequence[float]) -> str:
    """A signed value, or the range of several ("−0.2 to +2.3")."""
    lo, hi = min(values), max(values)
    return f"{lo:+.1f}" if round(lo, 1) == round(hi, 1) else f"{lo:+.1f} to {hi:+.1f}"


def paper_vs_ours_text(results: Mapping[str, Any]) -> str:
    """The paper's and this run's accuracies relative to MSE (in-distribution queries) in a
    sentence: the contrastive losses and each Barlow pairing, the paper's range over its two
    downstream columns and ours over the tasks (means over seeds, paired)."""
    paper = paper_differences_to_mse()
    contrastive = [c for c in CONTRASTIVE if c in paper.index]
    text = (
        f"Relative to MSE, with in-distribution queries, the paper's contrastive losses score "
        f"{_span(paper.loc[contrastive].to_numpy().ravel())} points and its Barlow Twins "
        f"{_span(paper.loc['barlow'].tolist())} points. "
    )
    ours = differences_to_mse(results)
    if ours.empty:
        return text + "This build did not steal with MSE and another loss on common seeds: nothing to set beside them."
    parts = []
    mine = ours[ours.loss.isin(CONTRASTIVE)]
    if len(mine):
        parts.append(f"the contrastive losses score {_span(mine.difference.tolist())} points")
    for barlow in PAIRINGS:
        sel = ours[ours.loss == barlow]
        if len(sel):
            pairing = PAIRING_NAMES[barlow].split(" (")[0]
            parts.append(f"Barlow Twins with the {pairing} scores {_span(sel.difference.tolist())} points")
    if not parts:
        return text + "This build ran none of the contrastive or Barlow Twins losses beside MSE."
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    where = f"{results['in_distribution']} queries, means over seeds paired with MSE's, over the tasks"
    return text + f"Here ({where}), {listed}."


def _is_sep(comps: pd.DataFrame, task: str, a: str, b: str) -> tuple[int, pd.Series | None]:
    sel = comps[(comps.task == task) & (comps.a == a) & (comps.b == b)]
    return (int(sel["sign"].iloc[0]), sel.iloc[0]) if len(sel) else (0, None)


def barlow_pairing_text(results: Mapping[str, Any], alpha: float = ALPHA) -> str:
    """What this run says about the paper's very low Barlow Twins numbers: per judged task, the
    official pairing minus the correct one (paired over seeds, Holm over tasks), and whether each
    pairing is separably the worst label-free loss (:func:`judge_losses`' comparisons)."""
    tasks = judged_tasks(results)
    if not tasks or any(b not in results.get("losses", []) for b in PAIRINGS):
        return "Both Barlow pairings are needed on a judged task to compare them; this run has not got them."
    rows = []
    for task in tasks:
        x, y = cell_values(results, "barlow_official", task), cell_values(results, "barlow", task)
        seeds = x.index.intersection(y.index)
        if len(seeds) < 2:
            return "Fewer than two seeds of each Barlow pairing: they cannot be compared."
        diff, pvalue = paired_difference(x[seeds].to_numpy(), y[seeds].to_numpy())
        rows.append((task, diff, pvalue))
    rejected = holm([r[2] for r in rows], alpha)
    worst = {b: [c1_parts(comparisons(results, b, tasks, alpha), t, b)["worst"] for t in tasks] for b in PAIRINGS}
    parts = []
    for (task, diff, _), sep in zip(rows, rejected):
        word = ("separably lower than" if diff.mean < 0 else "separably higher than") if sep else "not separable from"
        parts.append(
            f"on {task} the official pairing is {word} the correct one ({diff.mean:+.1f} points, "
            f"95 % interval {diff.low:+.1f} to {diff.high:+.1f})"
        )
    lower_everywhere = all(sep and r[1].mean < 0 for r, sep in zip(rows, rejected))
    official_worst, correct_worst = all(worst["barlow_official"]), all(worst["barlow"])
    text = "Here, " + "; ".join(parts) + ". "
    worst_sentence = {
        (True, True): "Both pairings are separably the worst label-free loss on every judged task. ",
        (True, False): "The official pairing is separably the worst label-free loss on every judged task; "
        "the correct pairing is not. ",
        (False, True): "The correct pairing is separably the worst label-free loss on every judged task; "
        "the official pairing is not. ",
        (False, False): "Neither pairing is separably the worst label-free loss on every judged task. ",
    }
    text += worst_sentence[(official_worst, correct_worst)]
    if lower_everywhere and official_worst and not correct_worst:
        text += (
            "So this run shows the same kind of gap as the paper's table for the official pairing only: it supports "
            "reading the paper's low Barlow numbers as an effect of the official pairing (still an inference)."
        )
    else:
        text += (
            "So this run does not single out the official pairing as the cause of a gap like the paper's: "
            "it neither supports nor refutes that explanation at this scale."
        )
    return text


def ood_text(results: Mapping[str, Any]) -> str:
    """The out-of-distribution copies (not judged): the range of the label-free losses' shares of
    the victim's margin per judged task, and SupCon against the best label-free loss."""
    query_sets = results.get("query_sets", [])
    if len(query_sets) < 2:
        return "No out-of-distribution query set was run."
    qs, n, parts = query_sets[-1], len(results.get("shown_seeds", [])), []
    for task in results.get("judged_tasks", []):
        victim, random = _baselines(results, task)
        free = {}
        for loss in results.get("losses", []):
            values = cell_values(results, loss, task, qs)
            if loss in LABEL_FREE and len(values):
                free[loss] = (float(values.mean()), float(shares(values, victim, random).mean()))
        if not free:
            continue
        best = max(free, key=lambda k: free[k][0])
        known = [v[1] for v in free.values() if not math.isnan(v[1])]
        if known:
            low, high = min(known), max(known)
            below = ", a negative share meaning below the random-init encoders" if low < 0 else ""
            text = (
                f"on {task}, the label-free copies recover between {low:.0%} and {high:.0%} of the victim's margin "
                f"(best: {best}, {free[best][0]:.1f} %{below})"
            )
        else:
            text = (
                f"on {task}, the victim has no margin over the random-init encoder of the shown seed, so no share "
                f"is computed (best label-free copy: {best}, {free[best][0]:.1f} %)"
            )
        sup = cell_values(results, "supcon", task, qs)
        if len(sup):
            text += f", SupCon {float(sup.mean()):.1f} %"
        parts.append(text)
    if not parts:
        return "No out-of-distribution copy was evaluated."
    return f"With {qs} queries ({n} seed{'s' if n != 1 else ''}, not judged): " + "; ".join(parts) + "."


def margin_text(results: Mapping[str, Any]) -> str:
    """The victim's margin over the random-init encoders on each judged task, and which tasks judge."""
    m = margin_table(results)
    if m.empty:
        return "No baseline was measured."
    parts = [
        f"on {t} the victim scores {r.victim:.1f} % and the random-init encoders {r['random init']:.1f} % "
        f"(margin {r.margin:.1f} points, 95 % interval {r['margin low']:.1f} to {r['margin high']:.1f})"
        for t, r in m.iterrows()
    ]
    judged = [t for t in m.index if m.loc[t, "judged"]]
    tail = (
        f"Tasks judged (margin's lower end at least {MIN_MARGIN:g} points): {', '.join(judged)}."
        if judged
        else f"No task has a margin whose lower end reaches {MIN_MARGIN:g} points: nothing is judged."
    )
    return "With the full probe, " + "; ".join(parts) + ". " + tail


def separability_text(results: Mapping[str, Any]) -> str:
    """Per Barlow pairing and judged task: which loss is separably best or worst, or that the
    losses are not separable at this scale."""
    tasks = judged_tasks(results)
    if not tasks:
        return "No task is judged, so no loss is called best or worst."
    out = []
    for barlow in PAIRINGS:
        if barlow not in results.get("losses", []):
            continue
        comps = comparisons(results, barlow, tasks)
        if comps.empty:
            continue
        for task in tasks:
            parts = c1_parts(comps, task, barlow)
            n_sep = int(comps[(comps.task == task)].separable.sum())
            n_all = int((comps.task == task).sum())
            if parts["best"] and parts["worst"]:
                s = "a contrastive loss is separably best and Barlow separably worst"
            elif parts["best"]:
                s = "a contrastive loss is separably best; Barlow is not separably worst"
            elif parts["worst"]:
                s = "Barlow is separably worst; no contrastive loss is separably best"
            elif n_sep == 0:
                s = "the losses are not separable at this scale"
            else:
                s = "neither a contrastive loss is separably best nor Barlow separably worst"
            if parts["best_reversed"] or parts["worst_reversed"]:
                s += " (the claimed order is reversed in a separable comparison)"
            out.append(f"with {barlow} on {task}: {s} ({n_sep} of {n_all} comparisons separable)")
    if not out:
        return "The losses needed for the comparisons were not all run."
    return "After Holm's correction, " + "; ".join(out) + "."


def few_queries_text(results: Mapping[str, Any]) -> str:
    """The queries the sweep's copies need to recover 50 % and 80 % of the victim's margin."""
    q = queries_needed(results)
    if q.empty:
        return "The few-queries sweep has no results."
    smallest = min(results["budgets"])
    parts = []
    for task in dict.fromkeys(q.task):
        sub = q[q.task == task]
        bits = []
        for r in sub.itertuples():
            if math.isnan(r.estimate):
                bits.append(f"the mean never reaches {r.level:.0%} of the margin within {r.largest:,} queries")
                continue
            where = (
                f"already at the smallest budget ({smallest:,} queries)"
                if r.estimate <= smallest
                else f"at {r.estimate:,.0f} queries"
            )
            lo = f"{smallest:,} or fewer" if math.isnan(r.low) or r.low <= smallest else f"{r.low:,.0f}"
            hi = f"beyond {r.largest:,}" if math.isnan(r.high) else f"{r.high:,.0f}"
            bits.append(f"the mean reaches {r.level:.0%} of the margin {where} (95 % band: {lo} to {hi} queries)")
        parts.append(f"on {task}, " + ", ".join(bits))
    return f"With {results['sweep_loss']} copies, " + "; ".join(parts) + "."


def design_numbers(results: Mapping[str, Any]) -> dict[str, float]:
    """The design's numbers the chapter's prose states (glued as ``losses_<name>``)."""
    n, budgets = results["victim_num_train"], results["budgets"]
    return {
        f"losses_{k}": float(v)
        for k, v in {
            "n_train": n,
            "budget": results["budget"],
            "budget_pct": 100 * results["budget"] / n,
            "pool": results["pool_sizes"][results["in_distribution"]],
            "n_seeds": len(results["seeds"]),
            "n_shown": len(results["shown_seeds"]),
            "epochs": results["epochs"],
            "victim_seconds": results["victim_seconds"],
            "sweep_n": len(budgets),
            "sweep_min_pct": 100 * min(budgets) / n,
            "sweep_max_pct": 100 * max(budgets) / n,
            "per_class": results["few_label_per_class"],
            "seconds": results["seconds"],
        }.items()
    }


def verdict_text(v: Verdict) -> str:
    """A verdict as a sentence for the chapter."""
    return f"**{v.verdict.capitalize()}**: {v.claim} Evidence: {v.evidence}."


# ---- figures -----------------------------------------------------------------------------------------


def plot_losses(results: Mapping[str, Any]) -> Figure:
    """Per judged task: each loss's probe accuracy (mean and 95 % interval over seeds,
    in-distribution queries), with the victim and the random-init encoders."""
    import matplotlib.pyplot as plt

    table = loss_table(results)
    tasks = list(dict.fromkeys(table.columns.get_level_values(0))) if not table.empty else []
    n = max(len(tasks), 1)
    fig, axes = plt.subplots(1, n, figsize=(min(9.0, 4.5 * n), max(3.2, 1.6 + 0.35 * len(table))), squeeze=False)
    margins = margin_table(results)
    for ax, task in zip(axes[0], tasks):
        t = table[task].dropna(subset=["mean"])
        y = np.arange(len(t))
        err = np.vstack([t["mean"] - t["low"], t["high"] - t["mean"]]).clip(min=0)
        ax.errorbar(t["mean"], y, xerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3, label="copies")
        ax.set_yticks(y, t.index)
        ax.invert_yaxis()
        if task in margins.index:
            ax.axvline(margins.loc[task, "victim"], color="k", ls="--", lw=1, label="victim")
            ax.axvspan(
                margins.loc[task, "random low"],
                margins.loc[task, "random high"],
                color="grey",
                alpha=0.25,
                label="random init (95 % interval)",
            )
            ax.axvline(margins.loc[task, "random init"], color="grey", lw=1)
        ax.set_xlabel(f"probe accuracy on {task} (%)")
        ax.set_title(f"{task}: {results['budget']} {results['in_distribution']} queries", fontsize=10)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


def plot_sweep(results: Mapping[str, Any]) -> Figure:
    """Share of the victim's margin recovered against the number of queries (mean and 95 %
    interval over seeds), per judged task, with the 50 % and 80 % levels and a fifth of the
    victim's training set."""
    import matplotlib.pyplot as plt

    sweep = sweep_table(results)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for k, task in enumerate(dict.fromkeys(sweep.task) if len(sweep) else []):
        s = sweep[sweep.task == task].sort_values("budget")
        ax.plot(s["budget"], s["share"], marker="o", color=f"C{k}", label=task)
        ax.fill_between(s["budget"], s["share low"], s["share high"], color=f"C{k}", alpha=0.2)
    for level in LEVELS:
        ax.axhline(level, color="k", ls=":", lw=1)
        ax.text(1.01, level, f"{level:.0%}", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
    fifth = FIFTH * results["victim_num_train"]
    ax.axvline(fifth, color="k", ls="--", lw=1, label=f"a fifth of the training set ({fifth:,.0f})")
    ax.set_xscale("log")
    ax.set_xlabel(f"queries ({results['sweep_loss']}, {results['in_distribution']})")
    ax.set_ylabel("share of the victim's margin recovered")
    ax.set_title("Share of the victim's margin against queries (95 % intervals over seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_paper_vs_ours(results: Mapping[str, Any]) -> Figure:
    """Each loss's accuracy relative to MSE's (points), in-distribution queries: left, the
    paper's (its table, both downstream columns; its one Barlow Twins row beside both pairings);
    right, this book's (paired difference over seeds with its 95 % interval per task; an open
    marker: a single seed, no interval). The x scales differ: the panels compare orders and signs."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    paper = paper_differences_to_mse()
    ours = differences_to_mse(results)
    losses = [loss for loss in paper_losses(results) if loss != REFERENCE]
    y = {loss: k for k, loss in enumerate(losses)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.2 + 0.4 * len(losses)), sharey=True)

    def shift(k: int, n: int) -> float:
        return 0.3 * (k - (n - 1) / 2) / max(n - 1, 1)

    columns = list(paper.columns)
    for k, task in enumerate(columns):
        rows = [(loss, paper.loc[PAPER_ROWS.get(loss, loss), task]) for loss in losses]
        rows = [(loss, v) for loss, v in rows if not pd.isna(v)]
        left.plot(
            [v for _, v in rows],
            [y[loss] + shift(k, len(columns)) for loss, _ in rows],
            "s",
            color=f"C{k + 2}",
            label=f"paper (its table): {task} probe",
        )
    left.set_title(f"paper (its table): CIFAR10 victim, {KINDS[0]} queries", fontsize=9)
    tasks = list(dict.fromkeys(ours.task)) if len(ours) else []
    judged = set(judged_tasks(results))
    for k, task in enumerate(tasks):
        sel = ours[ours.task == task]
        full, one = sel[sel.seeds >= 2], sel[sel.seeds < 2]
        err = np.vstack([full.difference - full.low, full.high - full.difference]).clip(min=0)
        right.errorbar(
            full.difference,
            [y[loss] + shift(k, len(tasks)) for loss in full.loss],
            xerr=err,
            fmt="o",
            color=f"C{k}",
            capsize=3,
            label=f"this book: {task} probe" + ("" if task in judged else " (not judged)"),
        )
        right.plot(
            one.difference, [y[loss] + shift(k, len(tasks)) for loss in one.loss], "o", mfc="none", color=f"C{k}"
        )
    handles, _ = right.get_legend_handles_labels()
    if len(ours) and (ours.seeds < 2).any():
        handles.append(Line2D([], [], marker="o", mfc="none", color="grey", ls="", label="one seed: no interval"))
    if not tasks:
        right.text(
            0.5,
            0.5,
            "this build has no loss paired\nwith MSE on common seeds",
            transform=right.transAxes,
            ha="center",
            va="center",
            fontsize=9,
        )
    right.set_title(f"this book: {results['in_distribution']} queries, 95 % intervals", fontsize=9)
    for ax in (left, right):
        ax.axvline(0, color="k", lw=1, ls="--")
        ax.set_xlabel("accuracy minus MSE's (points; dashed: MSE)")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7, frameon=False)
    if handles:
        right.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7, frameon=False)
    left.set_yticks(range(len(losses)), losses)
    left.set_ylim(len(losses) - 0.5, -0.5)
    fig.tight_layout()
    return fig
