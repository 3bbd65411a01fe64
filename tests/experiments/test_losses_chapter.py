"""Chapter 2 (losses, claims C1 and C2): the judges on synthetic results for every outcome, the
tables and sentences built from results, the plan of runs and the query pools."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from encsteal import params
from encsteal.data.imageset import ImageSet
from encsteal.experiments import losses as L

TASKS = ("mnistm", "photocrops")
GRID = {"mse": 50.0, "infonce": 55.0, "softnn": 54.0, "wasserstein": 49.0, "barlow": 44.0, "barlow_official": 42.0}


def _results(
    grid=None,
    seeds=(0, 1, 2, 3, 4),
    victim=60.0,
    random=40.0,
    noise=0.2,
    sweep=None,
    budgets=(50, 100, 250, 500, 1000),
    n_train=5000,
    ood=None,
    drop=(),
):
    """Synthetic chapter results. ``grid``: loss -> mean probe accuracy (or task -> mean) of the
    in-distribution cells at the grid's budget (500); ``sweep``: budget -> share of the victim's
    margin of the sweep loss (InfoNCE; at 500 it replaces the grid's InfoNCE cells, as the chapter
    reuses them); ``ood``: loss -> accuracy with digits queries (seed 0). Each seed has an offset
    shared by every grid loss (it cancels in paired differences) plus a small noise of its own;
    grid losses with the same mean get the same values (their difference is exactly 0)."""
    grid = dict(GRID if grid is None else grid)
    sweep = dict(sweep or {})
    rng = np.random.default_rng(0)
    offset = {s: rng.normal(0, 2.0) for s in seeds}
    noise_of: dict = {}
    cells = []
    for loss, mean in grid.items():
        for task in TASKS:
            m = mean[task] if isinstance(mean, dict) else mean
            for s in seeds:
                if (m, s) not in noise_of:
                    noise_of[(m, s)] = rng.normal(0, noise)
                cells.append(_cell(loss, "fmnist", 500, s, task, m + offset[s] + noise_of[(m, s)]))
    if 500 in sweep:
        cells = [c for c in cells if c["loss"] != "infonce"]
    for b, share in sweep.items():
        for task in TASKS:
            for s in seeds:
                cells.append(
                    _cell("infonce", "fmnist", b, s, task, random + share * (victim - random) + 0.1 * offset[s])
                )
    for loss, mean in (ood or {}).items():
        for task in TASKS:
            cells.append(_cell(loss, "digits", 500, 0, task, mean))
    base = []
    for task in TASKS:
        for s in seeds:
            base.append({"encoder": "victim", "seed": s, "task": task, "probe": victim, "few_label": victim - 20})
            base.append({"encoder": "random init", "seed": s, "task": task, "probe": random + 0.5 * (s % 2)})
    return {
        "metric": "probe",
        "victim_dataset": "fmnist",
        "victim_num_train": n_train,
        "victim_seconds": 1.0,
        "in_distribution": "fmnist",
        "query_sets": ["fmnist", "digits"],
        "judged_tasks": list(TASKS),
        "losses": [*grid, *(loss for loss in (ood or {}) if loss not in grid)],
        "budget": 500,
        "epochs": 10,
        "seeds": list(seeds),
        "shown_seeds": [0],
        "sweep_loss": "infonce",
        "budgets": list(budgets),
        "cells": [c for c in cells if c["loss"] not in drop],
        "baselines": base,
    }


def _cell(loss, qs, budget, seed, task, probe):
    return {
        "loss": loss,
        "query_set": qs,
        "budget": budget,
        "epochs": 10,
        "seed": seed,
        "task": task,
        "probe": probe,
        "few_label": probe - 20,
        "knn": probe,
        "victim_head": probe,
        "cosine": 0.5,
        "cka": 0.5,
    }


# ---- claim C1 ----------------------------------------------------------------------------------------------


def test_c1_reproduced_when_a_contrastive_loss_is_separably_best_and_barlow_separably_worst():
    r = _results()
    for barlow in L.PAIRINGS:
        v = L.judge_losses(r, barlow)
        assert v.verdict == "reproduced", v.evidence
        assert "16 paired comparisons" in v.evidence and "mnistm: infonce 5" in v.evidence


def test_c1_partly_when_only_the_contrastive_part_holds():
    # Barlow ties MSE and Wasserstein exactly: not separably worst, and not separably better either
    r = _results({**GRID, "wasserstein": 50.0, "barlow": 50.0, "barlow_official": 50.0})
    v = L.judge_losses(r)
    assert v.verdict == "partly reproduced", v.evidence
    assert "contrastive separably best on 2 of 2 tasks, Barlow separably worst on 0 of 2" in v.evidence


def test_c1_partly_when_only_the_barlow_part_holds():
    same = {"mse": 50.0, "infonce": 50.0, "softnn": 50.0, "wasserstein": 50.0, "barlow": 40.0, "barlow_official": 40.0}
    v = L.judge_losses(_results(same))
    assert v.verdict == "partly reproduced", v.evidence
    assert "Barlow separably worst on 2 of 2" in v.evidence


def test_c1_partly_when_the_contrastive_part_holds_on_one_task_only():
    grid = {**GRID, "infonce": {"mnistm": 55.0, "photocrops": 50.0}, "softnn": {"mnistm": 54.0, "photocrops": 50.0}}
    v = L.judge_losses(_results(grid))
    assert v.verdict == "partly reproduced", v.evidence
    assert "contrastive separably best on 1 of 2" in v.evidence


def test_c1_not_reproduced_when_the_losses_are_not_separable():
    # a random ranking: every loss about 50 %, seed-level noise of 3 points of its own
    r = _results({loss: 50.0 + 0.1 * k for k, loss in enumerate(GRID)}, noise=3.0)
    v = L.judge_losses(r)
    assert v.verdict == "not reproduced", v.evidence
    assert "no difference separable" in v.evidence
    assert "not separable at this scale" in L.separability_text(r)


def test_c1_not_reproduced_when_the_order_is_reversed():
    reversed_grid = {"mse": 50.0, "infonce": 45.0, "softnn": 44.0, "wasserstein": 49.0, "barlow": 60.0}
    v = L.judge_losses(_results({**reversed_grid, "barlow_official": 60.0}))
    assert v.verdict == "not reproduced" and "order reversed on mnistm, photocrops" in v.evidence


def test_c1_not_reproduced_when_one_part_holds_but_the_other_is_reversed():
    # contrastive best, but Barlow separably above MSE: the "worst" part is reversed
    v = L.judge_losses(_results({**GRID, "barlow": 51.0, "barlow_official": 51.0}))
    assert v.verdict == "not reproduced" and "order reversed" in v.evidence


def test_c1_judges_the_two_barlow_pairings_separately():
    r = _results({**GRID, "wasserstein": 50.0, "barlow": 50.0, "barlow_official": 40.0})
    assert L.judge_losses(r, "barlow").verdict == "partly reproduced"
    official = L.judge_losses(r, "barlow_official")
    assert official.verdict == "reproduced" and "official code's pairing" in official.claim
    with pytest.raises(ValueError, match="Unknown Barlow pairing"):
        L.judge_losses(r, "barlow_twins")


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"drop": ("softnn",)}, "softnn on mnistm lacks seeds"),
        ({"seeds": (0, 1)}, "only 2 seeds"),
        ({"victim": 40.5}, "no judged task where the victim beats random init"),
    ],
)
def test_c1_not_evaluated_without_the_data_it_needs(kwargs, why):
    v = L.judge_losses(_results(**kwargs))
    assert v.verdict == "not evaluated" and why in v.evidence
    assert L.judge_losses({"seeds": [0, 1, 2, 3, 4]}).verdict == "not evaluated"  # nothing saved at all


def test_comparisons_are_paired_by_seed_and_holm_corrected():
    r = _results()
    c = L.comparisons(r)
    assert len(c) == 16 and set(c.task) == set(TASKS)
    row = c[(c.task == "mnistm") & (c.a == "infonce") & (c.b == "mse")].iloc[0]
    assert row.difference == pytest.approx(5.0, abs=0.5) and row.sign == 1
    # the seed offsets (sd 2) cancel: the paired interval is much narrower than the seeds' spread
    assert row.high - row.low < 1.5
    # InfoNCE 1 point above four tied losses, p about 0.005 per test: each would pass alone at 0.05,
    # none passes Holm's correction over the 16 comparisons (the smallest p must be < 0.05 / 16)
    tied = _results({loss: 50.0 for loss in GRID})
    for cell in tied["cells"]:
        if cell["loss"] == "infonce":
            cell["probe"] += [1.0, 1.5, 0.5, 1.2, 0.8][cell["seed"]]
    weak = L.comparisons(tied)
    assert (weak.p < 0.05).sum() == 6 and not weak.separable.any()
    assert L.judge_losses(tied).verdict == "not reproduced"


def test_margin_table_judges_only_tasks_with_a_clear_margin():
    r = _results()
    m = L.margin_table(r)
    assert m.loc["mnistm", "victim"] == 60 and m.loc["mnistm", "margin"] == pytest.approx(19.8)
    assert list(m.judged) == [True, True]
    assert L.judged_tasks(_results(victim=44.0)) == []  # margin about 4 points: below MIN_MARGIN
    assert "Tasks judged" in L.margin_text(r)


def test_loss_table_has_means_intervals_and_shares():
    r = _results()
    t = L.loss_table(r)
    infonce = t.loc["infonce", "mnistm"]
    assert infonce["low"] < infonce["mean"] < infonce["high"] and infonce["seeds"] == 5
    # share of margin: mean over seeds of (copy - random_s) / (victim - random_s)
    assert 0.6 < infonce["share"] < 0.9
    display = L.loss_display(r)
    cell = display.loc["infonce", "mnistm: probe accuracy (%)"]
    m, lo, hi = _t_interval(_probe(r, "infonce", "mnistm"))
    assert cell == f"{m:.1f} [{lo:.1f},\u00a0{hi:.1f}]"  # the bracket never breaks across lines
    assert display.loc["infonce", "seeds"] == "5"
    ood = L.loss_display(_results(ood={"mse": 45.0, "supcon": 58.0}), "digits")
    assert ood.loc["supcon", "mnistm: probe accuracy (%)"] == "58.0"  # one seed: no interval


# ---- claim C2 ----------------------------------------------------------------------------------------------

SWEEP_OK = {50: 0.3, 100: 0.55, 250: 0.75, 500: 0.85, 1000: 0.9}


def test_c2_reproduced_when_80_percent_is_reached_within_a_fifth():
    v = L.judge_few_queries(_results(sweep=SWEEP_OK))
    assert v.verdict == "reproduced", v.evidence
    assert "80% of the margin: interval above it from" in v.evidence


def test_c2_partly_when_only_50_percent_is_reached():
    v = L.judge_few_queries(_results(sweep={50: 0.1, 100: 0.2, 250: 0.4, 500: 0.6, 1000: 0.7}))
    assert v.verdict == "partly reproduced", v.evidence
    assert "80% of the margin: not reached within the sweep" in v.evidence


def test_c2_only_counts_budgets_within_a_fifth_of_the_training_set():
    # 80 % only at 2,000 queries (40 %): beyond the claim's budget
    sweep = {50: 0.1, 100: 0.2, 250: 0.4, 500: 0.6, 1000: 0.7, 2000: 0.9}
    v = L.judge_few_queries(_results(sweep=sweep, budgets=tuple(sweep)))
    assert v.verdict == "partly reproduced", v.evidence


def test_c2_not_reproduced_when_copies_are_no_better_than_random():
    v = L.judge_few_queries(_results(sweep={50: 0.0, 100: 0.0, 250: 0.01, 500: 0.0, 1000: 0.02}))
    assert v.verdict == "not reproduced", v.evidence


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"sweep": SWEEP_OK, "budgets": (2000, 3000)}, "no sweep budget within 20%"),
        ({"sweep": SWEEP_OK, "seeds": (0, 1)}, "only 2 seeds"),
        ({"sweep": {500: 0.85}}, "infonce on mnistm at 50 queries lacks seeds"),
        ({"sweep": SWEEP_OK, "victim": 40.5}, "no judged task where the victim beats random init"),
    ],
)
def test_c2_not_evaluated_without_the_data_it_needs(kwargs, why):
    v = L.judge_few_queries(_results(**kwargs))
    assert v.verdict == "not evaluated" and why in v.evidence


def test_crossing_interpolates_in_log_budget():
    assert L.crossing([100, 1000], [0.4, 0.6], 0.5) == pytest.approx(math.sqrt(100 * 1000))
    assert L.crossing([50, 100], [0.9, 0.95], 0.8) == 50
    assert L.crossing([50, 100], [0.1, 0.2], 0.5) is None
    assert L.crossing([50, 100, 200], [0.6, float("nan"), 0.4], 0.8) is None
    assert L.crossing([50, 100, 200], [0.1, 0.9, 0.4], 0.5) == pytest.approx(math.exp(math.log(50) + 0.5 * math.log(2)))


def test_queries_needed_reads_the_band():
    r = _results(sweep={50: 0.3, 100: 0.55, 250: 0.75, 500: 0.85, 1000: 0.9})
    q = L.queries_needed(r).set_index(["task", "level"])
    row = q.loc[("mnistm", 0.5)]
    assert 50 < row.low <= row.estimate <= row.high < 250 and row.seeds_reaching == 5
    assert q.loc[("mnistm", 0.8), "estimate"] == pytest.approx(math.exp(math.log(250) + 0.5 * math.log(2)), rel=0.05)
    partly = L.queries_needed(_results(sweep={50: 0.1, 100: 0.2, 250: 0.4, 500: 0.6, 1000: 0.7}))
    assert math.isnan(partly.set_index(["task", "level"]).loc[("mnistm", 0.8), "high"])
    shown = L.queries_display(_results(sweep={50: 0.1, 100: 0.2, 250: 0.4, 500: 0.6, 1000: 0.7}))
    assert shown.loc["mnistm: 80%", "queries (mean)"] == "beyond 1,000 (20%)"
    assert "never reaches 80% of the margin within 1,000" in L.few_queries_text(
        _results(sweep={50: 0.1, 100: 0.2, 250: 0.4, 500: 0.6, 1000: 0.7})
    )


# ---- sentences and figures ----------------------------------------------------------------------------------


def test_barlow_pairing_text_is_chosen_by_the_results():
    gap = L.barlow_pairing_text(_results({**GRID, "wasserstein": 50.0, "barlow": 50.0, "barlow_official": 40.0}))
    assert "separably lower than the correct one" in gap and "supports reading" in gap
    assert "The official pairing is separably the worst label-free loss on every judged task; the correct" in gap
    none = L.barlow_pairing_text(_results({**GRID, "barlow_official": 44.0}))
    assert "not separable from the correct one" in none and "does not single out" in none
    assert "Both pairings are separably the worst" in none
    assert "needed" in L.barlow_pairing_text(_results(drop=("barlow_official",)) | {"losses": list(GRID)[:-1]})


def test_supcon_text_and_paper_comparison():
    r = _results(ood={"mse": 45.0, "supcon": 58.0, "infonce": 47.0})
    text = L.ood_text(r)
    # seed 0 only (random init 40, victim 60): shares (45 - 40) / 20 = 25 % (mse), (47 - 40) / 20 = 35 % (infonce)
    assert "recover between 25% and 35% of the victim's margin (best: infonce, 47.0 %), SupCon 58.0 %" in text
    assert "(1 seed, not judged)" in text
    both = L.paper_comparison(r)
    ind, ood = both["in-distribution"], both["out-of-distribution"]
    assert ind.loc["barlow", "paper: CIFAR10"] == "26.9 (6)" and ood.loc["barlow", "paper: STL10"] == "16.3 (6)"
    # the paper's single Barlow row stands beside both pairings: no empty row
    assert ind.loc["barlow_official", "paper: CIFAR10"] == "26.9 (6)"
    assert ind.loc["infonce", "ours (fmnist): mnistm"].endswith("(1)")
    assert ood.loc["supcon", "ours (digits): mnistm"] == "58.0 (1)"
    assert ood.loc["softnn", "ours (digits): mnistm"] == "n/a"  # not stolen with digits queries
    assert list(ind.columns[:2]) == ["paper: STL10", "paper: CIFAR10"] and len(ind.columns) == len(ood.columns) == 4
    assert "No out-of-distribution copy" in L.ood_text(_results())


def test_texts_and_figures_run_on_partial_results():
    import matplotlib

    matplotlib.use("Agg")
    r = _results(sweep=SWEEP_OK)
    assert "with barlow on mnistm: a contrastive loss is separably best and Barlow separably worst" in (
        L.separability_text(r)
    )
    assert L.verdict_text(L.judge_losses(r)).startswith("**Reproduced**")
    shown = L.comparison_display(r)  # per task: 4 pairs shared by both families, 4 of each pairing
    assert len(shown) == 2 * 12 and shown.loc["mnistm: infonce − mse", "separable (official pairing)"] == "yes, higher"
    assert shown.loc["mnistm: infonce − barlow", "separable (official pairing)"] == "–"
    L.plot_losses(r)
    L.plot_sweep(r)
    small = _results(grid={"mse": 50.0, "infonce": 51.0}, seeds=(0, 1))
    assert "not all run" in L.separability_text(small)
    L.plot_losses(small)
    L.plot_sweep(small)


# ---- running: the plan, the query pools ---------------------------------------------------------------------


def test_plan_reuses_the_grid_cells_in_the_sweep_and_keeps_compute():
    p = params.resolve("quick")
    cells = L.plan(p)
    assert len(cells) == len(set(cells))
    grid = [c for c in cells if c.query_set == "fmnist" and c.budget == p.budget and c.loss in L.LABEL_FREE]
    assert len(grid) == len(L.LABEL_FREE) * len(p.seeds)  # the sweep's InfoNCE cells at 500 are among them
    sweep = {c.budget: c.epochs for c in cells if c.loss == p.sweep_loss and c.query_set == "fmnist"}
    assert sweep == {50: 40, 250: 20, 500: 10, 1000: 10}  # 40 optimiser steps or more
    assert L.sweep_epochs(100, 500, 10) == 40 and L.sweep_epochs(2000, 500, 10) == 10
    # every measure for the grid's cells (the sweep's cells at 500 among them), the probe for the others
    assert all(c.full == (c.budget == p.budget and c.query_set == "fmnist") for c in cells)
    assert all(c.epochs * math.ceil(c.budget / L.BATCH) >= 40 for c in cells)
    ood = [c for c in cells if c.query_set == "digits"]
    assert len(ood) == len(p.losses) * len(p.shown_seeds)
    supcon = [c for c in cells if c.loss == "supcon" and c.query_set == "fmnist"]
    assert [c.seed for c in supcon] == p.shown_seeds  # it uses labels: shown, never judged


def _tagged(n=400):
    """A fake data set whose image i stores i in its first two pixels."""
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) // 256
    images[:, 0, 0, 1] = torch.arange(n) % 256
    return ImageSet("fake", images, torch.arange(n) % 10, tuple("0123456789"))


def _ids(s: ImageSet) -> set[int]:
    return set((s.images[:, 0, 0, 0].long() * 256 + s.images[:, 0, 0, 1].long()).tolist())


def test_query_pool_excludes_the_victims_and_the_probes_images(monkeypatch):
    from encsteal.data import splits

    fake = _tagged()
    monkeypatch.setattr(L, "load", lambda name, split: fake)
    monkeypatch.setattr(splits, "load", lambda name, split, *a: fake)
    sizes = {"probe_train": 50, "probe_val": 20, "probe_test": 0}
    pool = L.query_pool("fake", "fake", 100, 3, ["fake"], sizes, 5)  # victim and probes drawn with other seeds
    victim = _ids(splits.role_splits("fake", {"victim": 100}, seed=3)["victim"])
    probe = splits.role_splits("fake", {"victim": 100, "probe_train": 50, "probe_val": 20}, seed=5)
    probes = _ids(probe["probe_train"]) | _ids(probe["probe_val"])
    assert _ids(pool) == set(range(400)) - victim - probes
    other = L.query_pool("fake", "fmnist", 100, 3, [], sizes, 5)  # neither the victim's nor a probe set
    assert len(other) == 400
    a, b = L.seed_queries(pool, 0, 60), L.seed_queries(pool, 1, 60)
    assert _ids(a) <= _ids(pool) and _ids(a) != _ids(b) and len(_ids(a)) == 60
    assert _ids(L.seed_queries(pool, 0, 30)) <= _ids(a)  # a seed's smaller budget is inside its larger one
    with pytest.raises(ValueError, match="exceeds"):
        L.seed_queries(pool, 0, len(pool) + 1)


def test_evaluate_probe_fits_the_probe_exactly_as_evaluate():
    from encsteal.experiments.downstream import evaluate, prepare_downstream
    from encsteal.seeds import random_init_encoder

    victim, copy = (random_init_encoder("convnet", 1, 28, s) for s in (0, 1))
    sizes = {"probe_train": 200, "probe_val": 100, "probe_test": 150}
    task = prepare_downstream("digits", victim, sizes, per_class=5, Cs=(0.1, 1.0))
    full, lean = evaluate(copy, task, seed=3), L.evaluate_probe(copy, task)
    for key in ("probe", "victim_head", "cosine", "cka"):
        assert lean[key] == pytest.approx(full[key])
    assert math.isnan(lean["few_label"]) and math.isnan(lean["knn"])


def test_results_hold_per_seed_values():
    r = _results(sweep=SWEEP_OK)
    chapter = L.LossChapter(r["cells"], r["baselines"], {k: v for k, v in r.items() if k not in ("cells", "baselines")})
    saved = chapter.results()
    assert saved["cells"] == r["cells"] and saved["seeds"] == [0, 1, 2, 3, 4]
    assert L.cell_values(saved, "infonce", "mnistm", budget=100).index.tolist() == [0, 1, 2, 3, 4]


# ---- the page: reader tables, the paper beside ours, the paper at a glance ----------------------------------


def _t_interval(values):
    """Reference: mean and 95 % Student-t interval, written out."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _probe(r, loss, task, qs="fmnist", budget=500):
    """Per-seed probe accuracies of one cell, in seed order (plain loop over the saved rows)."""
    rows = [c for c in r["cells"] if (c["loss"], c["task"], c["query_set"], c["budget"]) == (loss, task, qs, budget)]
    return [c["probe"] for c in sorted(rows, key=lambda c: c["seed"])]


