"""The paper's claims, each judged by code from the numbers the chapters measured.

Each claim's judge lives in its chapter's module (``encsteal.experiments.<chapter>``), takes that
chapter's saved results (:meth:`encsteal.notebook.Chapter.save_results`) and returns a
:class:`Verdict`; its docstring states its rules, and its tests feed it synthetic results for every
verdict. :func:`judge_all` runs them all for the claims page.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from encsteal.tables import NA

VERDICTS: tuple[str, ...] = ("reproduced", "partly reproduced", "not reproduced", "not evaluated")


@dataclass(frozen=True)
class Verdict:
    """A judge's answer: the claim, the evidence in a sentence, the verdict, and for the paper at a
    glance the paper's number (from its tables, or its words where it published none) and ours
    (with its 95 % interval)."""

    claim: str
    evidence: str
    verdict: str  # one of VERDICTS
    paper: str = NA
    ours: str = NA

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Unknown verdict {self.verdict!r}. Allowed: {', '.join(VERDICTS)}.")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: its id, wording, the chapter that measures it, its judge and a
    few words for the paper at a glance (:data:`SHORT`)."""

    id: str
    text: str
    chapter: str
    judge: str  # "module:function" under encsteal.experiments
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def short(self) -> str:
        return SHORT.get(self.id, self.text)

    def run(self, results: Mapping[str, Any]) -> Verdict:
        module, name = self.judge.split(":")
        fn = getattr(importlib.import_module(f"encsteal.experiments.{module}"), name)
        return fn(results, **dict(self.options))


SHORT: dict[str, str] = {
    "C1": "Contrastive losses steal best, Barlow Twins worst",
    "C1'": "The same, with the official code's Barlow pairing",
    "C2": "Under a fifth of the victim's data in queries suffices",
    "C3": "Representations leak more than labels or scores",
    "C4": "Output noise hurts users as much as attackers",
    "C5": "The rotation watermark transfers to copies only",
    "C6": "Stealing costs far less than training",
    "L1": "B4B spares users, costs a single-account attacker",
    "L2": "Sybil accounts recover only part of it",
    "L3": "Dataset inference flags copies, not independent models",
    "L4": "StolenEncoder's augmentations (lambda > 0) help",
}
"""Each claim in a few words, for the paper at a glance (the claims page has the full wording)."""

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C1",
        "Contrastive losses (InfoNCE, SoftNN) steal best and Barlow Twins worst (correct Barlow pairing).",
        "losses",
        "losses:judge_losses",
        (("barlow", "barlow"),),
    ),
    Claim(
        "C1'",
        "The same, with the official code's Barlow pairing (first vs second half of the batch).",
        "losses",
        "losses:judge_losses",
        (("barlow", "barlow_official"),),
    ),
    Claim(
        "C2",
        "Stealing with fewer queries than a fifth of the victim's training set gets close to the victim.",
        "losses",
        "losses:judge_few_queries",
    ),
    Claim(
        "C3",
        "Self-supervised APIs (representations) leak more per query than supervised APIs (labels, scores).",
        "api_cost",
        "api_cost:judge_leakage",
    ),
    Claim(
        "C4",
        "Defenses that perturb the outputs hurt legitimate users as much as attackers.",
        "defenses",
        "defenses:judge_defense",
    ),
    Claim(
        "C5",
        "The rotation watermark transfers to stolen copies, not to independent models.",
        "watermark",
        "watermark:judge_watermark",
    ),
    Claim("C6", "Stealing an encoder costs far less than training it.", "api_cost", "api_cost:judge_cost"),
    Claim(
        "L1",
        "After the paper, B4B: a legitimate user keeps its accuracy within a few points, a single-account attacker "
        "loses much more.",
        "later",
        "later:judge_b4b",
    ),
    Claim(
        "L2",
        "After the paper, B4B: sybil accounts with a learned mapping recover only part of what B4B takes.",
        "later",
        "later:judge_sybil",
    ),
    Claim(
        "L3",
        "After the paper, dataset inference: stolen copies are flagged, independent encoders are not.",
        "later",
        "later:judge_dataset_inference",
    ),
    Claim(
        "L4",
        "After the paper, StolenEncoder: training on augmentations too (lambda > 0) beats lambda = 0 at equal queries.",
        "later",
        "later:judge_stolenencoder",
    ),
)
"""The claims the book judges, in the order of the claims page: the paper's (C), then those of the
later papers that chapter 6 tests (L)."""


def judge_all(load: Callable[[str], Mapping[str, Any]], claims: tuple[Claim, ...] = CLAIMS) -> pd.DataFrame:
    """Every claim, with whatever chapters have results: ``load(chapter)`` raises
    ``FileNotFoundError`` for a chapter that has none (its claims are "not evaluated"); any other
    error, such as results of another run (:class:`encsteal.notebook.StaleResults`), propagates."""
    rows = []
    for claim in claims:
        try:
            verdict = claim.run(load(claim.chapter))
            evidence, outcome, paper, ours = verdict.evidence, verdict.verdict, verdict.paper, verdict.ours
        except FileNotFoundError as err:
            evidence, outcome, paper, ours = str(err), "not evaluated", NA, NA
        rows.append(
            {
                "id": claim.id,
                "claim": claim.text,
                "short": claim.short,
                "chapter": claim.chapter,
                "paper": paper,
                "ours": ours,
                "evidence": evidence,
                "verdict": outcome,
            }
        )
    return pd.DataFrame(rows)


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


def _page_label(page: str) -> str:
    """``"02_losses"`` -> ``"chapter 2"``; a page without a number keeps its name."""
    number = page.split("_", 1)[0]
    return f"chapter {int(number)}" if number.isdigit() else page


def _short(row: Any) -> str:
    short = getattr(row, "short", None)
    return short if isinstance(short, str) and short else row.claim


def at_a_glance(verdicts: pd.DataFrame, documents: Mapping[str, str]) -> pd.DataFrame:
    """The paper at a glance (the landing page): per claim its wording, linked to the chapter that
    measures it (``documents`` maps a chapter to its page, e.g. ``{"losses": "02_losses"}``), the
    paper's number, ours with its interval, and the verdict. ``verdicts`` is :func:`judge_all`'s
    table (or the claims page's saved copy of it)."""
    missing = sorted(set(verdicts.chapter) - set(documents))
    if missing:
        raise ValueError(f"No page for chapter(s) {', '.join(missing)}; known: {', '.join(sorted(documents))}.")
    rows = {
        row.id: {
            "claim": f"[{_short(row)}]({documents[row.chapter]}.ipynb) ({_page_label(documents[row.chapter])})",
            "paper": row.paper,
            "ours (95 % interval)": row.ours,
            "verdict": f"**{row.verdict}**",
        }
        for row in verdicts.itertuples()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("id")


def verdict_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The claims page's table: each claim with the evidence its judge wrote and the verdict."""
    table = verdicts.set_index("id")[["claim", "evidence", "verdict"]].copy()
    table["verdict"] = "**" + table["verdict"] + "**"
    return table


def saved_verdicts(results: Mapping[str, Any]) -> pd.DataFrame:
    """The verdict table the claims page saved (``results["verdicts"]``), as :func:`judge_all` returned it."""
    if "verdicts" not in results:
        raise ValueError("These results hold no verdicts: they are not the claims page's results.")
    return pd.DataFrame(list(results["verdicts"]))
