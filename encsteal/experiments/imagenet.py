"""Chapter 3, stealing a pre-trained ImageNet encoder (arXiv:2205.07890, "Stealing a pre-trained
ImageNet encoder"): the baselines, the steal grid, and the tables, numbers and figures the chapter shows.

Long tables (one row per model, downstream task and seed, the metrics of
:func:`encsteal.experiments.downstream.evaluate`) are built by :func:`baselines` and
:func:`steal_grid`; the tables a reader sees are made from them (:func:`baseline_table`,
:func:`copies_table`, :func:`share_table`) and from the paper's table (:func:`paper_table`,
:func:`paper_share_table`), each with its own columns: the paper's downstream sets and ours differ,
so the two are never forced into one grid. :func:`plot_share` sets them side by side as a figure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from torch import nn

from encsteal.api import EncoderAPI
from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.data.transforms import adapt_imageset
from encsteal.experiments.downstream import Downstream, evaluate, prepare_downstream
from encsteal.experiments.losses import steal_and_evaluate
from encsteal.models import build_encoder
from encsteal.probe import pixel_features, probe_features
from encsteal.stats import mean_interval
from encsteal.tables import interval_table

VICTIM = "victim (EfficientNet-Lite0, supervised ImageNet)"
RANDOM = "random init (quick CNN)"
PIXELS = "raw pixels"
PAPER_VICTIM = "victim"
"""Row labels: our victim, a random copy architecture, the pixel baseline; the paper's victim row."""

COPY_CHANNELS, COPY_SIZE = 3, 32
"""The stolen copy's input: the quick CNN on RGB images at 32 px."""

PAPER_COLUMNS: dict[str, str] = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "stl10": "STL10",
    "svhn": "SVHN",
    "fmnist": "F-MNIST",
}
"""Our data set names and the paper's names for the same sets (one colour per set in :func:`plot_share`)."""

BASELINE_COLUMNS: dict[str, str] = {VICTIM: "victim (%)", RANDOM: "random-init CNN (%)", PIXELS: "raw pixels (%)"}
"""Column headers of :func:`baseline_table` (the caption names the models in full)."""


def downstream_tasks(
    victim: nn.Module, names: Sequence[str], sizes: Mapping[str, int], per_class: int, seed: int, Cs: Sequence[float]
) -> list[Downstream]:
    """One :class:`Downstream` per data set in ``names``, with the victim's features and probe."""
    return [prepare_downstream(name, victim, sizes, per_class, seed, tuple(Cs)) for name in names]


def query_pools(
    names: Sequence[str], sizes: Mapping[str, int], budgets: Sequence[int], seed: int
) -> dict[str, ImageSet]:
    """Each query set's ``max(budgets)`` query images, disjoint from its probe splits (same
    ``sizes`` and ``seed`` as :func:`downstream_tasks`), adapted to the copy's input."""
    split = {**sizes, "query": max(budgets)}
    return {
        name: adapt_imageset(role_splits(name, split, seed=seed)["query"], COPY_CHANNELS, COPY_SIZE) for name in names
    }


def reference_encoders(seed: int) -> dict[str, nn.Module | None]:
    """The baseline encoders by row label: the victim itself (None) and the copy's architecture at
    a seeded random initialisation."""
    torch.manual_seed(seed)
    return {VICTIM: None, RANDOM: build_encoder("convnet", COPY_CHANNELS, COPY_SIZE)}


def pixel_row(task: Downstream) -> dict[str, float | str]:
    """The raw-pixel baseline on ``task``: all-label probe, k-NN and few-label probe accuracies (%)."""
    pixels = {r: pixel_features(task.splits[r]) for r in task.splits}
    few = probe_features(pixels, task.splits, per_class=task.per_class, Cs=task.Cs)
    full = probe_features(pixels, task.splits, Cs=task.Cs)
    return {
        "model": PIXELS,
        "downstream": task.name,
        "probe": 100 * full.accuracy,
        "knn": 100 * full.knn_accuracy,
        "few_label": 100 * few.accuracy,
    }


def baselines(tasks: Sequence[Downstream], references: Mapping[str, nn.Module | None]) -> pd.DataFrame:
    """One row per (reference encoder, task), then the raw-pixel rows (:func:`pixel_row`)."""
    rows = [
        {"model": name, "downstream": t.name, **evaluate(enc, t)} for name, enc in references.items() for t in tasks
    ]
    return pd.DataFrame(rows + [pixel_row(t) for t in tasks])


