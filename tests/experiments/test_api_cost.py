"""Chapter 1: the leakage statistic, the comparisons and both judges, on synthetic per-seed results."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from encsteal import cost
from encsteal.data.imageset import ImageSet
from encsteal.experiments import api_cost
from encsteal.experiments.downstream import Downstream, evaluate
from encsteal.models import LinearClassifier, SmallConvNet
from encsteal.probe import extract_features, fit_probe

SEEDS = (0, 1, 2, 3, 4)


# ---- synthetic leakage results --------------------------------------------------------------------


def _leakage(means, margins, noise=0.3, seed=0):
    """Saved leakage results: ``means[task][output]`` is each output's AUC, ``margins[task]`` the
    victim's few-label margin over the random-init encoder (mean 20); every seed shifts all outputs of
    a task and its random-init encoder together (pairing) plus noise."""
    rng = np.random.default_rng(seed)
    margin_rows, score_rows = [], []
    for task, by_output in means.items():
        for s in SEEDS:
            shift = rng.normal(0, 3)  # shared by everything of this seed: the pairing removes it
            random = 20.0 + shift + rng.normal(0, noise)
            victim = random + margins[task] + rng.normal(0, 0.5)
            margin_rows.append(
                {
                    "task": task,
                    "seed": s,
                    "victim_probe": victim + 3,
                    "random_probe": random + 3,
                    "margin_probe": victim - random,
                    "victim_few_label": victim,
                    "random_few_label": random,
                    "margin_few_label": victim - random,
                }
            )
            score_rows.append({"task": task, "output": api_cost.RANDOM, "seed": s, "auc": random, "share": 0.0})
            for output, mean in by_output.items():
                auc = mean + shift + rng.normal(0, noise)
                score_rows.append(
                    {"task": task, "output": output, "seed": s, "auc": auc, "share": (auc - random) / (victim - random)}
                )
    return {"leakage": {"margins": margin_rows, "scores": score_rows, "budgets": [100, 300, 1000]}}


ORDERED = {"representation": 40.0, "probabilities": 33.0, "topk": 31.0, "label": 26.0}
TOP_ONLY = {"representation": 40.0, "probabilities": 40.0, "topk": 33.0, "label": 26.0}
FLAT = {"representation": 30.0, "probabilities": 30.0, "topk": 30.0, "label": 30.0}
REVERSED = {"representation": 26.0, "probabilities": 33.0, "topk": 35.0, "label": 40.0}
NO_LEAK = {"representation": 20.0, "probabilities": 17.0, "topk": 16.0, "label": 14.0}  # ordered, none above random


@pytest.mark.parametrize(
    ("means", "margins", "verdict"),
    [
        ({"mnistm": ORDERED, "photocrops": ORDERED}, {"mnistm": 20, "photocrops": 15}, "reproduced"),
        ({"mnistm": TOP_ONLY, "photocrops": ORDERED}, {"mnistm": 20, "photocrops": 15}, "partly reproduced"),
        ({"mnistm": FLAT, "photocrops": FLAT}, {"mnistm": 20, "photocrops": 15}, "not reproduced"),
        ({"mnistm": REVERSED, "photocrops": ORDERED}, {"mnistm": 20, "photocrops": 15}, "not reproduced"),
        # the outputs are in the claimed order, but the representation copy is no better than random-init
        ({"mnistm": NO_LEAK, "photocrops": NO_LEAK}, {"mnistm": 20, "photocrops": 15}, "not reproduced"),
        ({"mnistm": ORDERED, "photocrops": ORDERED}, {"mnistm": 3, "photocrops": 5}, "not evaluated"),
        # a task under the margin rule does not count, whatever its comparisons say
        ({"mnistm": ORDERED, "photocrops": REVERSED}, {"mnistm": 20, "photocrops": 4}, "reproduced"),
    ],
)
def test_judge_leakage_every_outcome(means, margins, verdict):
    v = api_cost.judge_leakage(_leakage(means, margins))
    assert v.verdict == verdict
    assert "random-init encoder" in v.evidence
    assert v.paper != "n/a" and v.ours != "n/a"  # the paper at a glance: filled on every path


def test_judge_leakage_without_results_is_not_evaluated():
    assert api_cost.judge_leakage({"leakage": {"margins": [], "scores": []}}).verdict == "not evaluated"


SWINGS = {  # per-seed deviations much larger than the differences between the outputs' means
    "representation": [15.0, -14.0, 9.0, -12.0, 2.0],
    "probabilities": [-13.0, 12.0, -10.0, 14.0, -3.0],
    "topk": [4.0, -6.0, 11.0, -9.0, 0.0],
    "label": [12.0, -11.0, -8.0, 10.0, -3.0],
}


def _noisy(means):
    results = _leakage({"mnistm": means}, {"mnistm": 20}, noise=0.0)
    for row in results["leakage"]["scores"]:
        if row["output"] in SWINGS:
            row["auc"] += SWINGS[row["output"]][row["seed"]]
    return results


def test_noisy_differences_are_not_separable():
    """Differences buried in seed noise: no comparison is called separable."""
    results = _noisy(ORDERED)
    table = api_cost.compare(pd.DataFrame(results["leakage"]["scores"]), ["mnistm"])
    assert not table.holm_rejected.any()
    assert set(table.outcome) == {"not separable"}
    assert api_cost.judge_leakage(results).verdict == "not reproduced"


def test_holm_corrects_over_the_judged_comparisons():
    """Three comparisons, each with p in (0.0167, 0.05): separable alone, none after Holm's correction."""
    diffs = [[1.2, 3.0, 0.5, 2.5, 0.6], [2.0, 0.5, 2.6, 0.6, 1.5], [1.5, 2.2, 0.4, 2.9, 0.8]]
    pairs = [("a", "b"), ("c", "d"), ("e", "f")]
    rows = []
    for (first, second), d in zip(pairs, diffs):
        for s in SEEDS:
            rows.append({"task": "t", "output": first, "seed": s, "auc": 10.0 + s})
            rows.append({"task": "t", "output": second, "seed": s, "auc": 10.0 + s - d[s]})
    table = api_cost.compare(pd.DataFrame(rows), ["t"], pairs)
    assert ((table.p > 0.05 / 3) & (table.p < 0.05)).all()
    assert (table.low > 0).all()  # each 95 % interval alone excludes zero
    assert not table.holm_rejected.any() and set(table.outcome) == {"not separable"}
    one = api_cost.compare(pd.DataFrame(rows), ["t"], pairs[:1])
    assert one.holm_rejected.all() and one.outcome.iloc[0] == "a above"


