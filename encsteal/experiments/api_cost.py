"""Supervised vs self-supervised APIs: what one query leaks, at equal numbers of queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm import tqdm

from encsteal import cost, paper_tables, params
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.experiments.downstream import Downstream, downstream_tasks, evaluate
from encsteal.params import Params
from encsteal.victims import Victim, train_victim


def api_menu(ssl_victim: Victim, supervised_victim: Victim) -> list[tuple[str, EncoderAPI]]:
    """Every API variant of the chapter: SSL representations / head, and the supervised outputs."""
    menu = [
        ("SSL: representation", EncoderAPI(ssl_victim.encoder, ssl_victim.head)),
        ("SSL: projection head", EncoderAPI(ssl_victim.encoder, ssl_victim.head, output="head")),
    ]
    for output in ("label", "topk", "probabilities", "logits"):
        menu.append(
            (
                f"supervised: {output}",
                EncoderAPI(
                    supervised_victim.encoder, supervised_victim.head, mode="supervised", output=output, top_k=3
                ),
            )
        )
    menu.append(("supervised model: representation", EncoderAPI(supervised_victim.encoder)))
    return menu


def outputs_table(menu: list[tuple[str, EncoderAPI]], probe: torch.Tensor) -> pd.DataFrame:
    """What each API returns for one image: size, non-zero values, and bits of a float32 answer."""
    rows = []
    for name, api in menu:
        out = api.query(probe[:1], user="inspector")
        nonzero = int((out != 0).sum())
        rows.append(
            {
                "API": name,
                "values returned": out.shape[1],
                "non-zero values": nonzero,
                "float32 bits per answer": 32 * nonzero if "label" not in name else 4,
            }
        )
    return pd.DataFrame(rows).set_index("API")


STOLEN_FROM = (
    "SSL: representation",
    "supervised: label",
    "supervised: probabilities",
    "supervised model: representation",
)
"""The APIs the attacker steals from in the chapter (top-k and logits sit between these)."""


def leakage_grid(
    menu: list[tuple[str, EncoderAPI]],
    queries: ImageSet,
    tasks: Sequence[Downstream],
    budgets: Sequence[int],
    epochs: int,
    seed: int,
    device: str = "auto",
) -> pd.DataFrame:
    """Steal the same architecture from each API at each budget; evaluate on every task."""
    rows = []
    chosen = [(n, a) for n, a in menu if n in STOLEN_FROM]
    for (name, api), budget in tqdm([(m, b) for m in chosen for b in budgets], desc="leakage"):
        q = queries.subset(torch.arange(budget))
        loss = "mse"
        result = steal(api, q, StealConfig(loss=loss, epochs=epochs, seed=seed), device=device, progress=False)
        for task in tasks:
            rows.append(
                {
                    "API": name,
                    "budget": budget,
                    "queries_paid": result.queries,
                    "downstream": task.name,
                    "attack_seconds": result.seconds,
                    **evaluate(result.encoder, task),
                }
            )
    return pd.DataFrame(rows)


# ---- the chapter: tables and headline numbers ----------------------------------------------------


def leakage_table(leak: pd.DataFrame, metric: str = "few_label") -> pd.DataFrame:
    """``metric`` of each API's copy (rows) per downstream task and budget (columns)."""
    return leak.pivot_table(index="API", columns=["downstream", "budget"], values=metric)


def cost_table(train_seconds: float, leak: pd.DataFrame, budget: int, prices: cost.Prices) -> pd.DataFrame:
    """Training the SSL victim vs stealing it from its representations with ``budget`` queries."""
    row = _ssl_row(leak, budget)
    steal_usd = cost.stealing_cost(int(row.queries_paid), float(row.attack_seconds), prices)
    return pd.DataFrame(
        [
            {
                "what": "train the SimCLR victim",
                "seconds": train_seconds,
                "usd": cost.training_cost(train_seconds, prices),
            },
            {"what": f"steal it: API bill ({int(row.queries_paid)} queries)", "seconds": None, "usd": steal_usd["api"]},
            {"what": "steal it: attacker's compute", "seconds": float(row.attack_seconds), "usd": steal_usd["compute"]},
        ]
    ).set_index("what")


