"""Chapter 1's figures (arXiv:2205.07890, claims C3 and C6), each a Matplotlib figure made from
the chapter's tables (:mod:`encsteal.experiments.api_cost`) and no wider than the book's text
column: the copies' few-label accuracy against the number of queries, the paper's API output sizes
beside the share of the victim's margin our copies recover, the training/stealing cost ratio over
the price grid, and that ratio beside the one quoted around the paper."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from encsteal import cost, paper_tables
from encsteal.experiments import api_cost
from encsteal.experiments.api_cost import FAR_LESS, RANDOM, SSL

WIDTH = 9.0
"""Inches: at the book's 110 dpi this fits the text column at 1280 px."""
OUTPUT_COLOURS: dict[str, str] = {
    "representation": "C0",
    "probabilities": "C1",
    "topk": "C2",
    "label": "C3",
    SSL: "C4",
}
PAPER_COLOUR = "#8c1c13"
"""The paper's numbers in every figure of the chapter."""
OURS_COLOUR = "#2f4b7c"


def _colour(output: str) -> str:
    return OUTPUT_COLOURS.get(output, "C7")


def _check_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table]
    if missing:
        raise ValueError(
            f"{what} needs the columns {', '.join(missing)} (it has {', '.join(map(str, table.columns))})."
        )


def curves_figure(curves: pd.DataFrame, margins: pd.DataFrame) -> Figure:
    """One panel per task: each API's copy, few-label accuracy (%) against queries (log scale), mean
    over seeds with its 95 % interval as a band (``curves``: :func:`api_cost.curve_table`), the
    victim (dashed) and the random-init encoder (dotted) from ``margins``
    (:func:`api_cost.margin_summary`); a task outside the verdict is titled so."""
    _check_columns(curves, ["task", "output", "budget", "mean", "low", "high"], "curves_figure")
    _check_columns(margins, ["victim few_label", "random-init few_label", "judged"], "curves_figure")
    tasks = list(dict.fromkeys(curves.task))
    if not tasks:
        raise ValueError("curves_figure got no curve: run the leakage grid first.")
    fig, axes = plt.subplots(1, len(tasks), figsize=(min(WIDTH, 1.0 + 3.9 * len(tasks)), 3.6), squeeze=False)
    budgets = sorted(int(b) for b in curves.budget.unique())
    for ax, task in zip(axes[0], tasks):
        t = curves[curves.task == task]
        for output, g in t.groupby("output", sort=False):
            g = g.sort_values("budget")
            ax.plot(g.budget, g["mean"], marker="o", color=_colour(output), label=output)
            ok = g[["low", "high"]].notna().all(axis=1)
            if ok.any():
                ax.fill_between(g.budget[ok], g.low[ok], g.high[ok], color=_colour(output), alpha=0.15, lw=0)
        m = margins.loc[task]
        ax.axhline(m["victim few_label"], ls="--", color="black", lw=1, label="victim")
        ax.axhline(m["random-init few_label"], ls=":", color="grey", lw=1.2, label="random-init encoder")
        ax.set_xscale("log")
        ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
        ax.minorticks_off()
        ax.set_title(task if m["judged"] else f"{task} (not judged)")
        ax.set_xlabel("queries (log scale)")
    axes[0][0].set_ylabel("few-label probe of the copy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, bbox_to_anchor=(0.5, -0.02)
    )
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def leakage_vs_size_figure(summary: pd.DataFrame, sizes: Mapping[str, int], judged: Sequence[str]) -> Figure:
    """Paper vs ours on claim C3. The paper published no leakage number, only the sizes of the
    outputs it contrasts (:data:`encsteal.paper_tables.API_DIMENSIONS`): the top panel, labelled as
    the paper's, with dashed lines running through both panels. Below, our copies' share of the
    victim's margin over the random-init encoder (log-budget AUC, ``summary``:
    :func:`api_cost.leakage_summary`, mean and 95 % interval over seeds) at the number of values
    each of our APIs returns (``sizes``: :func:`api_cost.values_per_answer`), one colour per task
    (hollow: not judged)."""
    _check_columns(summary, ["task", "output", "share", "share low", "share high"], "leakage_vs_size_figure")
    sizes = {str(k): int(v) for k, v in dict(sizes).items()}
    shown = summary[(summary.output != RANDOM) & summary.output.isin(list(sizes))]
    if shown.empty:
        raise ValueError(f"leakage_vs_size_figure: no output of {sorted(sizes)} in the summary.")
    fig, (top, ax) = plt.subplots(
        2, 1, figsize=(WIDTH, 5.8), sharex=True, gridspec_kw={"height_ratios": [1.5, 2.4], "hspace": 0.04}
    )
    tasks = list(dict.fromkeys(shown.task))
    nudges = np.exp(np.linspace(-0.08, 0.08, len(tasks))) if len(tasks) > 1 else [1.0]
    for i, (task, nudge) in enumerate(zip(tasks, nudges)):
        t = shown[shown.task == task]
        x = np.array([sizes[o] for o in t.output], dtype=float) * nudge
        y = t.share.to_numpy(dtype=float)
        err = np.vstack([y - t["share low"].to_numpy(dtype=float), t["share high"].to_numpy(dtype=float) - y])
        filled = task in judged
        ax.errorbar(
            x,
            y,
            yerr=np.nan_to_num(err),
            fmt="o",
            color=f"C{i}",
            mfc=f"C{i}" if filled else "white",
            capsize=3,
            label=f"ours: {task}" + ("" if filled else " (not judged)"),
        )
    ours = {o: sizes[o] for o in dict.fromkeys(shown.output)}
    ticks = sorted(set(ours.values()))
    for name, value in paper_tables.API_DIMENSIONS.items():
        for panel in (top, ax):
            panel.axvline(value, color=PAPER_COLOUR, ls="--", lw=0.9, alpha=0.7)
        label = textwrap.fill(f"{name} ({value})", 24)
        top.text(value * 0.96, 0.03, label, rotation=90, va="bottom", ha="right", fontsize=8, color=PAPER_COLOUR)
    top.set_ylim(0, 1)
    top.set_yticks([])
    top.grid(False)
    top.set_ylabel("paper: its models\n(its text; no\nleakage number)", fontsize=8)
    ax.set_xscale("log")
    ax.set_xticks(ticks, ["\n".join([str(v)] + [o for o, s in ours.items() if s == v]) for v in ticks], fontsize=9)
    ax.minorticks_off()
    ax.axhline(0.0, color="grey", ls=":", lw=1.2)
    ax.axhline(1.0, color="black", ls="--", lw=1)
    ax.set_xlim(min(0.5, min(ours.values()) * 0.6), max(paper_tables.API_DIMENSIONS.values()) * 2.2)
    ax.set_xlabel("values per answer (log scale): our APIs under the axis, the paper's models as dashed lines")
    ax.set_ylabel("ours: share of the victim's\nmargin the copy recovers")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="black", ls="--", lw=1), Line2D([], [], color="grey", ls=":", lw=1.2)]
    labels += ["victim (share 1)", "random-init encoder (share 0)"]
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=9, bbox_to_anchor=(0.5, -0.01))
    fig.subplots_adjust(bottom=0.22, top=0.98, left=0.11, right=0.98)
    return fig


