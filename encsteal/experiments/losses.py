"""The impact of the stealing loss (the paper's loss table) at the quick profile's scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from encsteal import paper_tables, params
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.experiments.downstream import Downstream, downstream_tasks, evaluate
from encsteal.losses import LOSSES
from encsteal.models import build_encoder
from encsteal.params import Params
from encsteal.victims import train_victim


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
    """Steal with the first ``budget`` query images and evaluate the copy on every task.
    ``loss_params``: the loss's settings (the profile's ``loss_settings``; default: its own)."""
    if budget > len(queries):
        raise ValueError(f"Budget {budget} exceeds the {len(queries)} query images of {queries.name!r}.")
    q = queries.subset(torch.arange(budget))
    config = StealConfig(
        loss=loss, loss_params=dict(loss_params or {}), epochs=epochs, batch_size=batch_size, seed=seed
    )
    labels = q.labels if LOSSES[loss].needs_labels else None
    result = steal(api, q, config, query_labels=labels, device=device, progress=False)
    rows = []
    for task in tasks:
        rows.append(
            {
                "loss": loss,
                "query_set": queries.name,
                "budget": budget,
                "seed": seed,
                "downstream": task.name,
                "queries_paid": result.queries,
                **evaluate(result.encoder, task),
            }
        )
    return rows


def loss_grid(
    api: EncoderAPI,
    query_sets: Mapping[str, ImageSet],
    tasks: Sequence[Downstream],
    losses: Sequence[str],
    seeds: Sequence[int],
    budget: int,
    epochs: int,
    device: str = "auto",
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per (loss, query set, seed, downstream task)."""
    rows: list[dict] = []
    settings = loss_settings or {}
    jobs = [(loss, qs, seed) for qs in query_sets for loss in losses for seed in seeds]
    for loss, qs, seed in tqdm(jobs, desc="loss grid"):
        rows += steal_and_evaluate(
            api, query_sets[qs], loss, budget, seed, epochs, tasks, device=device, loss_params=settings.get(loss)
        )
    return pd.DataFrame(rows)


