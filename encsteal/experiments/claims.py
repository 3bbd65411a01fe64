"""The paper's claims, each judged by code from the numbers the chapters measured.

Every ``judge_*`` function takes a chapter's saved results (``encsteal.notebook.Chapter.save_results``)
and returns a :class:`Verdict`. Thresholds are stated in each docstring and in the book.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

CONTRASTIVE = ("infonce", "softnn")
LABEL_FREE = ("mse", "infonce", "softnn", "wasserstein", "barlow")


@dataclass(frozen=True)
class Verdict:
    claim: str
    evidence: str
    verdict: str  # "reproduced", "partly reproduced", "not reproduced", "not evaluated"


def _means(results: Mapping[str, Any], metric: str) -> pd.Series:
    table = pd.DataFrame(results["means"])
    return table.groupby("loss")[metric].mean()


def judge_losses(results: Mapping[str, Any], metric: str = "few_label") -> Verdict:
    """Contrastive losses steal best and Barlow worst: the best label-free loss (mean over query
    sets and downstream tasks) is contrastive, and Barlow Twins (correct pairing) is the worst."""
    claim = "Contrastive losses (InfoNCE, SoftNN) steal best and Barlow Twins worst."
    m = _means(results, metric)
    free = m[[l for l in LABEL_FREE if l in m.index]].sort_values(ascending=False)
    best_contrastive = free.index[0] in CONTRASTIVE
    barlow_worst = free.index[-1] == "barlow"
    evidence = (
        f"{metric} mean over query sets and tasks: "
        + ", ".join(f"{k} {v:.1f}" for k, v in free.items())
        + (f"; official Barlow pairing {m['barlow_official']:.1f}" if "barlow_official" in m else "")
    )
    verdict = (
        "reproduced"
        if best_contrastive and barlow_worst
        else "partly reproduced"
        if best_contrastive or barlow_worst
        else "not reproduced"
    )
    return Verdict(claim, evidence, verdict)


def judge_few_queries(
    results: Mapping[str, Any],
    victim_probe: float,
    num_train: int,
    threshold: float = 0.95,
    random_probe: float | None = None,
    min_gain: float = 0.5,
) -> Verdict:
    """Stealing with under a fifth of the victim's training-set size in queries gets close: the
    best label-free copy keeps at least ``threshold`` of the victim's probe accuracy and, when the
    random-initialised encoder's accuracy is known, recovers at least ``min_gain`` of the victim's
    margin over it (on a saturated probe a random encoder alone is already "close")."""
    claim = "Stealing with fewer queries than a fifth of the victim's training set gets close to the victim."
    budget = int(results["budget"])
    table = pd.DataFrame(results["means"])
    # like with like: the victim's probe is on its own data set, with in-distribution queries
    own = results.get("victim_dataset", table.downstream.iloc[0])
    same = table[(table.query_set == own) & (table.downstream == own)]
    m = (same if len(same) else table).groupby("loss")["probe"].mean()
    free = m[[l for l in LABEL_FREE if l in m.index]]
    ratio = free.max() / victim_probe
    evidence = (
        f"{budget} {own} queries = {budget / num_train:.0%} of {num_train} training images; best label-free copy "
        f"({free.idxmax()}) {free.max():.1f} % vs victim {victim_probe:.1f} % = {ratio:.1%} (threshold "
        f"{threshold:.0%})"
    )
    ok = budget < num_train / 5 and ratio >= threshold
    if random_probe is not None and victim_probe > random_probe:
        gain = (free.max() - random_probe) / (victim_probe - random_probe)
        evidence += (
            f"; random-init encoder {random_probe:.1f} %, so the copy recovers {gain:.0%} of the victim's "
            f"margin over it (needed {min_gain:.0%})"
        )
        if ok and gain < min_gain:
            return Verdict(claim, evidence, "partly reproduced")
    return Verdict(claim, evidence, "reproduced" if ok else "not reproduced")


def judge_leakage(results: Mapping[str, Any]) -> Verdict:
    """SSL APIs leak more per query: at the largest budget, the copy trained on representations
    beats the one trained on probabilities, which beats the one trained on labels (transfer task,
    few-label probe)."""
    claim = "Self-supervised APIs (representations) leak more per query than supervised APIs (labels, scores)."
    v = results["values"]
    order = [("representations", v["repr_few"]), ("probabilities", v["prob_few"]), ("labels", v["label_few"])]
    evidence = (
        f"{int(v['budget'])} queries, {results.get('transfer_task', 'transfer task')} few-label probe: "
        + ", ".join(f"{k} {x:.1f} %" for k, x in order)
    )
    strict = order[0][1] > order[1][1] > order[2][1]
    partly = order[0][1] > max(order[1][1], order[2][1])
    return Verdict(claim, evidence, "reproduced" if strict else "partly reproduced" if partly else "not reproduced")


def judge_cost(results: Mapping[str, Any], factor: float = 10.0) -> Verdict:
    """Stealing costs far less than training: training costs at least ``factor`` times more than
    stealing at the chapter's prices."""
    claim = "Stealing an encoder costs far less than training it."
    v = results["values"]
    ratio = v["train_usd"] / max(v["steal_usd"], 1e-12)
    evidence = (
        f"at {v['cpu_price_per_hour']:.2f} USD/CPU-hour and {v['price_per_1k']:.2f} USD per 1,000 queries: "
        f"training {v['train_usd']:.4f} USD, stealing {v['steal_usd']:.4f} USD (ratio {ratio:.2f}); "
        f"break-even API price {v['breakeven']:.3f} USD per 1,000"
    )
    verdict = "reproduced" if ratio >= factor else "partly reproduced" if ratio > 1 else "not reproduced"
    return Verdict(claim, evidence, verdict)