def test_judged_tasks_use_the_mean_margin():
    m = pd.DataFrame(
        [{"task": "a", "seed": s, "margin_few_label": [10.0, 10.0, 10.0, 12.0, 8.0][s]} for s in SEEDS]
        + [{"task": "b", "seed": s, "margin_few_label": 9.9} for s in SEEDS]
    )
    assert api_cost.judged_tasks(m) == ["a"]


def test_log_auc():
    assert api_cost.log_auc([10, 100, 1000], [10.0, 20.0, 40.0]) == pytest.approx((15 + 30) / 2)
    assert api_cost.log_auc([1000, 10], [40.0, 10.0]) == pytest.approx(25.0)  # order of the budgets does not matter
    assert api_cost.log_auc([500], [33.0]) == 33.0
    with pytest.raises(ValueError, match="distinct"):
        api_cost.log_auc([10, 10], [1.0, 2.0])
    with pytest.raises(ValueError, match="one value per budget"):
        api_cost.log_auc([10, 100], [1.0])


def test_leakage_scores_pairs_each_seed_with_its_own_margin():
    grid = pd.DataFrame(
        [
            {"task": "t", "output": o, "seed": s, "budget": b, "few_label": acc}
            for s in (0, 1)
            for o, base in (("representation", 40.0), ("label", 30.0))
            for b, acc in ((100, base), (1000, base + 10))
        ]
    )
    margins = pd.DataFrame(
        [
            {"task": "t", "seed": 0, "victim_few_label": 60.0, "random_few_label": 20.0},
            {"task": "t", "seed": 1, "victim_few_label": 50.0, "random_few_label": 30.0},
        ]
    )
    scores = api_cost.leakage_scores(grid, margins).set_index(["output", "seed"])
    assert scores.loc[("representation", 0), "auc"] == pytest.approx(45.0)
    assert scores.loc[("representation", 0), "share"] == pytest.approx((45 - 20) / 40)
    assert scores.loc[("label", 1), "share"] == pytest.approx((35 - 30) / 20)
    assert scores.loc[(api_cost.RANDOM, 1), "auc"] == 30.0 and scores.loc[(api_cost.RANDOM, 1), "share"] == 0.0