def budget_curve(
    api: EncoderAPI,
    queries: ImageSet,
    tasks: Sequence[Downstream],
    losses: Sequence[str],
    budgets: Sequence[int],
    seed: int,
    epochs: int,
    device: str = "auto",
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Accuracy against the number of queries, one row per (loss, budget, task)."""
    rows: list[dict] = []
    settings = loss_settings or {}
    for loss, budget in tqdm([(name, b) for name in losses for b in budgets], desc="budget curve"):
        rows += steal_and_evaluate(
            api, queries, loss, budget, seed, epochs, tasks, device=device, loss_params=settings.get(loss)
        )
    return pd.DataFrame(rows)


def summarise(grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """Mean and standard deviation over seeds, one row per loss, one column pair per
    (query set, downstream task)."""
    stats = grid.groupby(["loss", "query_set", "downstream"])[metric].agg(["mean", "std", "count"])
    return stats.unstack(["query_set", "downstream"])


METRICS = ("probe", "few_label", "knn", "victim_head", "cosine", "cka")
"""The per-copy measures of :func:`encsteal.experiments.downstream.evaluate`."""
LABEL_FREE = ("mse", "infonce", "softnn", "wasserstein", "barlow")
"""Losses that use no labels of the queries (SupCon does)."""


def baselines(tasks: Sequence[Downstream], random_encoder: torch.nn.Module) -> pd.DataFrame:
    """The victim's own scores and those of the same architecture at random initialisation."""
    return pd.DataFrame(
        [
            {"encoder": label, "downstream": t.name, **evaluate(enc, t)}
            for label, enc in [("victim", None), ("random init", random_encoder)]
            for t in tasks
        ]
    )


def baseline_value(table: pd.DataFrame, encoder: str, task: str, metric: str = "probe") -> float:
    """One number of the :func:`baselines` table."""
    sel = table[(table.encoder == encoder) & (table.downstream == task)]
    if sel.empty:
        raise KeyError(
            f"No baseline {encoder!r} on {task!r}; known: {sorted(set(zip(table.encoder, table.downstream)))}."
        )
    return float(sel[metric].iloc[0])


def grid_means(grid: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean over seeds of each metric, one row per (loss, query set, downstream task)."""
    return grid.groupby(["loss", "query_set", "downstream"])[list(metrics)].mean()


def side_by_side(grid: pd.DataFrame, paper: pd.DataFrame, query_sets: Sequence[str], task: str) -> pd.DataFrame:
    """The paper's CIFAR10-probe columns beside ours (mean probe accuracy on ``task`` with the first
    and the last query set), in % and in points relative to MSE."""
    ours = grid_means(grid, ["probe"])["probe"].unstack(["query_set", "downstream"])
    side = pd.DataFrame(
        {
            "paper, in-distribution (CIFAR10 probe)": paper[("in-distribution", "CIFAR10")],
            "paper, out-of-distribution (CIFAR10 probe)": paper[("out-of-distribution", "CIFAR10")],
            f"ours, {query_sets[0]} queries ({task} probe)": ours[(query_sets[0], task)],
            f"ours, {query_sets[-1]} queries ({task} probe)": ours[(query_sets[-1], task)],
        }
    )
    relative = side - side.loc["mse"] if "mse" in side.index else side * float("nan")
    return pd.concat({"accuracy (%)": side, "minus MSE (points)": relative}, axis=1)


def few_label_heatmap(grid: pd.DataFrame, task: str) -> pd.DataFrame:
    """Mean few-label accuracy on ``task``: losses (rows) x query sets (columns)."""
    return grid[grid.downstream == task].groupby(["loss", "query_set"])["few_label"].mean().unstack()


def headline(
    grid: pd.DataFrame, base: pd.DataFrame, query_set: str, task: str, victim_seconds: float
) -> dict[str, float]:
    """The numbers the chapter's prose states, on ``task`` with ``query_set`` queries."""
    means = grid_means(grid).xs((query_set, task), level=["query_set", "downstream"])
    free = [loss for loss in means.index if loss in LABEL_FREE]
    spread = grid.groupby(["loss", "query_set", "downstream"])["probe"].std().mean()
    return {
        "victim_seconds": victim_seconds,
        "victim_probe": baseline_value(base, "victim", task),
        "random_probe": baseline_value(base, "random init", task),
        "label_free_min": means.loc[free, "probe"].min(),
        "label_free_max": means.loc[free, "probe"].max(),
        "seed_spread": 0.0 if pd.isna(spread) else float(spread),
        "best_cosine_loss_mse": means["cosine"].get("mse", float("nan")),
        "barlow_probe": means["probe"].get("barlow", float("nan")),
        "barlow_official_probe": means["probe"].get("barlow_official", float("nan")),
    }


@dataclass
class LossChapter:
    """Everything chapter 2 shows."""

    victim_seconds: float
    baselines: pd.DataFrame
    grid: pd.DataFrame
    curve: pd.DataFrame
    summary: pd.DataFrame
    side_by_side: pd.DataFrame
    values: dict[str, float]
    victim_dataset: str
    budget: int
    seeds: list[int]
    victim_num_train: int

    def results(self) -> dict:
        """What the chapter saves for the claims page."""
        return {
            "means": grid_means(self.grid).reset_index().to_dict(orient="records"),
            "values": self.values,
            "budget": self.budget,
            "seeds": self.seeds,
            "victim_num_train": self.victim_num_train,
            "victim_dataset": self.victim_dataset,
        }


def run(p: Params) -> LossChapter:
    """Chapter 2: steal the quick victim with each loss and query set, evaluate every copy."""
    victim = train_victim(params.victim_config(p), device=p.device, progress=False)
    api = EncoderAPI(victim.encoder, victim.head)
    tasks = downstream_tasks(p, victim.encoder, p.downstream_sets, p.victim_dataset, p.victim_num_train)
    sizes = {"victim": p.victim_num_train, **params.probe_sizes(p)}
    pools = {
        name: role_splits(name, {**(sizes if name == p.victim_dataset else {}), "query": p.budget}, seed=p.seed)[
            "query"
        ]
        for name in p.query_sets
    }
    torch.manual_seed(p.seed)
    base = baselines(tasks, build_encoder(victim.config.arch, victim.encoder.in_channels, victim.encoder.input_size))
    grid = loss_grid(api, pools, tasks, p.losses, p.seeds, p.budget, p.steal_epochs, p.device, p.loss_settings)
    curve = budget_curve(
        api, pools[p.query_sets[0]], tasks, p.curve_losses, p.budgets, p.seed, p.steal_epochs, p.device, p.loss_settings
    )
    values = headline(grid, base, p.query_sets[0], p.downstream_sets[0], victim.train_seconds)
    return LossChapter(
        victim.train_seconds,
        base,
        grid,
        curve,
        summarise(grid, "probe"),
        side_by_side(grid, paper_tables.loss_table(), p.query_sets, p.downstream_sets[0]),
        values,
        p.victim_dataset,
        p.budget,
        list(p.seeds),
        p.victim_num_train,
    )