def judge_defense(table: pd.DataFrame, attacker_columns: list[str], margin: float = 1.0) -> Verdict:
    """Perturbation defenses hurt legitimate users as much as attackers: at every defended
    strength, the legitimate user's drop from the undefended accuracy is at least the best
    attacker's drop minus ``margin`` points."""
    claim = "Perturbation defenses hurt legitimate users as much as attackers."
    clean = table[table.strength == table.strength.min()].iloc[0]
    rows = []
    holds = []
    best = max(attacker_columns, key=lambda c: clean[c])
    for _, row in table[table.strength > table.strength.min()].iterrows():
        legit_drop = clean.legit - row.legit
        attacker_drop = min(clean[c] - row[c] for c in attacker_columns)
        holds.append(legit_drop >= attacker_drop - margin)
        rows.append(
            f"strength {row.strength:g}: legitimate user {clean.legit:.1f} -> {row.legit:.1f} %, "
            f"best attacker ({best.removeprefix('attacker_')}) {clean[best]:.1f} -> {row[best]:.1f} %"
        )
    evidence = "; ".join(rows)
    if not holds:
        return Verdict(claim, "no defended strength was measured", "not evaluated")
    return Verdict(
        claim, evidence, "reproduced" if all(holds) else "partly reproduced" if any(holds) else "not reproduced"
    )


def judge_watermark(table: pd.DataFrame) -> Verdict:
    """The watermark transfers to stolen copies only: no independent model (reference, other
    data, copy of an independent model, random) is called stolen, and at least half of the copies
    stolen from the watermarked victim are."""
    claim = "The rotation watermark transfers to stolen copies, not to independent models."
    independent = table[table.role.isin(["reference", "other data", "stolen from independent", "random"])]
    stolen = table[table.role == "stolen"]
    false_pos = int((independent.stolen == True).sum())  # noqa: E712
    true_pos = int((stolen.stolen == True).sum())  # noqa: E712
    evidence = (
        f"{true_pos} of {len(stolen)} stolen copies called stolen (watermark accuracy "
        f"{stolen.watermark_acc.min():.1f}-{stolen.watermark_acc.max():.1f} %); {false_pos} of "
        f"{len(independent)} independent models called stolen (watermark accuracy "
        f"{independent.watermark_acc.min():.1f}-{independent.watermark_acc.max():.1f} %)"
    )
    if false_pos == 0 and len(stolen) and true_pos >= len(stolen) / 2:
        verdict = "reproduced"
    elif false_pos == 0 and true_pos > 0:
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    return Verdict(claim, evidence, verdict)


def not_evaluated(claim: str, why: str) -> Verdict:
    return Verdict(claim, why, "not evaluated")


def judge_all(load: Callable[[str], Mapping[str, Any]]) -> pd.DataFrame:
    """Every claim, with whatever chapters have results: ``load(chapter)`` raises
    ``FileNotFoundError`` for a chapter that has none (its claims are "not evaluated"); any other
    error, such as results of another run (:class:`encsteal.notebook.StaleResults`), propagates."""
    verdicts = []

    def attempt(chapter: str, claim: str, fn: Callable[[Mapping[str, Any]], Verdict]) -> None:
        try:
            verdicts.append(fn(load(chapter)))
        except FileNotFoundError as err:
            verdicts.append(not_evaluated(claim, str(err)))

    attempt("losses", "Contrastive losses steal best and Barlow worst.", judge_losses)
    attempt(
        "losses",
        "Few queries get close.",
        lambda r: judge_few_queries(
            r,
            r["values"]["victim_probe"],
            int(r.get("victim_num_train", 10_000)),
            random_probe=r["values"].get("random_probe"),
        ),
    )
    attempt("api_cost", "SSL APIs leak more per query.", judge_leakage)
    attempt(
        "defenses",
        "Perturbation defenses hurt legitimate users as much as attackers.",
        lambda r: Verdict(r["claim"], r["evidence"], r["verdict"]),
    )
    attempt(
        "watermark",
        "The watermark transfers to stolen copies only.",
        lambda r: Verdict(r["claim"], r["evidence"], r["verdict"]),
    )
    attempt("api_cost", "Stealing costs far less than training.", judge_cost)
    return pd.DataFrame([v.__dict__ for v in verdicts])


VERDICTS: tuple[str, ...] = ("reproduced", "partly reproduced", "not reproduced", "not evaluated")


def verdict_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """How many claims got each verdict (for the page's prose)."""
    counts = verdicts.verdict.value_counts()
    keys = {
        "reproduced": "n_reproduced",
        "partly reproduced": "n_partly",
        "not reproduced": "n_not",
        "not evaluated": "n_missing",
    }
    return {"n_claims": len(verdicts), **{key: int(counts.get(v, 0)) for v, key in keys.items()}}
