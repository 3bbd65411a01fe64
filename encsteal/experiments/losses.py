"""The impact of the stealing loss (the paper's loss table) at the quick profile's scale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data.imageset import ImageSet
from encsteal.experiments.downstream import Downstream, evaluate

#: Per-loss hyperparameters used in the quick profile. InfoNCE tau = 0.1 (the paper's ImageNet
#: example); SoftNN's official T = 100 is flat for 256-d CNN features, so T = 0.1 x the batch's
#: median squared distance; SupCon tau = 0.07 (NOTES 4.3).
LOSS_PARAMS: dict[str, dict[str, Any]] = {
    "mse": {}, "infonce": {"temperature": 0.1}, "softnn": {"temperature": "auto"},
    "supcon": {"temperature": 0.07}, "wasserstein": {}, "barlow": {}, "barlow_official": {},
}


def steal_and_evaluate(api: EncoderAPI, queries: ImageSet, loss: str, budget: int, seed: int, epochs: int,
                       tasks: Sequence[Downstream], batch_size: int = 128, device: str = "auto") -> list[dict]:
    """Steal with the first ``budget`` query images and evaluate the copy on every task."""
    if budget > len(queries):
        raise ValueError(f"Budget {budget} exceeds the {len(queries)} query images of {queries.name!r}.")
    q = queries.subset(torch.arange(budget))
    config = StealConfig(loss=loss, loss_params=LOSS_PARAMS.get(loss, {}), epochs=epochs, batch_size=batch_size,
                         seed=seed)
    labels = q.labels if loss == "supcon" else None
    result = steal(api, q, config, query_labels=labels, device=device, progress=False)
    rows = []
    for task in tasks:
        rows.append({"loss": loss, "query_set": queries.name, "budget": budget, "seed": seed,
                     "downstream": task.name, "queries_paid": result.queries, **evaluate(result.encoder, task)})
    return rows


def loss_grid(api: EncoderAPI, query_sets: Mapping[str, ImageSet], tasks: Sequence[Downstream],
              losses: Sequence[str], seeds: Sequence[int], budget: int, epochs: int,
              device: str = "auto") -> pd.DataFrame:
    """One row per (loss, query set, seed, downstream task)."""
    rows: list[dict] = []
    jobs = [(loss, qs, seed) for qs in query_sets for loss in losses for seed in seeds]
    for loss, qs, seed in tqdm(jobs, desc="loss grid"):
        rows += steal_and_evaluate(api, query_sets[qs], loss, budget, seed, epochs, tasks, device=device)
    return pd.DataFrame(rows)


def budget_curve(api: EncoderAPI, queries: ImageSet, tasks: Sequence[Downstream], losses: Sequence[str],
                 budgets: Sequence[int], seed: int, epochs: int, device: str = "auto") -> pd.DataFrame:
    """Accuracy against the number of queries, one row per (loss, budget, task)."""
    rows: list[dict] = []
    for loss, budget in tqdm([(l, b) for l in losses for b in budgets], desc="budget curve"):
        rows += steal_and_evaluate(api, queries, loss, budget, seed, epochs, tasks, device=device)
    return pd.DataFrame(rows)


def summarise(grid: pd.DataFrame, metric: str = "probe") -> pd.DataFrame:
    """Mean and standard deviation over seeds, one row per loss, one column pair per
    (query set, downstream task)."""
    stats = grid.groupby(["loss", "query_set", "downstream"])[metric].agg(["mean", "std", "count"])
    return stats.unstack(["query_set", "downstream"])
