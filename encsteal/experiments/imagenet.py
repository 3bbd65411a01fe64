"""Chapter 3, stealing a pre-trained ImageNet encoder: the baselines, the steal grid, and the tables
and numbers the chapter shows.

Long tables (one row per model and downstream task, the metrics of
:func:`encsteal.experiments.downstream.evaluate`) are built by :func:`baselines` and
:func:`steal_grid`; the wide tables the chapter prints are pivots of them
(:func:`baseline_table`, :func:`probe_table`), and :func:`side_by_side` sets the paper's table
next to ours as a share of each table's victim.
"""

from __future__ import annotations

import math
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
"""Our data set names and the paper's column names for the same sets (the comparison's shared columns)."""

NOT_AVAILABLE = "n/a"
"""What :func:`side_by_side` shows where one table has no such downstream set (never NaN)."""


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
    """The baselines' all-label and few-label probe accuracies (%): a row per model, a column per
    (metric, downstream set)."""
    return base.pivot_table(index="model", columns="downstream", values=["probe", "few_label"])


def model_label(query_set: str, budget: int, loss: str) -> str:
    """The row label of a copy stolen with ``budget`` queries from ``query_set`` with ``loss``."""
    return f"stolen, {budget} {query_set} queries ({loss})"


def steal_grid(
    api: EncoderAPI,
    pools: Mapping[str, ImageSet],
    tasks: Sequence[Downstream],
    budgets: Sequence[int],
    losses: Sequence[str],
    seed: int,
    epochs: int,
    device: str = "auto",
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Steal with every (query set, budget, loss), in that order, and evaluate each copy on every
    task: one row per (copy, task), labelled by :func:`model_label` in ``model``."""
    jobs = [(qs, budget, loss) for qs in pools for budget in budgets for loss in losses]
    rows: list[dict] = []
    for qs, budget, loss in jobs:
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


def probe_table(base: pd.DataFrame, grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """Baselines and copies side by side: a row per model (baselines first, in order of
    appearance), a column per downstream set, ``metric`` in the cells."""
    return pd.concat([base, grid]).pivot_table(index="model", columns="downstream", values=metric, sort=False)


def relative_to_victim(table: pd.DataFrame, victim: str) -> pd.DataFrame:
    """Every row of ``table`` as a percentage of its ``victim`` row, column by column."""
    if victim not in table.index:
        raise ValueError(f"No victim row {victim!r}; rows are {list(table.index)}.")
    return 100 * table / table.loc[victim]


def side_by_side(
    paper: pd.DataFrame,
    ours: pd.DataFrame,
    paper_victim: str = PAPER_VICTIM,
    ours_victim: str = VICTIM,
    decimals: int = 1,
) -> pd.DataFrame:
    """The paper's table and ours, each as % of its own victim, stacked under two row keys.

    Our columns take the paper's names where the data set is the same (:data:`PAPER_COLUMNS`), so a
    shared set is one column; a cell for a set only one side evaluated reads :data:`NOT_AVAILABLE`.
    """
    rel = {
        "paper (% of victim)": relative_to_victim(paper, paper_victim),
        "ours (% of victim)": relative_to_victim(ours, ours_victim).rename(columns=PAPER_COLUMNS),
    }
    table = pd.concat(rel).round(decimals)
    return table.astype(object).where(table.notna(), NOT_AVAILABLE)


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


def headline(base: pd.DataFrame, grid: pd.DataFrame, task: str, in_distribution: str, other: str) -> dict[str, float]:
    """The numbers the chapter's prose quotes, on the downstream set ``task``.

    ``victim_rgb`` / ``pixels_rgb`` / ``random_rgb``: the baselines' probe accuracies (%);
    ``stolen_rgb_id`` / ``stolen_rgb_other``: the copies stolen with the grid's largest budget
    (``max_budget``) from ``in_distribution`` / ``other`` queries (mean over losses);
    ``ratio_rgb_id``: ``stolen_rgb_id`` as % of the victim.
    """
    if grid.empty:
        raise ValueError("The headline needs at least one stolen copy.")
    budget = int(grid["budget"].max())
    victim = baseline_value(base, VICTIM, task)
    stolen_id = stolen_mean(grid, in_distribution, task, budget)
    return {
        "victim_rgb": victim,
        "pixels_rgb": baseline_value(base, PIXELS, task),
        "random_rgb": baseline_value(base, RANDOM, task),
        "stolen_rgb_id": stolen_id,
        "stolen_rgb_other": stolen_mean(grid, other, task, budget),
        "max_budget": float(budget),
        "ratio_rgb_id": 100 * stolen_id / victim,
    }


def plot_budget_curves(base: pd.DataFrame, grid: pd.DataFrame, tasks: Sequence[str] | None = None) -> Figure:
    """One panel per downstream set: the copies' probe accuracy against queries, one line per query
    set (mean and spread over losses), with the victim and raw pixels as horizontal lines.
    A pyplot figure: a notebook renders it with ``plt.show()``."""
    tasks = list(dict.fromkeys(grid["downstream"])) if tasks is None else list(tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.3 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sns.lineplot(data=grid[grid["downstream"] == task], x="budget", y="probe", hue="query_set", marker="o", ax=ax)
        ax.axhline(baseline_value(base, VICTIM, task), color="k", ls="--", lw=1, label="victim")
        ax.axhline(baseline_value(base, PIXELS, task), color="grey", ls=":", lw=1, label="raw pixels")
        ax.set_title(f"downstream: {task}")
        ax.set_xlabel("queries")
        ax.set_ylabel("linear probe (%)")
        ax.legend(fontsize=8)
    fig.suptitle("Copies of the ImageNet encoder: probe accuracy against queries")
    return fig


def paper_keep_range(paper: pd.DataFrame) -> tuple[float, float]:
    """The smallest and largest share (%) of the victim's accuracy the paper's copies keep."""
    shares = 100 * paper.drop(index="victim") / paper.loc["victim"]
    return float(shares.min().min()), float(shares.max().max())


def headline_text(values: dict[str, float], paper: pd.DataFrame, min_margin: float = 10.0) -> dict[str, str]:
    """Sentences the chapter's prose uses, chosen from the results: whether the victim clearly beats
    a random encoder on the task (by ``min_margin`` points), and the paper's range for comparison."""
    margin = values["victim_rgb"] - values["random_rgb"]
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