def test_c1_verdict_carries_the_papers_numbers_and_ours_on_every_path():
    r = _results()
    for barlow in L.PAIRINGS:
        v = L.judge_losses(r, barlow)
        assert "SoftNN 67.1/76.9" in v.paper and "Barlow 26.6/26.9" in v.paper and "STL10/CIFAR10" in v.paper
        for task in TASKS:
            for name, loss in (("InfoNCE", "infonce"), ("Barlow", barlow)):  # InfoNCE: the best contrastive
                m, lo, hi = _t_interval(_probe(r, loss, task))
                assert f"{name} {m:.1f} [{lo:.1f}, {hi:.1f}]" in v.ours, v.ours
        assert len(v.paper) <= 120 and len(v.ours) <= 130
    few_seeds = L.judge_losses(_results(seeds=(0, 1)))
    assert few_seeds.verdict == "not evaluated" and "InfoNCE" in few_seeds.ours and few_seeds.paper == v.paper
    no_margin = L.judge_losses(_results(victim=40.5))
    assert no_margin.verdict == "not evaluated" and "Barlow" in no_margin.ours and no_margin.paper != "n/a"
    nothing = L.judge_losses({"seeds": [0, 1, 2, 3, 4]})
    assert nothing.ours == L.NOT_MEASURED and nothing.paper == v.paper


