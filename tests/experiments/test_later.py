"""Chapter 6 (after the paper): the judges on synthetic results for every verdict, the reader tables,
figures and sentences on a small synthetic results dict, and bad input. Numbers are checked
against references written here (numpy / scipy)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from scipy import stats
from torch import nn

from encsteal import tables
from encsteal.experiments import claims, later
from encsteal.later.b4b import B4B, lsh_projections

SEEDS = [0, 1, 2, 3, 4]
JITTER = [0.4, -0.3, 0.1, -0.5, 0.3]
TASKS = ("mnistm", "photocrops")
VICTIM = {"mnistm": 61.0, "photocrops": 42.0}
RANDOM = {"mnistm": 44.0, "photocrops": 30.0}


def make_results(
    seeds=SEEDS,
    legit_b4b=(1.0, 1.0),
    attacker_b4b=(20.0, 20.0),
    standardized_b4b=(15.0, 10.0),
    sybil_b4b=(7.0, 4.0),
    lambda_gain=(3.0, 3.0),
    stolen_p=1e-4,
    independent_p=0.5,
    n_stolen=None,
    margin=True,
):
    """Synthetic chapter results: per task, undefended copies at victim - 10, drops under B4B given
    per task (legitimate user, every single-account attacker, the standardised one-account and the
    sybil attacker), noise costs 2 points to everyone; dataset inference p-values per group."""
    jit = {s: JITTER[i % len(JITTER)] for i, s in enumerate(seeds)}
    base, legit, cells, sweep = [], [], [], []
    for t, task in enumerate(TASKS):
        victim = VICTIM[task] if margin else RANDOM[task]
        for s in seeds:
            base.append({"seed": s, "task": task, "user": "victim", "accuracy": victim})
            base.append({"seed": s, "task": task, "user": "random_init", "accuracy": RANDOM[task] + jit[s]})
            for d, drop in (("none", 0.0), ("noise", 2.0), ("b4b", legit_b4b[t])):
                acc = victim if d == "none" else victim - drop + jit[s]
                legit.append({"defense": d, "seed": s, "task": task, "accuracy": acc, "queries": 2500})
            for a in later.ATTACKS:
                for d, drop in (("none", 0.0), ("noise", 2.0), ("b4b", attacker_b4b[t])):
                    acc = victim - 10 - drop + jit[s] * (2 if a == "contsteal" else 1)
                    cells.append({"attack": a, "defense": d, "seed": s, "task": task, "accuracy": acc, "queries": 1000})
            for a, d, drop, q in (
                ("standardized", "none", 0.0, 1100),
                ("standardized", "b4b", standardized_b4b[t], 1100),
                ("sybil", "b4b", sybil_b4b[t], 1400),
            ):
                acc = victim - 10 - drop + jit[s]
                cells.append({"attack": a, "defense": d, "seed": s, "task": task, "accuracy": acc, "queries": q})
            # the grid's StolenEncoder sits at victim - 10; lambda 0 lambda_gain below it
            sweep.append(
                {"lambda": 0.0, "seed": s, "task": task, "accuracy": victim - 10 - lambda_gain[t] - jit[s] / 2}
                | {"queries": 1000}
            )
    coverage = []
    for s in seeds:
        coverage += [
            {"seed": s, "user": "legitimate (mnistm)", "queries": 2500, "coverage": 47.0 + jit[s], "sigma": 0.1},
            {"seed": s, "user": "legitimate (photocrops)", "queries": 2600, "coverage": 77.0 + jit[s], "sigma": 600.0},
            {"seed": s, "user": "attacker", "queries": 1000, "coverage": 62.0 + jit[s], "sigma": 8.0},
            {"seed": s, "user": "standardized#0", "queries": 1100, "coverage": 63.0, "sigma": 9.0},
        ]
        coverage += [
            {"seed": s, "user": f"sybil#{k}", "queries": 350, "coverage": 45.0 + k, "sigma": 0.05} for k in range(4)
        ]
    curves = [
        {"user": "attacker", "queries": [100, 200, 300], "coverage": [30.0, 45.0, 55.0]},
        {"user": "sybil#0", "queries": [100, 200], "coverage": [30.0, 40.0]},
        {"user": "legitimate (mnistm)", "queries": [100, 200, 300], "coverage": [20.0, 30.0, 35.0]},
    ]
    mapping = [
        {"seed": s, "attack": "sybil", "account": f"sybil#{k}", "quality": 0.99} for s in seeds for k in (1, 2, 3)
    ]
    inference = [{"group": "victim", "model": "victim", "seed": None, "delta": 5.0, "p_value": 1e-6}]
    n = len(seeds) if n_stolen is None else n_stolen
    stolen_p = stolen_p if isinstance(stolen_p, list) else [stolen_p] * (3 * n)
    k = 0
    for a in later.ATTACKS:
        for s in range(n):
            inference.append({"group": "stolen", "model": a, "seed": s, "delta": 3.0, "p_value": stolen_p[k]})
            k += 1
    inference += [
        {"group": "independent", "model": "random-init", "seed": s, "delta": 0.1, "p_value": independent_p}
        for s in seeds
    ]
    inference.append({"group": "independent", "model": "SimCLR on mnist5k", "seed": 7, "delta": 0.0, "p_value": 0.6})
    inference += [
        {"group": "same data", "model": "SimCLR, same images", "seed": s, "delta": 2.0, "p_value": 1e-3} for s in (1, 2)
    ]
    for row in inference:
        row |= {"t": 1.0, "n_members": 100, "n_nonmembers": 100, "alpha": 0.01, "flagged": row["p_value"] < 0.01}
    return {
        "tasks": list(TASKS),
        "seeds": list(seeds),
        "budget": 1000,
        "epochs": 5,
        "batch_size": 128,
        "reference_std": 0.27,
        "noise_std": 0.5,
        "stolenencoder_lambda": 20.0,
        "stolenencoder_sweep": [0.0],
        "b4b": {"n_tables": 20, "n_hyperplanes": 8, "alpha": 1.0, "beta": 55.0, "lam": 1e-7}
        | {"transform": "affine", "hash_source": "embeddings"},
        "sybil_accounts": 4,
        "sybil_overlap": 100,
        "di": {"images": 1000, "alpha": 0.01, "n_components": 10},
        "baselines": base,
        "legit": legit,
        "cells": cells,
        "sweep": sweep,
        "coverage": coverage,
        "curves": curves,
        "mapping": mapping,
        "dataset_inference": inference,
        "seconds": 12.0,
    }


def t_interval(x):
    """Reference: mean and Student-t 95 % interval (scipy)."""
    x = np.asarray(x, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _filled(v):
    assert v.paper != tables.NA and v.ours != tables.NA and len(v.ours) <= 130, v.ours


# ---- L1: B4B -------------------------------------------------------------------------------------


def test_b4b_reproduced_when_the_user_keeps_its_accuracy_and_the_attacker_does_not():
    r = make_results()
    v = later.judge_b4b(r)
    assert v.verdict == "reproduced" and v.claim == later.CLAIM_B4B
    _filled(v)
    assert "user loses 1.0 [" in v.ours and "attacker 20 pts" in v.ours
    cells = later.b4b_cells(r)
    legit = np.array([61.0 - (61.0 - 1.0 + j) for j in JITTER])  # undefended - through B4B, per seed
    mean, low, high = t_interval(legit)
    row = cells.set_index("task").loc["mnistm"]
    assert row.legit == pytest.approx(mean) and row.legit_low == pytest.approx(low)
    assert row.legit_high == pytest.approx(high) and bool(row.holds)


def test_b4b_partly_when_one_task_costs_the_user_too_much():
    v = later.judge_b4b(make_results(legit_b4b=(1.0, 20.0)))
    assert v.verdict == "partly reproduced" and "fails" in v.evidence and "holds" in v.evidence
    _filled(v)


def test_b4b_not_reproduced_when_the_user_pays_as_much_as_the_attacker():
    v = later.judge_b4b(make_results(legit_b4b=(20.0, 20.0)))
    assert v.verdict == "not reproduced"
    _filled(v)


def test_b4b_not_evaluated_without_seeds_or_judged_tasks():
    assert later.judge_b4b(make_results(seeds=[0, 1])).verdict == "not evaluated"
    v = later.judge_b4b(make_results(margin=False))
    assert v.verdict == "not evaluated" and "no judged task" in v.evidence and v.paper != tables.NA


# ---- L2: sybils ---------------------------------------------------------------------------------


def test_sybil_reproduced_when_the_accounts_win_back_part():
    r = make_results()
    v = later.judge_sybil(r)
    assert v.verdict == "reproduced"
    _filled(v)
    cells = later.sybil_cells(r).set_index("task")
    # reference: taken = 15, gain = 15 - 7 = 8 on mnistm (jitter cancels within a seed)
    assert cells.loc["mnistm", "taken"] == pytest.approx(15.0) and cells.loc["mnistm", "gain"] == pytest.approx(8.0)
    assert cells.loc["mnistm", "rest"] == pytest.approx(7.0) and "8.0" in v.ours and "15.0" in v.ours


def test_sybil_not_reproduced_when_they_win_back_nothing_or_everything():
    nothing = later.judge_sybil(make_results(sybil_b4b=(15.0, 10.0)))
    assert nothing.verdict == "not reproduced" and "nothing recovered" in nothing.evidence
    everything = later.judge_sybil(make_results(sybil_b4b=(0.0, 0.0)))
    assert everything.verdict == "not reproduced" and "all recovered" in everything.evidence
    _filled(everything)


def test_sybil_partly_and_not_evaluated():
    v = later.judge_sybil(make_results(sybil_b4b=(7.0, 10.0)))
    assert v.verdict == "partly reproduced"
    idle = later.judge_sybil(make_results(standardized_b4b=(0.0, 0.0), sybil_b4b=(0.0, 0.0)))
    assert idle.verdict == "not evaluated" and "took nothing" in idle.evidence


# ---- L3: dataset inference ------------------------------------------------------------------------


def test_dataset_inference_verdicts():
    v = later.judge_dataset_inference(make_results())
    assert v.verdict == "reproduced" and "15 of 15" in v.evidence and "victim p = 1e-06" in v.ours
    _filled(v)
    assert later.judge_dataset_inference(make_results(stolen_p=0.5)).verdict == "not reproduced"
    assert later.judge_dataset_inference(make_results(independent_p=1e-4)).verdict == "not reproduced"
    nine = [1e-4] * 9 + [0.5] * 6  # 60 %: the interval straddles one half
    assert later.judge_dataset_inference(make_results(stolen_p=nine)).verdict == "partly reproduced"
    few = later.judge_dataset_inference(make_results(n_stolen=1))
    assert few.verdict == "not evaluated" and "too few" in few.evidence


def test_inference_rates_match_clopper_pearson():
    rates = later.inference_rates(make_results(stolen_p=[1e-4] * 9 + [0.5] * 6))
    ci = stats.binomtest(9, 15).proportion_ci(0.95, method="exact")
    assert rates["detection"]["k"] == 9 and rates["detection"]["n"] == 15
    assert rates["detection"]["low"] == pytest.approx(ci.low) and rates["detection"]["high"] == pytest.approx(ci.high)
    assert rates["false_positive"]["k"] == 0 and rates["false_positive"]["n"] == 6


# ---- L4: StolenEncoder's lambda ---------------------------------------------------------------


def test_lambda_verdicts():
    v = later.judge_stolenencoder(make_results())
    assert v.verdict == "reproduced"
    _filled(v)
    assert later.judge_stolenencoder(make_results(lambda_gain=(3.0, 0.0))).verdict == "partly reproduced"
    assert later.judge_stolenencoder(make_results(lambda_gain=(-3.0, 0.0))).verdict == "not reproduced"
    r = make_results()
    r["sweep"] = []
    assert later.judge_stolenencoder(r).verdict == "not evaluated"


def test_every_claim_of_the_chapter_is_registered():
    ids = {c.id: c for c in claims.CLAIMS if c.chapter == "later"}
    assert set(ids) == {"L1", "L2", "L3", "L4"}
    r = make_results()
    for cid, v in later.verdicts(r).items():
        assert ids[cid].run(r) == v


# ---- reader tables, sentences, figures --------------------------------------------------------------


def test_benchmark_share_is_the_margin_share_per_seed():
    r = make_results()
    frame = later.benchmark_frame(r)
    row = frame[(frame.task == "mnistm") & (frame.user == "infonce") & (frame.defense == "none")].iloc[0]
    shares = [100 * ((61.0 - 10 + j) - (44.0 + j)) / (61.0 - (44.0 + j)) for j in JITTER]
    mean, low, high = t_interval(shares)
    assert row.share == pytest.approx(mean) and row.share_low == pytest.approx(low) and row.n == 5
    assert row.queries == 1000


def test_reader_tables_fit_the_page():
    r = make_results()
    for table in (
        later.benchmark_table(r, "accuracy"),
        later.benchmark_table(r, "share"),
        later.benchmark_table(r, "accuracy", "mnistm"),
        later.queries_table(r),
        later.b4b_table(r),
        later.sweep_table(r),
        later.inference_table(r),
        later.baseline_reader_table(r),
    ):
        tables.check_for_readers(table)
        tables.to_markdown(table)
    bench = later.benchmark_table(r, "accuracy")
    assert bench.loc["InfoNCE, sybils (4 accounts)", "MNIST-M: none"] == tables.NA  # sybils only face B4B
    assert bench.loc["legitimate user", "MNIST-M: none"] == "61.0"  # deterministic: one number
    assert bench.loc["InfoNCE", "MNIST-M: B4B"].startswith("31.0 [")
    one = later.benchmark_table(r, "share", "photocrops")
    tables.check_for_readers(one)
    assert list(one.columns) == ["none", "noise", "B4B"] and one.loc["legitimate user", "none"] == "100"
    with pytest.raises(ValueError, match="Unknown task 'svhn'"):
        later.benchmark_table(r, "accuracy", "svhn")
    assert list(later.sweep_table(r).index) == ["0", "20"]


def test_shares_are_not_shown_for_a_task_that_is_not_judged():
    r = make_results(margin=False)
    assert (later.benchmark_table(r, "share") == tables.NA).all().all()
    assert "No task was judged" in later.grid_sentence(r)


def test_sentences_and_numbers():
    r = make_results()
    text = later.sentences(r)
    assert all(isinstance(t, str) and t for t in text.values())
    assert "beta = 55 %" in text["later_coverage_text"] and "above beta" in text["later_coverage_text"]
    assert "each of the 4 sybil accounts sends 350" in text["later_coverage_text"]  # accounts pooled
    assert "win back 8.0" in text["later_adaptive_text"] and "0.990" in text["later_adaptive_text"]
    assert "**Reproduced**" in text["later_verdict_L1"]
    assert "15 of 15" in text["later_di_text"]
    assert later.numbers(r)["later_buckets"] == 256


def test_figures_fit_the_column():
    r = make_results()
    for fig in (later.plot_coverage(r), later.plot_benchmark(r), later.plot_inference(r)):
        assert isinstance(fig, Figure) and fig.get_size_inches()[0] <= 9.0


# ---- running pieces and bad input ---------------------------------------------------------------


class LinearEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 5)
        self.in_channels, self.input_size, self.rep_dim = 1, 8, 5

    def forward(self, x):
        return self.lin(x.flatten(1))


def test_replay_coverage_counts_the_buckets_a_user_hit():
    torch.manual_seed(0)
    victim = SimpleNamespace(encoder=LinearEncoder().eval(), head=None)
    images = torch.rand(40, 1, 8, 8)
    out = later.replay_coverage(
        lambda: B4B(n_tables=3, n_hyperplanes=4, seed=1),
        victim,
        [("a", images[:25]), ("b", images), ("a", images[25:])],
    )
    with torch.no_grad():
        z = victim.encoder(images).double().numpy()
    proj = lsh_projections(5, 3, 4, 1).numpy()
    buckets = [((z @ proj[t] > 0) * (2 ** np.arange(4))).sum(axis=1) for t in range(3)]
    reference = 100 * np.mean([len(set(b)) / 16 for b in buckets])
    assert out["a"]["queries"] == 40 and out["a"]["coverage"] == pytest.approx(reference)
    assert out["b"]["coverage"] == pytest.approx(reference)


def test_configs_and_bad_input():
    from encsteal import params

    p = params.resolve("smoke")
    assert later.attack_config("stolenencoder", p, 3).augment_weight == p.stolenencoder_lambda
    assert later.attack_config("stolenencoder", p, 3, augment_weight=0.0).augment_weight == 0.0
    assert later.attack_config("contsteal", p, 3).augment == "independent_views"
    assert later.attack_config("infonce", p, 3).loss_params == {"temperature": 0.1}
    b4b = later.make_b4b(p, 0.3, seed=2)
    assert (b4b.beta, b4b.n_hyperplanes, b4b.reference_std, b4b.seed) == (p.b4b_beta, p.b4b_hyperplanes, 0.3, 2)
    with pytest.raises(ValueError, match="Unknown attack 'mse'"):
        later.attack_config("mse", p, 0)
    with pytest.raises(ValueError, match="value must be"):
        later.benchmark_table(make_results(), "loss")
    with pytest.raises(ValueError, match="no 'cells' rows"):
        later.benchmark_frame({"tasks": ["mnistm"], "legit": []})
    with pytest.raises(ValueError, match="di_images <= 256"):
        later._check_sizes(params.resolve("smoke", {"di_images": 300}), torch.zeros(5000))
    with pytest.raises(ValueError, match="exceed the 50 images"):
        later._check_sizes(p, torch.zeros(50))


def test_seed_images_are_disjoint_and_nested():
    from encsteal.data.imageset import ImageSet

    images = torch.arange(60, dtype=torch.uint8).view(60, 1, 1, 1).expand(60, 1, 8, 8).clone()
    pool = ImageSet("toy", images, torch.zeros(60, dtype=torch.long))
    queries, overlap = later.seed_images(pool, 3, 10, 5)
    q = set(queries.images[:, 0, 0, 0].tolist())
    o = set(overlap[:, 0, 0, 0].tolist())
    assert len(q) == 10 and len(o) == 5 and not q & o
    again, _ = later.seed_images(pool, 3, 4, 0)
    assert again.images[:, 0, 0, 0].tolist() == queries.images[:4, 0, 0, 0].tolist()