# ---- sentences chosen by code ----------------------------------------------------------------------


def test_leakage_sentences_follow_the_outcome():
    res = _leakage({"mnistm": ORDERED, "photocrops": FLAT}, {"mnistm": 20, "photocrops": 4})
    m, sc = pd.DataFrame(res["leakage"]["margins"]), pd.DataFrame(res["leakage"]["scores"])
    tasks = api_cost.judged_tasks(m)
    text = api_cost.leakage_sentences(m, api_cost.compare(sc, tasks), tasks)
    assert "photocrops are shown but not judged" in text["leak_margins_text"]
    assert "representation above" in text["leak_comparisons_text"]
    none = api_cost.leakage_sentences(m, api_cost.compare(sc, []), [])
    assert "not evaluated" in none["leak_comparisons_text"]
    noisy = _noisy(ORDERED)
    m2, sc2 = pd.DataFrame(noisy["leakage"]["margins"]), pd.DataFrame(noisy["leakage"]["scores"])
    assert (
        "not separable"
        in api_cost.leakage_sentences(m2, api_cost.compare(sc2, ["mnistm"]), ["mnistm"])["leak_comparisons_text"]
    )


# ---- the cost model and its judge ----------------------------------------------------------------


def _throughput(victim=10.0, stealing=10.0, api=30.0, archs=("resnet34", "resnet50")):
    return [
        {"arch": a, "workload": w, "images_per_s": v}
        for a in archs
        for w, v in (("victim step", victim), ("stealing step", stealing), ("API answer", api))
    ]


def _cost_results(throughput, compute=(0.01, 0.1), api=(0.0, 0.01)):
    return {
        "cost": {
            "throughput": throughput,
            "setups": [s.as_dict() for s in cost.PAPER_SETUPS],
            "compute_prices": list(compute),
            "api_prices": list(api),
            "machine": {"processor": "test CPU"},
        }
    }


@pytest.mark.parametrize(
    ("results", "verdict"),
    [
        # equal per-image cost and nearly free queries: the passes ratios (22x, 51x, 10.2x) decide
        (_cost_results(_throughput(), api=(0.0,)), "reproduced"),
        # expensive queries at the top of the API range
        (_cost_results(_throughput(), api=(0.0, 100.0)), "partly reproduced"),
        # a stealing step 100 times slower than a victim step: never 10x cheaper
        (_cost_results(_throughput(stealing=0.1)), "not reproduced"),
        (_cost_results([]), "not evaluated"),
        (_cost_results(_throughput(), api=()), "not evaluated"),
    ],
)
def test_judge_cost_every_outcome(results, verdict):
    v = api_cost.judge_cost(results)
    assert v.verdict == verdict
    assert v.paper != "n/a" and v.ours != "n/a"  # the paper at a glance: filled on every path
    if verdict != "not evaluated":
        assert "test CPU" in v.evidence and "Re-querying every epoch" in v.evidence


def test_cost_outcome_needs_every_point_for_reproduced():
    assert api_cost.cost_outcome([10.0, 50.0]) == "reproduced"
    assert api_cost.cost_outcome([9.99, 50.0]) == "partly reproduced"
    assert api_cost.cost_outcome([9.99, 2.0]) == "not reproduced"
    assert api_cost.cost_outcome([]) == "not evaluated"


def test_costs_and_break_even_price():
    setup = cost.PAPER_SETUPS[0]  # CIFAR10: 20 M training passes, 0.9 M stealing passes, 9,000 queries
    tp = cost.Throughput("resnet34", victim_step=100.0, stealing_step=50.0, api_answer=200.0)
    c = cost.costs(setup, tp, compute_per_hour=3.6, api_per_1k=2.0)
    assert c["train_usd"] == pytest.approx(20e6 / 100 / 3600 * 3.6)
    assert c["steal_compute_usd"] == pytest.approx(0.9e6 / 50 / 3600 * 3.6)
    assert c["api_usd"] == pytest.approx(18.0)
    again = cost.costs(setup, tp, 3.6, 2.0, requery=True)
    assert again["api_usd"] == pytest.approx(1800.0) and again["provider_hours"] == pytest.approx(900_000 / 200 / 3600)
    for ratio in (1.0, 10.0):
        price = cost.api_price_for_ratio(setup, tp, 3.6, ratio)
        assert cost.costs(setup, tp, 3.6, price)["train_over_steal"] == pytest.approx(ratio)
    slow = cost.Throughput("resnet34", 100.0, 1.0, 200.0)  # stealing compute alone costs more than training / 10
    assert cost.api_price_for_ratio(setup, slow, 3.6, 10.0) is None