def cost_comparison(costs: pd.DataFrame) -> pd.Series:
    """Our training and stealing cost beside the figures quoted around the paper (USD)."""
    quoted = paper_tables.cost_figures().set_index("item")["usd"]
    return pd.Series(
        {
            "train (ours)": costs.usd.iloc[0],
            "steal (ours)": costs.usd.iloc[1:].sum(),
            "train ResNet-50 SSL (quoted)": quoted["training a ResNet-50 SSL encoder"],
            "steal it (quoted)": quoted["stealing such an encoder"],
        }
    )


def _ssl_row(leak: pd.DataFrame, budget: int) -> pd.Series:
    sel = leak[(leak.API == "SSL: representation") & (leak.budget == budget)]
    if sel.empty:
        raise ValueError(f"No SSL-representation attack at budget {budget} in the leakage grid.")
    return sel.iloc[0]


def headline(
    outputs: pd.DataFrame, leak: pd.DataFrame, train_seconds: float, prices: cost.Prices, transfer_task: str
) -> dict[str, float]:
    """The numbers the chapter's prose states (and the claims page judges)."""
    budget = int(leak.budget.max())
    best = leak[leak.budget == budget].groupby(["API", "downstream"])["few_label"].mean().unstack()
    row = _ssl_row(leak, budget)
    train_usd = cost.training_cost(train_seconds, prices)
    steal_usd = cost.stealing_cost(int(row.queries_paid), float(row.attack_seconds), prices)["total"]
    return {
        "repr_dim": float(outputs.loc["SSL: representation", "values returned"]),
        "label_dim": float(outputs.loc["supervised: label", "values returned"]),
        "prob_dim": float(outputs.loc["supervised: probabilities", "values returned"]),
        "budget": float(budget),
        "repr_few": best.loc["supervised model: representation", transfer_task],
        "ssl_repr_few": best.loc["SSL: representation", transfer_task],
        "prob_few": best.loc["supervised: probabilities", transfer_task],
        "label_few": best.loc["supervised: label", transfer_task],
        "train_usd": train_usd,
        "steal_usd": steal_usd,
        "train_over_steal": train_usd / max(steal_usd, 1e-12),
        "breakeven": cost.break_even_price_per_1k(
            train_seconds, int(row.queries_paid), float(row.attack_seconds), prices
        ),
        "price_per_1k": prices.api_per_1k,
        "cpu_price_per_hour": prices.compute_per_hour,
    }


@dataclass
class ApiCostChapter:
    """Everything chapter 1 shows."""

    outputs: pd.DataFrame
    leak: pd.DataFrame
    leak_table: pd.DataFrame
    costs: pd.DataFrame
    cost_bars: pd.Series
    values: dict[str, float]
    transfer_task: str

    def results(self) -> dict:
        """What the chapter saves for the claims page."""
        return {"values": self.values, "transfer_task": self.transfer_task, "grid": self.leak.to_dict(orient="records")}


def run(p: Params) -> ApiCostChapter:
    """Chapter 1: the SSL and supervised victims, what their APIs return, what equal numbers of
    queries leak to an attacker, and the cost of training vs stealing."""
    ssl = train_victim(params.victim_config(p), device=p.device, progress=False)
    sup = train_victim(params.victim_config(p, method="supervised"), device=p.device, progress=False)
    sizes = {"victim": p.victim_num_train, **params.probe_sizes(p)}
    pool = role_splits(p.victim_dataset, {**sizes, "query": max(p.leak_budgets)}, seed=p.seed)
    menu = api_menu(ssl, sup)
    outputs = outputs_table(menu, pool["query"].images)
    tasks = downstream_tasks(p, ssl.encoder, p.downstream_sets, p.victim_dataset, p.victim_num_train)
    leak = leakage_grid(menu, pool["query"], tasks, p.leak_budgets, p.steal_epochs, p.seed, device=p.device)
    prices = cost.Prices(compute_per_hour=p.cpu_price_per_hour, api_per_1k=p.price_per_1k)
    costs = cost_table(ssl.train_seconds, leak, max(p.leak_budgets), prices)
    transfer = p.downstream_sets[-1]
    values = headline(outputs, leak, ssl.train_seconds, prices, transfer)
    return ApiCostChapter(outputs, leak, leakage_table(leak), costs, cost_comparison(costs), values, transfer)