def cost_ratio_figure(grid: pd.DataFrame, factor: float = FAR_LESS) -> Figure:
    """Training cost / stealing cost against the API price (log-log), one panel per accounting of
    the queries (:data:`encsteal.cost.ACCOUNTING`), one colour per setup and one line style per
    compute price (``grid``: :func:`api_cost.cost_grid`); dashed: ``factor`` times cheaper, dotted:
    break-even. A free API (price 0) cannot sit on a log axis and is left out."""
    _check_columns(
        grid, ["setup", "accounting", "compute_per_hour", "api_per_1k", "train_over_steal"], "cost_ratio_figure"
    )
    shown = grid[grid.api_per_1k > 0]
    if shown.empty:
        raise ValueError("cost_ratio_figure: no positive API price in the grid.")
    accountings = [a for a in cost.ACCOUNTING.values() if a in set(shown.accounting)]
    setups = list(dict.fromkeys(shown.setup))
    computes = sorted(shown.compute_per_hour.unique())
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(accountings), figsize=(WIDTH, 3.8), sharey=True, squeeze=False)
    for ax, accounting in zip(axes[0], accountings):
        a = shown[shown.accounting == accounting]
        for i, setup in enumerate(setups):
            for j, c in enumerate(computes):
                g = a[(a.setup == setup) & (a.compute_per_hour == c)].sort_values("api_per_1k")
                ax.plot(g.api_per_1k, g.train_over_steal, marker="o", ms=3, color=f"C{i}", ls=styles[j % len(styles)])
        ax.axhline(factor, ls="--", color="black", lw=1)
        ax.axhline(1.0, ls=":", color="grey", lw=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(accounting, fontsize=10)
        ax.set_xlabel("API price (USD per 1,000 queries)")
    axes[0][0].set_ylabel("training cost / stealing cost")
    handles = [Line2D([], [], color=f"C{i}") for i in range(len(setups))]
    handles += [Line2D([], [], color="grey", ls=styles[j % len(styles)]) for j in range(len(computes))]
    handles += [Line2D([], [], color="black", ls="--", lw=1), Line2D([], [], color="grey", ls=":", lw=1.2)]
    labels = setups + [f"compute {c:g} USD/hour" for c in computes]
    labels += [f"stealing {factor:g}x cheaper", "break-even"]
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, fontsize=9, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    return fig


def cost_paper_vs_ours_figure(grid: pd.DataFrame, quoted_ratio: float, factor: float = FAR_LESS) -> Figure:
    """Paper vs ours on claim C6: the training/stealing cost ratio quoted around the paper (one
    diamond, labelled with its provenance) above our ratios per setup and accounting, each the
    range (line) and the points (dots) of the price grid (``grid``: :func:`api_cost.cost_grid`): a
    range over assumed prices, not a confidence interval. Dashed: ``factor`` times cheaper; dotted:
    break-even."""
    _check_columns(grid, ["setup", "accounting", "train_over_steal"], "cost_paper_vs_ours_figure")
    if not quoted_ratio > 0:
        raise ValueError(f"quoted_ratio must be a positive ratio, got {quoted_ratio}.")
    rows = [(s, a) for s in dict.fromkeys(grid.setup) for a in cost.ACCOUNTING.values() if a in set(grid.accounting)]
    fig, ax = plt.subplots(figsize=(WIDTH, 1.4 + 0.42 * (len(rows) + 1)))
    y = np.arange(len(rows) + 1)[::-1]
    ax.plot(
        [quoted_ratio],
        [y[0]],
        marker="D",
        ms=8,
        color=PAPER_COLOUR,
        ls="none",
        label="paper: quoted on the authors' blog (citing SSLGuard)",
    )
    ax.annotate(
        f"{quoted_ratio:.0f}x",
        (quoted_ratio, y[0]),
        xytext=(-10, 0),
        textcoords="offset points",
        ha="right",
        va="center",
        fontsize=9,
        color=PAPER_COLOUR,
    )
    for k, (setup, accounting) in enumerate(rows, start=1):
        r = grid[(grid.setup == setup) & (grid.accounting == accounting)].train_over_steal.to_numpy(dtype=float)
        ax.hlines(
            y[k],
            r.min(),
            r.max(),
            color=OURS_COLOUR,
            lw=2.5,
            label="ours: range over the price grid" if k == 1 else None,
        )
        ax.plot(
            r,
            np.full(len(r), y[k]),
            "o",
            ms=3.5,
            color="white",
            mec=OURS_COLOUR,
            label="ours: one point of the price grid" if k == 1 else None,
        )
    ax.axvline(factor, ls="--", color="black", lw=1)
    ax.axvline(1.0, ls=":", color="grey", lw=1.2)
    ax.set_xscale("log")
    labels = ["paper (quoted)"] + [f"{s}\n{a}" for s, a in rows]
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlabel(f"training cost / stealing cost (log scale; dashed: {factor:g}x, dotted: break-even)")
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, frameon=False, fontsize=9, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.8 / fig.get_size_inches()[1], 1, 1))
    return fig


def chapter_figures(ch: api_cost.ApiCostChapter) -> dict[str, Figure]:
    """Every figure chapter 1 shows, keyed by the name the page glues it under (prefixed ``api_cost_``)."""
    return {
        "curves": curves_figure(ch.curves, ch.margin_summary),
        "leakage_vs_paper": leakage_vs_size_figure(
            api_cost.leakage_summary(ch.scores), api_cost.values_per_answer(ch.outputs), ch.judged
        ),
        "cost_ratio": cost_ratio_figure(ch.cost_grid),
        "cost_vs_paper": cost_paper_vs_ours_figure(ch.cost_grid, api_cost.quoted_ratio()),
    }