def test_throughputs_need_every_workload():
    rows = _throughput(archs=("resnet34",))
    assert cost.throughputs(rows)["resnet34"].api_answer == 30.0
    with pytest.raises(ValueError, match="API answer"):
        cost.throughputs(rows[:2])
    with pytest.raises(ValueError, match="positive"):
        cost.Throughput("x", 0.0, 1.0, 1.0)


def test_cost_sentences_follow_the_outcome():
    assert (
        "at every one of the" in api_cost.cost_sentences(_cost_results(_throughput(), api=(0.0,))["cost"])["cost_text"]
    )
    partly = api_cost.cost_sentences(_cost_results(_throughput(), api=(0.0, 100.0))["cost"])
    assert "not at the others" in partly["cost_text"] and "least favourable" in partly["cost_text"]
    assert "at none of the" in api_cost.cost_sentences(_cost_results(_throughput(stealing=0.1))["cost"])["cost_text"]


def test_cost_tables():
    c = _cost_results(_throughput(), compute=(0.1,), api=(0.0, 1.0))["cost"]
    hours = api_cost.hours_table(c)
    assert hours["passes ratio"].round(1).tolist() == [22.2, 51.2, 10.2]
    be = api_cost.break_even_table(c)
    assert len(be) == 3 * 2 and (be["break-even API price per 1k"] > 0).all()
    grid = api_cost.cost_grid(c)
    assert len(grid) == 3 * 2 * 1 * 2
    assert set(api_cost.quoted_costs().origin) == {"quoted, not measured"}


# ---- evaluation on a tiny task --------------------------------------------------------------------


def _tiny_task(encoder):
    g = torch.Generator().manual_seed(0)

    def imageset(n):
        labels = torch.arange(n) % 3
        images = (torch.rand(n, 1, 28, 28, generator=g) * 200 + labels.view(-1, 1, 1, 1) * 15).to(torch.uint8)
        return ImageSet("tiny", images, labels, ("a", "b", "c"))

    splits = {"probe_train": imageset(60), "probe_val": imageset(30), "probe_test": imageset(30)}
    feats = {r: extract_features(encoder, s) for r, s in splits.items()}
    probe = fit_probe(
        feats["probe_train"], splits["probe_train"].labels, feats["probe_val"], splits["probe_val"].labels
    )
    return Downstream("tiny", splits, feats, probe, per_class=4, seed=0, Cs=(0.1, 1.0))


def test_probe_scores_match_the_shared_evaluation():
    torch.manual_seed(0)
    victim, other = SmallConvNet(1).eval(), SmallConvNet(1).eval()
    task = _tiny_task(victim)
    ref = evaluate(other, task, seed=3)
    feats = {r: extract_features(other, task.splits[r]) for r in api_cost.ROLES}
    mine = api_cost.probe_scores(feats, task, 3)
    assert mine["probe"] == pytest.approx(ref["probe"]) and mine["few_label"] == pytest.approx(ref["few_label"])
    few_only = api_cost.probe_scores(api_cost.copy_features(other, task, 3), task, 3, full=False)
    assert few_only == {"few_label": pytest.approx(ref["few_label"])}


def test_margins_compare_the_victim_with_its_own_random_init():
    torch.manual_seed(0)
    victim = SmallConvNet(1).eval()
    task = _tiny_task(victim)
    v = api_cost.victim_scores({"tiny": task.victim_features}, [task], [0, 1])
    r = api_cost.random_scores([task], [0, 1])
    m = api_cost.margin_frame(v, r)
    assert len(m) == 2 and v.victim_probe.nunique() == 1  # the full probe does not depend on the seed
    assert m.margin_few_label.tolist() == pytest.approx((m.victim_few_label - m.random_few_label).tolist())
    assert r.random_probe.iloc[0] != r.random_probe.iloc[1] or r.random_few_label.iloc[0] != r.random_few_label.iloc[1]