def test_c2_verdict_carries_the_papers_words_and_our_shares_on_every_path():
    r = _results(sweep=SWEEP_OK)
    v = L.judge_few_queries(r)
    assert v.paper == L.PAPER_C2 and "no number published" in v.paper and len(v.paper) <= 120
    assert v.ours.startswith("share of margin at 1,000 queries (20%): ")
    for task in TASKS:
        random = {b["seed"]: b["probe"] for b in r["baselines"] if b["task"] == task and b["encoder"] == "random init"}
        rows = sorted((c for c in r["cells"] if c["budget"] == 1000 and c["task"] == task), key=lambda c: c["seed"])
        shares = [(c["probe"] - random[c["seed"]]) / (60.0 - random[c["seed"]]) for c in rows]
        m, lo, hi = _t_interval(shares)
        assert f"{task} {m:.2f} [{lo:.2f}, {hi:.2f}]" in v.ours, v.ours
    outside = L.judge_few_queries(_results(sweep=SWEEP_OK, budgets=(2000, 3000)))
    assert outside.paper == L.PAPER_C2 and outside.ours == "no sweep budget within 20% of the training set"
    two = L.judge_few_queries(_results(sweep=SWEEP_OK, seeds=(0, 1)))
    assert two.verdict == "not evaluated" and "mnistm" in two.ours
    assert L.judge_few_queries(_results(sweep=SWEEP_OK, victim=40.5)).ours != "n/a"
    assert L.judge_few_queries(_results(sweep=SWEEP_OK) | {"cells": []}).ours == L.NOT_MEASURED


