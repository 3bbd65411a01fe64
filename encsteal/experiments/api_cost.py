"""Supervised vs self-supervised APIs: what one query leaks, at equal numbers of queries."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from tqdm import tqdm

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data.imageset import ImageSet
from encsteal.experiments.downstream import Downstream, evaluate
from encsteal.victims import Victim


def api_menu(ssl_victim: Victim, supervised_victim: Victim) -> list[tuple[str, EncoderAPI]]:
    """Every API variant of the chapter: SSL representations / head, and the supervised outputs."""
    menu = [("SSL: representation", EncoderAPI(ssl_victim.encoder, ssl_victim.head)),
            ("SSL: projection head", EncoderAPI(ssl_victim.encoder, ssl_victim.head, output="head"))]
    for output in ("label", "topk", "probabilities", "logits"):
        menu.append((f"supervised: {output}", EncoderAPI(supervised_victim.encoder, supervised_victim.head,
                                                        mode="supervised", output=output, top_k=3)))
    menu.append(("supervised model: representation", EncoderAPI(supervised_victim.encoder)))
    return menu


def outputs_table(menu: list[tuple[str, EncoderAPI]], probe: torch.Tensor) -> pd.DataFrame:
    """What each API returns for one image: size, non-zero values, and bits of a float32 answer."""
    rows = []
    for name, api in menu:
        out = api.query(probe[:1], user="inspector")
        nonzero = int((out != 0).sum())
        rows.append({"API": name, "values returned": out.shape[1], "non-zero values": nonzero,
                     "float32 bits per answer": 32 * nonzero if "label" not in name else 4})
    return pd.DataFrame(rows).set_index("API")


STOLEN_FROM = ("SSL: representation", "supervised: label", "supervised: probabilities",
               "supervised model: representation")
"""The APIs the attacker steals from in the chapter (top-k and logits sit between these)."""


def leakage_grid(menu: list[tuple[str, EncoderAPI]], queries: ImageSet, tasks: Sequence[Downstream],
                 budgets: Sequence[int], epochs: int, seed: int, device: str = "auto") -> pd.DataFrame:
    """Steal the same architecture from each API at each budget; evaluate on every task."""
    rows = []
    chosen = [(n, a) for n, a in menu if n in STOLEN_FROM]
    for (name, api), budget in tqdm([(m, b) for m in chosen for b in budgets], desc="leakage"):
        q = queries.subset(torch.arange(budget))
        loss = "mse"
        result = steal(api, q, StealConfig(loss=loss, epochs=epochs, seed=seed), device=device, progress=False)
        for task in tasks:
            rows.append({"API": name, "budget": budget, "queries_paid": result.queries,
                         "downstream": task.name, "attack_seconds": result.seconds, **evaluate(result.encoder, task)})
    return pd.DataFrame(rows)