def test_seed_queries_are_nested_per_seed_and_differ_between_seeds():
    pool = ImageSet(
        "p",
        torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 8, 8).clone(),
        torch.zeros(50, dtype=torch.long),
    )
    a, b = api_cost.seed_queries(pool, 0, 20), api_cost.seed_queries(pool, 1, 20)
    assert not torch.equal(a.images, b.images)
    assert torch.equal(api_cost.seed_queries(pool, 0, 10).images, a.images[:10])
    with pytest.raises(ValueError, match="pool of 50"):
        api_cost.seed_queries(pool, 0, 51)


def test_menu_varies_only_the_output():
    from encsteal.victims import Victim

    torch.manual_seed(0)
    enc, head = SmallConvNet(1), LinearClassifier(256, 10)
    sup = Victim(None, enc, head, tuple("0123456789"), {})
    menu = api_cost.api_menu(None, sup, top_k=3)
    assert list(menu) == list(api_cost.OUTPUTS)
    assert {id(a.encoder) for a in menu.values()} == {id(enc)}
    table = api_cost.outputs_table(menu, torch.rand(2, 1, 28, 28))
    assert table.loc["label", "values returned"] == 1 and table.loc["topk", "non-zero values"] == 3
    assert table.loc["label", "bits per answer (at most)"] == 4
    assert table.loc["probabilities", "bits per answer (at most)"] == 320


def test_curve_table_shares_use_each_victims_margin():
    grid = pd.DataFrame(
        [
            {"task": "t", "output": o, "seed": s, "budget": 100, "few_label": acc}
            for s in (0, 1)
            for o, acc in (("label", 30.0), (api_cost.SSL, 40.0))
        ]
    )
    sup = pd.DataFrame([{"task": "t", "seed": s, "victim_few_label": 60.0, "random_few_label": 20.0} for s in (0, 1)])
    ssl = pd.DataFrame([{"task": "t", "seed": s, "victim_few_label": 40.0, "random_few_label": 20.0} for s in (0, 1)])
    table = api_cost.curve_table(grid, sup, ssl).set_index("output")
    assert table.loc["label", "share"] == pytest.approx(0.25)
    assert table.loc[api_cost.SSL, "share"] == pytest.approx(1.0)
    assert table.loc["label", "mean"] == 30.0


def test_paper_architecture_times_every_workload_on_equal_batches():
    from encsteal import benchmarks

    rows = benchmarks.paper_architecture("convnet", 32, batch=4, steps=1)
    assert [r["workload"] for r in rows] == list(cost.WORKLOADS)
    assert all(r["batch"] == 4 and r["images_per_s"] > 0 for r in rows)
    assert set(cost.throughputs(rows)) == {"convnet"}
    with pytest.raises(ValueError, match="even batch"):
        benchmarks.paper_architecture("convnet", 32, batch=3)


def test_cost_sentences_state_the_break_even_range_and_the_quoted_ratio():
    text = api_cost.cost_sentences(_cost_results(_throughput(), compute=(0.01, 0.1), api=(0.0, 1.0))["cost"])
    assert "0.01 to 0.1 USD per hour" in text["break_even_text"]
    assert text["break_even_text"].count("USD") == 1 + 3 * 2  # one range per setup and accounting
    assert "79 times" in text["quoted_cost_text"]