def test_differences_to_mse_are_paired_by_seed():
    r = _results()
    r["cells"].append(_cell("supcon", "fmnist", 500, 0, "mnistm", 58.0))  # a loss with one seed
    r["losses"].append("supcon")
    d = L.differences_to_mse(r).set_index(["task", "loss"])
    assert "mse" not in d.index.get_level_values("loss")
    diffs = np.subtract(_probe(r, "barlow", "photocrops"), _probe(r, "mse", "photocrops"))
    m, lo, hi = _t_interval(diffs)
    row = d.loc[("photocrops", "barlow")]
    assert (row.difference, row.low, row.high, row.seeds) == (pytest.approx(m), pytest.approx(lo), pytest.approx(hi), 5)
    one = d.loc[("mnistm", "supcon")]
    assert one.seeds == 1 and math.isnan(one.low)
    assert one.difference == pytest.approx(58.0 - _probe(r, "mse", "mnistm")[0])
    assert L.differences_to_mse(_results(drop=("mse",))).empty


def test_paper_differences_to_mse_come_from_its_table():
    d = L.paper_differences_to_mse()
    assert d.loc["barlow", "CIFAR10"] == pytest.approx(26.9 - 75.5) and d.loc["softnn", "STL10"] == pytest.approx(2.3)
    assert "mse" not in d.index
    assert L.paper_differences_to_mse("out-of-distribution").loc["infonce", "CIFAR10"] == pytest.approx(56.3 - 51.2)
    with pytest.raises(ValueError, match="Known: in-distribution, out-of-distribution"):
        L.paper_differences_to_mse("ood")