def baseline_table(base: pd.DataFrame) -> pd.DataFrame:
    """The baselines for readers: a row per (downstream set, labels), ``all labels`` (the probe on
    every probe label) then ``few labels`` (``few_label``), a column per baseline
    (:data:`BASELINE_COLUMNS`); probe accuracy (%) in the cells, as numbers."""
    missing = [m for m in BASELINE_COLUMNS if m not in set(base["model"])]
    if missing:
        raise ValueError(
            f"The baselines lack the rows {missing}; they come from encsteal.experiments.imagenet.baselines."
        )
    rows = {}
    for task in dict.fromkeys(base["downstream"]):
        for metric, labels in (("probe", "all labels"), ("few_label", "few labels")):
            rows[f"{task}, {labels}"] = {
                col: baseline_value(base, m, task, metric) for m, col in BASELINE_COLUMNS.items()
            }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("downstream set, probe labels")


def model_label(query_set: str, budget: int, loss: str) -> str:
    """The row label of a copy stolen with ``budget`` queries from ``query_set`` with ``loss``."""
    return f"stolen, {budget} {query_set} queries ({loss})"


def steal_grid(
    api: EncoderAPI,
    pools: Mapping[str, ImageSet],
    tasks: Sequence[Downstream],
    budgets: Sequence[int],
    losses: Sequence[str],
    seeds: Sequence[int],
    epochs: int,
    device: str = "auto",
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Steal with every (query set, budget, loss, seed), in that order, and evaluate each copy on
    every task: one row per (copy, task), labelled by :func:`model_label` in ``model`` (the seeds of
    a label differ in the copy's initial weights and batch order; the queries are the same)."""
    if not seeds:
        raise ValueError("steal_grid needs at least one seed.")
    jobs = [(qs, budget, loss, seed) for qs in pools for budget in budgets for loss in losses for seed in seeds]
    rows: list[dict] = []
    for qs, budget, loss, seed in jobs:
        found = steal_and_evaluate(
            api,
            pools[qs],
            loss,
            budget,
            seed,
            epochs,
            tasks,
            device=device,
            loss_params=(loss_settings or {}).get(loss),
        )
        rows += [{**row, "model": model_label(qs, budget, loss)} for row in found]
    return pd.DataFrame(rows)


def _in_order(table: pd.DataFrame, columns: Sequence[str], suffix: str) -> pd.DataFrame:
    """``table``'s columns in the order ``columns``, each header followed by ``suffix``."""
    return table[list(columns)].rename(columns=lambda c: f"{c}{suffix}")


def copies_table(grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """The copies for readers: a row per copy (:func:`model_label`), a column per downstream set,
    ``metric`` (%) as mean [95 % t interval] over the seeds in each cell (one seed: its value)."""
    if grid.empty:
        raise ValueError("No stolen copies: the grid is empty.")
    table = interval_table(grid, "model", "downstream", metric)
    return _in_order(table, list(dict.fromkeys(grid["downstream"])), " (%)").rename_axis("copy")


def victim_shares(base: pd.DataFrame, grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """``grid`` with a column ``share``: each copy's ``metric`` as % of the victim's on the same
    downstream set (:data:`VICTIM`'s row of ``base``)."""
    victim = {t: baseline_value(base, VICTIM, t, metric) for t in dict.fromkeys(grid["downstream"])}
    return grid.assign(share=100 * grid[metric] / grid["downstream"].map(victim))


def share_table(base: pd.DataFrame, grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """Our copies as a share of our victim: a row per copy, a column per downstream set, the
    share (%) as mean [95 % t interval] over the seeds (:func:`victim_shares`)."""
    shares = victim_shares(base, grid, metric)
    table = interval_table(shares, "model", "downstream", "share")
    return _in_order(table, list(dict.fromkeys(grid["downstream"])), " (% of victim)").rename_axis("copy")


def paper_table(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's accuracies (%) as it printed them (``90.33``, ``94.9``), headers with their unit."""
    return paper.map(lambda v: f"{v:g}").rename(columns=lambda c: f"{c} (%)")


def relative_to_victim(table: pd.DataFrame, victim: str) -> pd.DataFrame:
    """Every row of ``table`` as a percentage of its ``victim`` row, column by column."""
    if victim not in table.index:
        raise ValueError(f"No victim row {victim!r}; rows are {list(table.index)}.")
    return 100 * table / table.loc[victim]


def paper_share_table(paper: pd.DataFrame, victim: str = PAPER_VICTIM) -> pd.DataFrame:
    """The paper's copies as a share (%) of the paper's victim, a column per its downstream set
    (numbers; the victim's own row, 100 everywhere, left out)."""
    shares = relative_to_victim(paper, victim).drop(index=victim)
    return shares.rename(columns=lambda c: f"{c} (% of victim)").rename_axis("copy")


_COPY = re.compile(r"^stolen, (?P<what>.+?) queries(?P<tail>.*)$")


def copy_short(label: str) -> str:
    """A copy's label without its frame: ``"stolen, 50K CIFAR10 queries"`` -> ``"50K CIFAR10"``,
    ``"stolen, 500 mnistm queries (mse)"`` -> ``"500 mnistm (mse)"``; other labels unchanged."""
    found = _COPY.match(label)
    return f"{found['what']}{found['tail']}" if found else label


def share_points(paper: pd.DataFrame, base: pd.DataFrame, grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """The points of :func:`plot_share`, long: one row per (``source``: ``paper`` or ``ours``,
    copy, downstream set) with the share (%) of that side's victim, its 95 % t interval over seeds
    (``low``/``high``; the paper's single numbers and single seeds have none: equal to the mean)
    and the number of seeds ``n``. ``color_key``: the set's paper name where the paper has it."""
    rows = []
    for copy, shares in relative_to_victim(paper, PAPER_VICTIM).drop(index=PAPER_VICTIM).iterrows():
        for task, value in shares.items():
            rows.append(
                {"source": "paper", "copy": copy_short(str(copy)), "downstream": task, "share": value}
                | {"low": value, "high": value, "n": 1, "color_key": task}
            )
    ours = victim_shares(base, grid, metric)
    for (copy, task), g in ours.groupby(["model", "downstream"], sort=False):
        values = g["share"].dropna().to_numpy(dtype=float)
        if len(values) >= 2 and values.max() > values.min():
            iv = mean_interval(values)
            mean, low, high = iv.mean, iv.low, iv.high
        else:
            mean = low = high = float(values.mean()) if len(values) else math.nan
        rows.append(
            {"source": "ours", "copy": copy_short(str(copy)), "downstream": task, "share": mean}
            | {"low": low, "high": high, "n": len(values), "color_key": PAPER_COLUMNS.get(task, task)}
        )
    return pd.DataFrame(rows)


PAPER_PANEL = "paper (its table): SimSiam ResNet-50, 50K-250K queries"
OURS_PANEL = "ours: EfficientNet-Lite0 victim, quick-CNN copies"
"""Panel titles of :func:`plot_share`."""


def plot_share(paper: pd.DataFrame, base: pd.DataFrame, grid: pd.DataFrame, metric: str = "probe") -> Figure:
    """Paper vs ours: each copy's probe accuracy as % of its own victim, one panel per side
    (:data:`PAPER_PANEL`, :data:`OURS_PANEL`), a column of markers per copy (query set, budget),
    one colour per downstream set (the same colour for a set both sides evaluate), our markers with
    their 95 % t interval over seeds; a dashed line at 100 % (the victim)."""
    points = share_points(paper, base, grid, metric)
    keys = list(dict.fromkeys(points["color_key"]))
    palette = dict(zip(keys, sns.color_palette("colorblind", len(keys)), strict=True))
    sides = [("paper", PAPER_PANEL), ("ours", OURS_PANEL)]
    counts = [points.loc[points["source"] == s, "copy"].nunique() for s, _ in sides]
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(9, 5),
        sharey=True,
        layout="constrained",
        gridspec_kw={"width_ratios": [max(c, 2) for c in counts]},
    )
    labels = {key: key for key in keys}  # a set both sides evaluate names ours too: "F-MNIST (ours: fmnist)"
    for key, task in zip(points["color_key"], points["downstream"], strict=True):
        if task != key:
            labels[key] = f"{key} (ours: {task})"
    handles: dict[str, Any] = {}
    for ax, (side, title) in zip(axes, sides, strict=True):
        pts = points[points["source"] == side]
        copies = list(dict.fromkeys(pts["copy"]))
        tasks = list(dict.fromkeys(pts["downstream"]))
        width = 0.7 / max(len(tasks), 1)
        for j, task in enumerate(tasks):
            t = pts[pts["downstream"] == task].set_index("copy").reindex(copies)
            x = [i + (j - (len(tasks) - 1) / 2) * width for i in range(len(copies))]
            err = [t["share"] - t["low"], t["high"] - t["share"]]
            key = t["color_key"].dropna().iloc[0]
            drawn = ax.errorbar(x, t["share"], yerr=err, fmt="o", ms=5, color=palette[key], capsize=2, lw=1)
            handles.setdefault(labels[key], drawn)
        victim_line = ax.axhline(100, color="k", ls="--", lw=1)
        ax.set_xticks(range(len(copies)), copies, rotation=30, ha="right", fontsize=9)
        ax.set_xlim(-0.6, len(copies) - 0.4)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("copy: queries" + (" (loss)" if side == "ours" else ""), fontsize=10)
    axes[0].set_ylabel("probe accuracy, % of its own victim")
    handles["victim (100 %)"] = victim_line
    fig.legend(
        list(handles.values()),
        list(handles),
        title="downstream set",
        loc="outside lower center",
        ncol=min(len(handles), 4),
        fontsize=9,
        title_fontsize=9,
    )
    return fig


def baseline_value(base: pd.DataFrame, model: str, task: str, metric: str = "probe") -> float:
    """One baseline number: ``metric`` of the row (``model``, ``task``)."""
    found = base.loc[(base["model"] == model) & (base["downstream"] == task), metric]
    if len(found) != 1:
        raise ValueError(f"Expected one baseline row for ({model!r}, {task!r}), found {len(found)}.")
    return float(found.iloc[0])


def stolen_mean(grid: pd.DataFrame, query_set: str, task: str, budget: int, metric: str = "probe") -> float:
    """Mean ``metric`` over the losses of the copies stolen with ``budget`` ``query_set`` queries,
    on ``task`` (NaN if the grid has no such copy)."""
    found = grid.loc[
        (grid["query_set"] == query_set) & (grid["downstream"] == task) & (grid["budget"] == budget), metric
    ]
    return float(found.mean()) if len(found) else math.nan


def seed_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval over seeds; one value, or values without spread, give the mean
    three times (no interval to show)."""
    x = [float(v) for v in values if not math.isnan(float(v))]
    if not x:
        raise ValueError("seed_interval needs at least one value.")
    if len(x) < 2 or max(x) == min(x):
        mean = sum(x) / len(x)
        return mean, mean, mean
    iv = mean_interval(x)
    return iv.mean, iv.low, iv.high


def stolen_seeds(grid: pd.DataFrame, query_set: str, task: str, budget: int, metric: str = "probe") -> list[float]:
    """Per seed, the mean ``metric`` over the losses of the copies stolen with ``budget``
    ``query_set`` queries, on ``task`` (empty if the grid has no such copy)."""
    found = grid[(grid["query_set"] == query_set) & (grid["downstream"] == task) & (grid["budget"] == budget)]
    return found.groupby("seed")[metric].mean().tolist()


def headline(base: pd.DataFrame, grid: pd.DataFrame, task: str, in_distribution: str, other: str) -> dict[str, float]:
    """The numbers the chapter's prose quotes, on the downstream set ``task``.

    ``imagenet_victim`` / ``imagenet_pixels`` / ``imagenet_random``: the baselines' probe accuracies (%);
    ``imagenet_stolen_id`` / ``imagenet_stolen_other``: the copies stolen with the grid's largest budget
    (``imagenet_max_budget``) from ``in_distribution`` / ``other`` queries (mean over losses and seeds);
    ``imagenet_ratio_id``: ``imagenet_stolen_id`` as % of the victim; ``imagenet_seeds``: how many
    seeds the grid has.
    """
    if grid.empty:
        raise ValueError("The headline needs at least one stolen copy.")
    budget = int(grid["budget"].max())
    victim = baseline_value(base, VICTIM, task)
    stolen_id = stolen_mean(grid, in_distribution, task, budget)
    return {
        "imagenet_victim": victim,
        "imagenet_pixels": baseline_value(base, PIXELS, task),
        "imagenet_random": baseline_value(base, RANDOM, task),
        "imagenet_stolen_id": stolen_id,
        "imagenet_stolen_other": stolen_mean(grid, other, task, budget),
        "imagenet_max_budget": float(budget),
        "imagenet_ratio_id": 100 * stolen_id / victim,
        "imagenet_seeds": float(grid["seed"].nunique()),
    }


def _band(values: pd.Series) -> tuple[float, float]:
    _, low, high = seed_interval(values.tolist())
    return low, high


def plot_budget_curves(base: pd.DataFrame, grid: pd.DataFrame, tasks: Sequence[str] | None = None) -> Figure:
    """One panel per downstream set (two per row): the copies' probe accuracy (%) against queries,
    one line per query set (a line style per loss when there are several): the mean over seeds
    with its 95 % t interval as a band; the victim and raw pixels as horizontal lines."""
    tasks = list(dict.fromkeys(grid["downstream"])) if tasks is None else list(tasks)
    if not tasks:
        raise ValueError("plot_budget_curves needs at least one downstream set.")
    ncols = min(2, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), squeeze=False)
    style = "loss" if grid["loss"].nunique() > 1 else None
    for ax, task in zip(axes.flat, tasks):
        sns.lineplot(
            data=grid[grid["downstream"] == task],
            x="budget",
            y="probe",
            hue="query_set",
            style=style,
            marker="o",
            errorbar=_band,
            ax=ax,
        )
        ax.axhline(baseline_value(base, VICTIM, task), color="k", ls="--", lw=1, label="victim")
        ax.axhline(baseline_value(base, PIXELS, task), color="grey", ls=":", lw=1, label="raw pixels")
        ax.set_title(f"downstream: {task}", fontsize=10)
        ax.set_xlabel("queries")
        ax.set_ylabel("linear probe (%)")
        ax.legend(fontsize=8, title="query set" if style is None else None, title_fontsize=8)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.remove()
    fig.tight_layout()
    return fig


def paper_keep_range(paper: pd.DataFrame) -> tuple[float, float]:
    """The smallest and largest share (%) of the victim's accuracy the paper's copies keep."""
    shares = 100 * paper.drop(index="victim") / paper.loc["victim"]
    return float(shares.min().min()), float(shares.max().max())


def headline_text(values: dict[str, float], paper: pd.DataFrame, min_margin: float = 10.0) -> dict[str, str]:
    """Sentences the chapter's prose uses, chosen from the results: whether the victim clearly beats
    a random encoder on the task (by ``min_margin`` points), and the paper's range for comparison."""
    margin = values["imagenet_victim"] - values["imagenet_random"]
    if margin >= min_margin:
        worth = (
            f"the victim beats an encoder at random initialisation by {margin:.1f} points, so a copy has "
            "something to take from it"
        )
    elif margin > 0:
        worth = (
            f"the victim beats an encoder at random initialisation by only {margin:.1f} points (under "
            f"{min_margin:.0f}), so copies on this task are shown, not judged"
        )
    else:
        worth = "the victim does not beat an encoder at random initialisation here, so there is nothing to steal"
    low, high = paper_keep_range(paper)
    return {
        "imagenet_worth": worth,
        "imagenet_paper_range": f"the paper's copies keep {low:.0f} to {high:.0f} % of its victim's accuracy",
    }


def copies_text(base: pd.DataFrame, grid: pd.DataFrame, task: str, in_distribution: str, other: str) -> dict[str, str]:
    """``imagenet_copies_text``: what the copies stolen with the grid's largest budget reach on
    ``task``, from ``in_distribution`` and from ``other`` queries: mean over losses, then mean
    and 95 % t interval over seeds (the interval only with two seeds or more), and the share of
    the victim."""
    if grid.empty:
        raise ValueError("No stolen copies: the grid is empty.")
    budget = int(grid["budget"].max())
    victim = baseline_value(base, VICTIM, task)
    seeds = int(grid["seed"].nunique())
    parts = []
    for query_set in dict.fromkeys([in_distribution, other]):
        per_seed = stolen_seeds(grid, query_set, task, budget)
        if not per_seed:
            parts.append(f"no copy was stolen with {budget:,} {query_set} queries")
            continue
        mean, low, high = seed_interval(per_seed)
        where = f" [{low:.1f}, {high:.1f}]" if high > low else ""
        share = 100 * mean / victim
        parts.append(
            f"copies stolen with {budget:,} {query_set} queries reach {mean:.1f} %{where} ({share:.0f} % of it)"
        )
    over = f"means and 95 % intervals over {seeds} seeds" if seeds > 1 else "one seed, so no interval"
    over += ", averaged over the losses" if grid["loss"].nunique() > 1 else ""
    text = f"On {task}, where the victim scores {victim:.1f} %, " + " and ".join(parts)
    return {"imagenet_copies_text": f"{text}; {over}."}


def shared_sets_text(paper: pd.DataFrame, grid: pd.DataFrame) -> dict[str, str]:
    """``imagenet_shared_text``: which downstream sets both the paper's table and ours evaluate
    (our names mapped to the paper's by :data:`PAPER_COLUMNS`), said in a sentence."""
    ours = [PAPER_COLUMNS.get(t, t) for t in dict.fromkeys(grid["downstream"])]
    shared = [t for t in paper.columns if t in ours]
    if not shared:
        text = (
            f"No downstream set is common to the two tables here (the paper's: {', '.join(paper.columns)}; "
            f"ours: {', '.join(dict.fromkeys(grid['downstream']))}), so each side is read against its own victim only."
        )
    else:
        text = f"Common to both tables: {', '.join(shared)}; every other set is evaluated by one side only."
    return {"imagenet_shared_text": text}