def synthetic_chapter() -> api_cost.ApiCostChapter:
    """A chapter built from synthetic results (two tasks, one under the margin rule; a label copy
    without cosine/CKA; a cost grid where 250K queries are never 10x cheaper): what the page shows."""
    res = _leakage({"mnistm": ORDERED, "photocrops": FLAT}, {"mnistm": 20, "photocrops": 4})
    margins, scores = pd.DataFrame(res["leakage"]["margins"]), pd.DataFrame(res["leakage"]["scores"])
    judged = api_cost.judged_tasks(margins)
    grid = pd.DataFrame(
        [
            {"task": t, "output": o, "seed": s, "budget": b, "few_label": 25.0 + s + b / 100, "cosine": 0.5, "cka": 0.4}
            for t in ("mnistm", "photocrops")
            for o in ("representation", "label")
            for s in SEEDS
            for b in (100, 400)
        ]
    )
    grid.loc[grid.output == "label", ["cosine", "cka"]] = float("nan")
    c = _cost_results(_throughput(stealing=0.5), compute=(0.01,), api=(0.0, 1.0))["cost"]  # 250K: never 10x
    c["machine"] = {"cpu": "test CPU", "threads": 1, "cuda": None}
    outputs = pd.DataFrame(
        {
            "values returned": [256, 10, 10, 1],
            "non-zero values": [250, 10, 3, 1],
            "bits per answer (at most)": [1, 2, 3, 4],
        },
        index=pd.Index(["representation", "probabilities", "topk", "label"], name="API"),
    )
    return api_cost.ApiCostChapter(
        outputs=outputs,
        margins=margins,
        margin_summary=api_cost.margin_summary(margins, judged),
        grid=grid,
        scores=scores,
        curves=api_cost.curve_table(grid, margins),
        comparisons=api_cost.compare(scores, judged),
        fidelity=api_cost.fidelity_table(grid),
        judged=judged,
        throughput=pd.DataFrame(
            [{**r, "image_size": 32, "batch": 4, "steps": 2, "seconds": 1.0} for r in c["throughput"]]
        ),
        hours=api_cost.hours_table(c),
        cost_grid=api_cost.cost_grid(c),
        break_even=api_cost.break_even_table(c),
        quoted=api_cost.quoted_costs(),
        text={},
        values={},
        saved={"cost": c},
    )


def test_reader_tables_have_no_nan_and_fit_the_text_column():
    from encsteal import tables

    shown = synthetic_chapter().reader_tables()
    assert tables.NA in shown["break_even"].to_numpy()  # "not even with free queries"
    for name, table in shown.items():
        assert name.isidentifier(), name  # glued as api_cost_<name>
        tables.check_for_readers(table)  # no missing cell, a named index, at most MAX_COLUMNS columns
        assert not isinstance(table.index, pd.MultiIndex) and table.index.name, name
        assert "('" not in tables.to_markdown(table), name  # no tuple labels on the page
    margins = shown["margins"].reset_index().set_index(["task", "probe"])
    assert margins.loc[("photocrops", "few-label probe"), "judged"].startswith("no")
    scores = shown["scores"].reset_index().set_index(["task", "output"])
    assert "[" in scores.loc[("mnistm", "representation"), "log-budget AUC (%)"]
    assert list(shown["fidelity"].output.unique()) == ["representation"]
    assert "[" in shown["fidelity"].cosine.iloc[0] or shown["fidelity"].cosine.iloc[0] == "0.500"
    assert shown["machine"].loc["cuda", "value"] == "none"
    be = shown["break_even"]
    assert list(be.columns) == [
        "compute (USD/hour)",
        "break-even, once",
        "10x cheaper below, once",
        "break-even, re-query",
        "10x cheaper below, re-query",
    ]
    assert len(be) == 3  # one row per setup and compute price (one compute price here)
    price = cost.api_price_for_ratio(
        cost.PAPER_SETUPS[0], cost.throughputs(_throughput(stealing=0.5))["resnet34"], 0.01, 1.0
    )
    assert be["break-even, once"].iloc[0] == f"{price:,.3g}"


def test_accuracy_table_has_one_row_per_output_and_one_column_per_budget():
    grid = pd.DataFrame(
        [
            {"task": "t", "output": o, "seed": s, "budget": b, "few_label": acc + s}
            for s in (0, 1, 2)
            for o, acc in (("label", 30.0), ("representation", 40.0))
            for b in (1000, 100)
            if not (o == "label" and b == 1000)
        ]
    )
    margins = pd.DataFrame(
        [{"task": "t", "seed": s, "victim_few_label": 60.0, "random_few_label": 20.0} for s in (0, 1, 2)]
    )
    ch = synthetic_chapter()
    ch.curves = api_cost.curve_table(grid, margins)
    table = ch.reader_tables()["accuracy"]
    assert list(table.columns) == ["output", "100 queries", "1,000 queries"]
    assert table.output.tolist() == ["representation", "label"]  # in the order of api_cost.OUTPUTS
    half = stats.t.ppf(0.975, 2) * np.std([40.0, 41.0, 42.0], ddof=1) / np.sqrt(3)
    assert table["100 queries"].iloc[0] == f"41.0 [{41 - half:.1f}, {41 + half:.1f}]"
    assert table["1,000 queries"].iloc[1] == "n/a"  # the label API was not stolen at 1,000 queries