def test_paper_vs_ours_text_is_chosen_by_the_results():
    text = L.paper_vs_ours_text(_results())
    assert "its Barlow Twins -48.6 to -38.2 points" in text and "contrastive losses score -0.2 to +2.3" in text
    assert "Barlow Twins with the official code's pairing scores" in text  # about 42 - 50 = -8 points here
    assert "-8." in text or "-7." in text
    assert "nothing to set beside" in L.paper_vs_ours_text(_results(drop=("mse",)))


def test_fidelity_display_has_every_measure_with_units():
    r = _results()
    f = L.fidelity_display(r)
    assert list(f.columns) == list(L.FIDELITY_COLUMNS.values())
    assert f.loc["mnistm: infonce", "probe (%)"] == f"{np.mean(_probe(r, 'infonce', 'mnistm')):.1f}"
    assert f.loc["mnistm: infonce", "cosine to victim"] == "0.50"
    assert f.loc["photocrops: random init", "few-label probe (%)"] == "n/a"  # not measured in these baselines
    assert f.loc["mnistm: victim", "few-label probe (%)"] == "40.0"


@pytest.mark.parametrize("empty", [False, True], ids=["full", "nothing measured"])
def test_every_reader_table_is_fit_for_a_page(empty):
    from encsteal import tables

    r = _results(sweep=SWEEP_OK, ood={"mse": 45.0, "supcon": 58.0})
    if empty:
        r |= {"cells": [], "baselines": []}
    shown = [
        L.margin_display(r),
        L.loss_display(r),
        L.loss_display(r, "digits"),
        L.comparison_display(r),
        L.queries_display(r),
        L.fidelity_display(r),
        *L.paper_comparison(r).values(),
    ]
    for table in shown:
        tables.check_for_readers(table)  # no NaN, a named index, at most six data columns
        assert table.index.name and all(isinstance(v, str) for v in table.to_numpy().ravel())
    if empty:
        assert all(t.index[0] == L.NOTHING for t in shown[:6])