def test_leakage_summary_matches_a_t_interval_over_seeds():
    res = _leakage({"mnistm": ORDERED}, {"mnistm": 20})
    scores = pd.DataFrame(res["leakage"]["scores"])
    summary = api_cost.leakage_summary(scores).set_index("output")
    assert list(summary.index) == [*api_cost.OUTPUTS, api_cost.RANDOM]
    share = scores[scores.output == "label"].share.to_numpy()
    half = stats.t.ppf(0.975, len(share) - 1) * share.std(ddof=1) / np.sqrt(len(share))
    assert summary.loc["label", "share"] == pytest.approx(share.mean())
    assert summary.loc["label", "share high"] == pytest.approx(share.mean() + half)
    assert summary.loc["label", "seeds"] == len(SEEDS)


def test_values_per_answer_counts_the_non_zero_top_k_scores():
    sizes = api_cost.values_per_answer(synthetic_chapter().outputs)
    assert sizes.to_dict() == {"representation": 256, "probabilities": 10, "topk": 3, "label": 1}


def test_paper_outputs_table_is_the_papers_sizes():
    from encsteal import paper_tables

    table = api_cost.paper_outputs_table()
    assert table.index.name and len(table) == len(paper_tables.API_DIMENSIONS)
    assert table["values per answer"].tolist() == [f"{v:,}" for v in paper_tables.API_DIMENSIONS.values()]


# ---- the paper at a glance: the verdicts' paper and ours ---------------------------------------------


def test_judge_leakage_states_the_paper_and_our_difference_with_its_interval():
    results = _leakage({"mnistm": ORDERED, "photocrops": ORDERED}, {"mnistm": 20, "photocrops": 15})
    v = api_cost.judge_leakage(results)
    assert "2048" in v.paper and "no number published" in v.paper
    scores = pd.DataFrame(results["leakage"]["scores"])
    for task in ("mnistm", "photocrops"):
        t = scores[scores.task == task].pivot(index="seed", columns="output", values="auc")
        d = (t["representation"] - t["label"]).to_numpy()
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert f"{task} {d.mean():+.1f} [{d.mean() - half:.1f}, {d.mean() + half:.1f}]" in v.ours
    assert len(v.paper) <= 120 and len(v.ours) <= 120


def test_judge_leakage_fills_paper_and_ours_when_not_evaluated():
    none = api_cost.judge_leakage({"leakage": {"margins": [], "scores": []}})
    assert none.paper == api_cost.paper_leakage_words() and none.ours == "no leakage measured"
    results = _leakage({"mnistm": ORDERED, "photocrops": ORDERED}, {"mnistm": 3, "photocrops": 5})
    v = api_cost.judge_leakage(results)
    margins = pd.DataFrame(results["leakage"]["margins"]).groupby("task").margin_few_label.mean()
    assert v.verdict == "not evaluated" and "no task judged" in v.ours
    assert f"mnistm {margins['mnistm']:+.1f}" in v.ours and f"photocrops {margins['photocrops']:+.1f}" in v.ours


def test_judge_cost_states_the_quoted_ratio_and_our_range():
    v = api_cost.judge_cost(_cost_results(_throughput(), compute=(0.01, 0.1), api=(0.0,)))
    assert "5,713.92" in v.paper and "72.49" in v.paper and f"{5713.92 / 72.49:.0f}x" in v.paper
    # equal per-image costs, free queries: the ratios are the passes ratios, 10.24x (250K) to 51.2x (50K)
    passes = [
        50_000 * 2 * 200 / (9_000 * 100),
        1_281_167 * 2 * 100 / (50_000 * 100),
        1_281_167 * 2 * 100 / (250_000 * 100),
    ]
    assert f"{min(passes):.0f}x to {max(passes):.0f}x" in v.ours and "6 of 6 points" in v.ours
    none = api_cost.judge_cost(_cost_results([]))
    assert none.paper == v.paper and none.ours == "no throughput measured"
    assert len(v.paper) <= 120 and len(v.ours) <= 120


def test_compute_sentence_states_both_ratios():
    text = api_cost.cost_sentences(_cost_results(_throughput(victim=10.0, stealing=5.0))["cost"])["compute_text"]
    assert "22.2 times as many images" in text and "11.1 times as long" in text  # half the speed: half the ratio