def test_paper_vs_ours_figure_fits_the_page_and_labels_both_sides():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = _results()
    r["cells"].append(_cell("supcon", "fmnist", 500, 0, "mnistm", 58.0))
    r["losses"].append("supcon")
    fig = L.plot_paper_vs_ours(r)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any(s.startswith("paper (its table)") for s in labels) and any(s.startswith("this book") for s in labels)
    assert "one seed: no interval" in labels
    assert fig.get_size_inches()[0] <= 9 and L.plot_losses(r).get_size_inches()[0] <= 9
    bare = L.plot_paper_vs_ours(_results(drop=("mse",)))
    assert any("no loss paired" in t.get_text() for t in bare.axes[1].texts)
    plt.close("all")


def test_sentences_never_show_nan_and_read_well_at_the_edges():
    no_margin = L.ood_text(_results(ood={"mse": 45.0, "infonce": 47.0}, victim=40.0))  # seed 0: victim = random
    assert "nan" not in no_margin and "no share is computed (best label-free copy: infonce, 47.0 %)" in no_margin
    text = L.few_queries_text(_results(sweep=SWEEP_OK))
    assert "the mean reaches 50% of the margin at " in text and "(95 % band: " in text and "at at" not in text
    early = L.few_queries_text(_results(sweep={50: 0.9, 100: 0.9, 250: 0.95, 500: 0.95, 1000: 0.95}))
    assert "reaches 80% of the margin already at the smallest budget (50 queries)" in early
