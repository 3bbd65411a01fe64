"""Chapter 5: the models, the transferability table (on a tiny watermarked encoder and on small
untrained ones), the rates and their intervals, the same-initialisation comparison, and the judge
and the chosen sentences on synthetic results, one for each outcome."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, build_stolen
from encsteal.cache import ResultCache
from encsteal.data import load
from encsteal.experiments.watermark import (
    CLAIM,
    DETECTION_LEVEL,
    FAMILY_ROLES,
    INDEPENDENT_ROLES,
    PAPER_CLAIM_INDEPENDENT,
    PAPER_CLAIM_STOLEN,
    PAPER_SAYS,
    Model,
    build_models,
    cell_shifts,
    conclusion_text,
    detection_rate,
    false_positive_rate,
    group_summary,
    group_table,
    headline,
    judge_watermark,
    model_table,
    ours_summary,
    paper_text,
    paper_vs_ours_points,
    plot_paper_vs_ours,
    plot_transferability,
    query_subset,
    rate,
    same_init_comparison,
    transferability_table,
    victim_initialisation,
    watermark_results,
)
from encsteal.models import ProjectionHead, SmallConvNet
from encsteal.stats import holm
from encsteal.tables import NA, to_markdown
from encsteal.victims import Victim, VictimConfig
from encsteal.watermark import WatermarkConfig, WatermarkedVictim, WatermarkMLP

WIDTHS = (16, 32, 64, 64)


# ---- building and scoring models -------------------------------------------------------------


def test_query_subsets_are_per_seed_and_nested_across_budgets():
    pool = load("mnist5k", "train").subset(torch.arange(100))
    a, b = query_subset(pool, 40, 0), query_subset(pool, 40, 1)
    assert torch.equal(a.images, query_subset(pool, 40, 0).images)  # reproducible
    assert not torch.equal(a.images, b.images)  # each seed its own queries
    assert torch.equal(query_subset(pool, 20, 0).images, a.images[:20])  # a smaller budget is a subset
    with pytest.raises(ValueError, match="query pool"):
        query_subset(pool, 101, 0)


def test_the_same_init_arm_starts_from_the_victims_initial_weights():
    base = VictimConfig(dataset="mnist5k", num_train=64, epochs=1, seed=3)
    init = victim_initialisation(base, 1, 28)
    api = EncoderAPI(SmallConvNet(1))
    same, _ = build_stolen(StealConfig(seed=0, init_seed=3), api, 1, 28)
    own, _ = build_stolen(StealConfig(seed=3), api, 1, 28)
    w = next(iter(init.state_dict()))
    assert torch.equal(same.state_dict()[w], init.state_dict()[w])
    assert not torch.equal(own.state_dict()[w], init.state_dict()[w])  # seed 3's copy: its own stream


def test_build_models_and_table_on_small_models(tmp_path):
    torch.manual_seed(0)
    base = VictimConfig(dataset="mnist5k", num_train=64, epochs=1, seed=0)
    enc, head = SmallConvNet(1), ProjectionHead(256, 64, 32)
    wm = WatermarkedVictim(base, WatermarkConfig(), enc.eval(), head.eval(), WatermarkMLP(256).eval())
    refs = {f"ref {s}": Victim(base, SmallConvNet(1).eval(), ProjectionHead(256, 64, 32).eval(), ()) for s in range(3)}
    other = {"other": Victim(base, SmallConvNet(1).eval(), ProjectionHead(256, 64, 32).eval(), ())}
    pool = load("mnist5k", "train").subset(torch.arange(60))
    attacks = {"mse": StealConfig(loss="mse", epochs=1, batch_size=16), "infonce": StealConfig(epochs=1, batch_size=16)}
    models = build_models(
        wm, pool, attacks, [20, 40], [0, 1], refs, other, original=refs["ref 0"], cache=ResultCache(tmp_path)
    )
    roles = pd.Series([m.role for m in models]).value_counts().to_dict()
    assert roles == {
        "stolen": 8,  # 2 losses x 2 budgets x 2 seeds
        "same init": 2,
        "stolen from independent": 2,
        "random": 2,
        "victim": 1,
        "same lineage": 1,
        "other data": 1,
        "initialisation": 1,
    }
    arm = [m for m in models if m.role in ("same init", "stolen from independent")]
    assert {(m.loss, m.budget) for m in arm} == {("mse", 20)}  # the first loss, the smallest budget
    assert [m.source for m in models if m.role == "stolen from independent"] == ["ref 0", "ref 1"]
    images = load("mnist5k", "test").images[:64]
    table = transferability_table(wm.mlp, "binary", models, {n: v.encoder for n, v in refs.items()}, images)
    assert len(table) == len(models) + 3
    assert table.loc["ref 1", "references"] == 2 and table.loc["watermarked victim", "references"] == 3
    copy_of_ref1 = table[(table.role == "stolen from independent") & (table.source == "ref 1")].iloc[0]
    assert copy_of_ref1["references"] == 2  # its source is left out
    fam = table[table.family]
    assert set(fam.role) == set(FAMILY_ROLES)
    assert list(fam.stolen) == holm(fam.p_value.tolist(), 0.05)
    outside = table[~table.family]
    assert (outside.stolen == outside.single).all()
    shown = model_table(table)
    assert list(shown.columns)[-2:] == ["stolen, single test", "stolen, Holm"] and len(shown) == len(table)
    assert (shown.loc[outside.index, "stolen, Holm"] == NA).all()  # controls outside the family
    to_markdown(shown)


def test_transferability_table_flags_the_watermarked_encoder(tiny_watermark):
    enc, mlp, held_out, _ = tiny_watermark
    refs = {}
    for s in range(4):
        torch.manual_seed(10 + s)
        refs[f"ref {s}"] = SmallConvNet(1, widths=WIDTHS).eval()
    torch.manual_seed(20)
    models = [Model("victim", "victim", enc), Model("other", "other data", SmallConvNet(1, widths=WIDTHS).eval())]
    table = transferability_table(mlp, "binary", models, refs, held_out)
    assert bool(table.loc["victim", "stolen"]) and not bool(table.loc["other", "stolen"])
    assert table.loc["victim", "p_value"] < 0.05 and table.loc["ref 0", "role"] == "reference"
    assert not table.loc[["ref 0", "ref 1", "ref 2", "ref 3"], "stolen"].any()
    with pytest.raises(ValueError, match="at least 3 references"):
        transferability_table(mlp, "binary", models, dict(list(refs.items())[:2]), held_out)


# ---- rates -----------------------------------------------------------------------------------


def test_rate_is_clopper_pearson():
    r = rate(0, 16)
    assert r["rate"] == 0 and r["low"] == 0 and r["high"] == pytest.approx(0.2059, abs=1e-4)
    r = rate(10, 20)
    assert (r["low"], r["high"]) == (pytest.approx(0.2720, abs=1e-4), pytest.approx(0.7280, abs=1e-4))
    assert math.isnan(rate(0, 0)["rate"])
    with pytest.raises(ValueError):
        rate(3, 2)


def _rows(
    stolen_flags=None,
    independent_flags=None,
    seeds=5,
    victim=True,
    same_acc=None,
    own_acc=None,
    copy_acc=None,
) -> list[dict]:
    """Synthetic results rows: copies (2 losses x 2 budgets x ``seeds``), 10 references (52.0 to
    52.9 %), one other-data model, copies of references, the controls; ``stolen_flags`` /
    ``independent_flags``: the decisions of the copies / independent models in order (default: all /
    none flagged); copies score ``own_acc`` (mse, 250 queries; default 60-64 %) and 65-66.2 % (other
    cells), or ``copy_acc`` + 0.2 * seed in every cell."""
    rows = [dict(model="watermarked victim", role="victim", watermark_acc=90.0, stolen=victim, family=False)]
    rows.append(dict(model="before", role="same lineage", watermark_acc=67.0, stolen=True, family=False))
    copies = [(loss, b, s) for loss in ("mse", "infonce") for b in (250, 1000) for s in range(seeds)]
    flags = stolen_flags if stolen_flags is not None else [True] * len(copies)
    own = own_acc or [60.0 + s for s in range(seeds)]
    for (loss, b, s), f in zip(copies, flags, strict=True):
        acc = own[s] if (loss, b) == ("mse", 250) else 65.0 + 0.3 * s
        acc = acc if copy_acc is None else copy_acc + 0.2 * s
        rows.append(
            dict(model=f"c {loss} {b} {s}", role="stolen", loss=loss, budget=b, seed=s, watermark_acc=acc, stolen=f)
        )
    same = same_acc or [62.0 + s + 0.1 * s * s for s in range(seeds)]
    for s in range(seeds):
        rows.append(
            dict(
                model=f"same {s}", role="same init", loss="mse", budget=250, seed=s, watermark_acc=same[s], stolen=True
            )
        )
    independent = [("reference", i) for i in range(10)] + [("other data", 0)]
    independent += [("stolen from independent", s) for s in range(seeds)]
    iflags = independent_flags if independent_flags is not None else [False] * len(independent)
    for (role, i), f in zip(independent, iflags, strict=True):
        arm = dict(loss="mse", budget=250, seed=i) if role == "stolen from independent" else {}
        rows.append(dict(model=f"{role} {i}", role=role, watermark_acc=52.0 + 0.1 * i, stolen=f, **arm))
    rows.append(dict(model="random 0", role="random", watermark_acc=50.0, stolen=False, family=False))
    for r in rows:
        r.setdefault("family", r["role"] in FAMILY_ROLES)
        r.setdefault("single", r["stolen"])
        r.setdefault("p_value", 0.001 if r["stolen"] else 0.4)
        r.setdefault("threshold", 58.0)
        for k in ("loss", "budget", "seed"):
            r.setdefault(k, None)
    return rows


def _results(**kw) -> dict:
    return {"alpha": 0.05, "rows": _rows(**kw)}


def test_rates_count_the_right_models():
    rows = _rows(stolen_flags=[True] * 10 + [False] * 10, independent_flags=[True] + [False] * 15)
    assert detection_rate(rows)["k"] == 10 and detection_rate(rows)["n"] == 20  # not the same-init copies
    fp = false_positive_rate(rows)
    assert (fp["k"], fp["n"]) == (1, 16)  # 10 references + other data + 5 copies of references, no random
    assert set(INDEPENDENT_ROLES) == {"reference", "other data", "stolen from independent"}


def test_cell_shifts_compare_each_cell_with_the_references():
    cells = cell_shifts(_rows(), 0.05)
    assert [(c["loss"], c["budget"]) for c in cells] == [
        ("infonce", 250),
        ("infonce", 1000),
        ("mse", 250),
        ("mse", 1000),
    ]
    mse = cells[2]
    assert mse["mean"] == pytest.approx(62.0) and mse["refs_mean"] == pytest.approx(52.45) and mse["above"]
    flat = cell_shifts(_rows(copy_acc=52.0), 0.05)
    assert not any(c["above"] for c in flat) and all(c["p_value"] > 0.05 for c in flat)
    assert cell_shifts([r for r in _rows() if r["role"] != "reference"]) == []


def test_same_init_comparison_pairs_by_seed():
    rows = _rows(own_acc=[60, 61, 62, 63, 64], same_acc=[63, 64, 66, 66, 68])
    c = same_init_comparison(rows)
    assert c["n"] == 5 and c["loss"] == "mse" and c["budget"] == 250
    assert c["diff"] == pytest.approx(3.4) and c["low"] > 0 and c["same_flagged"] == 5
    assert same_init_comparison([r for r in _rows() if r["role"] != "same init"]) is None


# ---- the judge: every outcome -----------------------------------------------------------------


def test_reproduced_when_copies_are_flagged_and_independent_models_are_not():
    v = judge_watermark(_results())
    assert v.verdict == "reproduced" and v.claim == CLAIM
    assert "20 of 20" in v.evidence and "0 of 16" in v.evidence


def test_not_reproduced_when_the_watermark_flags_independent_models():
    v = judge_watermark(_results(independent_flags=[True] * 5 + [False] * 11))  # 5/16: CI 11-59 % > 5 %
    assert v.verdict == "not reproduced" and "5 of 16" in v.evidence


def test_not_reproduced_when_copies_are_neither_flagged_nor_above_the_references():
    flags = [True] * 2 + [False] * 18  # 2/20: CI 1-32 % < 50 %
    v = judge_watermark(_results(stolen_flags=flags, copy_acc=52.0))  # copies 52.0-52.8 %, references 52.0-52.9 %
    assert v.verdict == "not reproduced" and "0 of 4" in v.evidence


def test_partly_when_copies_score_above_the_references_but_are_not_identified():
    v = judge_watermark(_results(stolen_flags=[False] * 20))  # copies 60-65 %, references 52.0-52.9 %
    assert v.verdict == "partly reproduced" and "0 of 20" in v.evidence and "4 of 4" in v.evidence


def test_partly_when_half_the_copies_or_one_independent_model_are_flagged():
    assert judge_watermark(_results(stolen_flags=[True] * 10 + [False] * 10)).verdict == "partly reproduced"
    one_fp = judge_watermark(_results(independent_flags=[True] + [False] * 15))  # 6 % > 5 %, CI from 0.2 %
    assert one_fp.verdict == "partly reproduced"


def test_not_evaluated_when_thin_or_without_a_watermark():
    assert judge_watermark({"alpha": 0.05, "rows": []}).verdict == "not evaluated"
    few_seeds = judge_watermark(_results(seeds=2))  # smoke scale: 2 seeds a cell
    assert few_seeds.verdict == "not evaluated" and "2 seeds" in few_seeds.evidence
    rows = [r for r in _rows() if not (r["role"] == "reference" and r["model"] != "reference 0")]
    few_refs = judge_watermark({"alpha": 0.05, "rows": rows})  # 1 + 1 + 5 = 7 independent models
    assert few_refs.verdict == "not evaluated" and "7 independent models" in few_refs.evidence
    no_wm = judge_watermark(_results(victim=False))
    assert no_wm.verdict == "not evaluated" and "no watermark" in no_wm.evidence
    no_copies = judge_watermark({"alpha": 0.05, "rows": [r for r in _rows() if r["role"] != "stolen"]})
    assert no_copies.verdict == "not evaluated"


def test_the_detection_level_is_a_strict_lower_bound():
    assert DETECTION_LEVEL == 0.5
    # 15 of 20: Clopper-Pearson lower end 50.9 % > 50 %; 14 of 20: 45.7 %
    assert judge_watermark(_results(stolen_flags=[True] * 15 + [False] * 5)).verdict == "reproduced"
    assert judge_watermark(_results(stolen_flags=[True] * 14 + [False] * 6)).verdict == "partly reproduced"


def _t95(values) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def _independent_accs(seeds=5) -> list[float]:
    """The independent models of :func:`_rows`: 10 references, one other-data model, ``seeds`` copies of references."""
    return [52.0 + 0.1 * i for i in range(10)] + [52.0] + [52.0 + 0.1 * s for s in range(seeds)]


def test_every_verdict_carries_the_papers_words_and_our_numbers():
    mean, low, high = _t95([65.0 + 0.3 * s for s in range(5)])  # the best cell (infonce, 250 first of the ties)
    imean, ilow, ihigh = _t95(_independent_accs())
    ours = (
        f"copies {mean:.1f} % [{low:.1f}, {high:.1f}] (infonce, 250 q.), "
        f"independent {imean:.1f} % [{ilow:.1f}, {ihigh:.1f}]; flagged: 20/20 copies, 0/16 indep."
    )
    assert judge_watermark(_results()).ours == ours
    outcomes = [
        _results(),  # reproduced
        _results(independent_flags=[True] * 5 + [False] * 11),  # not reproduced
        _results(stolen_flags=[False] * 20),  # partly
        _results(seeds=2),  # not evaluated: thin
        _results(victim=False),  # not evaluated: no watermark
        {"alpha": 0.05, "rows": []},  # not evaluated: nothing scored
    ]
    verdicts = [judge_watermark(r) for r in outcomes]
    assert [v.verdict for v in verdicts] == ["reproduced", "not reproduced", "partly reproduced"] + [
        "not evaluated"
    ] * 3
    for v in verdicts:
        assert v.paper == PAPER_SAYS and "no number published" in v.paper and "50 %" in v.paper
        assert v.ours and v.ours != NA and len(v.ours) <= 120 and len(v.paper) <= 120
    assert "5/16 indep." in verdicts[1].ours and "0/20 copies" in verdicts[2].ours
    assert verdicts[-1].ours == "no models scored"


def test_ours_summary_without_cells_or_independent_models():
    one_seed = _rows(seeds=1)  # one copy per cell: no cell mean, the copies' plain mean instead
    copies = [r["watermark_acc"] for r in one_seed if r["role"] == "stolen"]
    cmean, clow, chigh = _t95(copies)
    assert ours_summary(one_seed).startswith(f"copies {cmean:.1f} % [{clow:.1f}, {chigh:.1f}], independent")
    alone = [r for r in _rows() if r["role"] not in INDEPENDENT_ROLES + ("stolen",)]
    assert ours_summary(alone) == "no copies, no independent models; flagged: 0/0 copies, 0/0 indep."


# ---- sentences, numbers, figure ----------------------------------------------------------------


def _full(**kw) -> dict:
    table = pd.DataFrame(_rows(**kw)).assign(ci_low=1.0, ci_high=2.0, references=10)
    return watermark_results(table, 0.05, {"probe_before": 80.0, "probe_after": 79.0, "cost": 1.0})


def test_sentences_follow_the_results():
    results = _full()
    text = conclusion_text(results, judge_watermark(results))
    assert set(text) == {
        "wm_detection_text",
        "wm_fpr_text",
        "wm_same_init_text",
        "wm_lineage_text",
        "wm_paper_text",
        "wm_verdict_text",
    }
    assert (
        "20 of the 20 copies" in text["wm_detection_text"] and "mse at 250 queries: 5 of 5" in text["wm_detection_text"]
    )
    assert "α/41 = 0.0012" in text["wm_detection_text"] and "p = 0.001." in text["wm_detection_text"]
    assert "in 4 of 4 cells" in text["wm_detection_text"]
    flat = _full(copy_acc=52.0)
    assert "in no cell" in conclusion_text(flat, judge_watermark(flat))["wm_detection_text"]
    assert "none is called stolen" in text["wm_fpr_text"] and "without the correction, 0 of 16" in text["wm_fpr_text"]
    for r in results["rows"]:
        if r["model"] == "reference 3":
            r["single"] = True  # flagged alone, not after Holm
    assert "without the correction, 1 of 16" in conclusion_text(results, judge_watermark(results))["wm_fpr_text"]
    assert "score higher than" in text["wm_same_init_text"]  # same-init copies 62..66.6 vs 60..64
    assert "is called stolen" in text["wm_lineage_text"] and "lineage" in text["wm_lineage_text"]
    assert text["wm_verdict_text"].startswith("**Verdict: reproduced.**")

    many = _full(independent_flags=[True] * 5 + [False] * 11)
    assert "significantly more than the test's level" in conclusion_text(many, judge_watermark(many))["wm_fpr_text"]
    one = _full(independent_flags=[True] + [False] * 15)
    assert "not significantly more" in conclusion_text(one, judge_watermark(one))["wm_fpr_text"]
    lower = _full(own_acc=[60, 61, 62, 63, 64], same_acc=[58, 58.5, 60, 61, 61])
    assert "score lower than" in conclusion_text(lower, judge_watermark(lower))["wm_same_init_text"]
    mixed = _full(own_acc=[60, 61, 62, 63, 64], same_acc=[61, 60, 63, 62, 64.5])
    assert "are not separable from" in conclusion_text(mixed, judge_watermark(mixed))["wm_same_init_text"]
    for r in mixed["rows"]:
        if r["role"] == "same lineage":
            r["stolen"] = False
    lineage = conclusion_text(mixed, judge_watermark(mixed))["wm_lineage_text"]
    assert "is not called stolen" in lineage and "lineage" not in lineage


def test_headline_and_group_summary():
    results = _full()
    values = headline(results)
    assert values["wm_victim_acc"] == 90.0 and values["wm_refs_n"] == 10 and values["wm_cost"] == 1.0
    assert values["wm_refs_mean"] == pytest.approx(52.45) and values["wm_family"] == 41
    summary = group_summary(results["rows"])
    refs = summary.loc["references (leave-one-out)"]
    assert (
        refs["models"] == 10 and refs["called_stolen"] == 0 and refs["share_high_%"] == pytest.approx(30.85, abs=0.01)
    )
    cell = summary.loc["copies of the watermarked victim: mse, 250 queries"]
    assert cell["models"] == 5 and cell["acc_low"] < 62 < cell["acc_high"]
    assert math.isnan(summary.loc["watermarked victim", "acc_low"])  # one model: no interval


def test_plot_marks_every_group_threshold_and_chance():
    results = _full()
    fig = plot_transferability(pd.DataFrame(results["rows"]), "four_way")
    try:
        ax = fig.axes[0]
        assert len(ax.get_yticks()) == len(group_summary(results["rows"]))
        assert [line.get_xdata()[0] for line in ax.get_lines()] == [58.0, 25.0]  # threshold, then chance
    finally:
        plt.close(fig)


def test_reader_tables_fit_a_page():
    results = _full()
    groups = group_table(results["rows"])
    assert groups.index.name == "group of models" and len(groups.columns) == 5
    refs = groups.loc["references (leave-one-out)"]
    mean, low, high = _t95([52.0 + 0.1 * i for i in range(10)])
    assert refs["watermark accuracy (%)"] == f"{mean:.1f} [{low:.1f}, {high:.1f}]"
    assert refs["called stolen"] == "0 of 10" and refs["share called stolen (%)"] == "0 [0, 31]"
    assert groups.loc["watermarked victim", "watermark accuracy (%)"] == "90.0"  # one model: its value alone
    assert groups.loc["watermarked victim", "in Holm's family"] == "no"
    models = model_table(pd.DataFrame(results["rows"]))
    assert models.loc["c mse 250 0", "watermark accuracy (%)"] == "60.0 [1.0, 2.0]"  # the rows' Wilson bounds
    assert models.loc["c mse 250 0", "p-value"] == "0.001" and models.loc["random 0", "stolen, Holm"] == NA
    to_markdown(groups), to_markdown(models)


def _wilson_rows() -> list[dict]:
    """:func:`_rows` with each model's interval over the images: its accuracy +- 2 points."""
    return [dict(r, ci_low=r["watermark_acc"] - 2, ci_high=r["watermark_acc"] + 2) for r in _rows()]


def test_paper_vs_ours_points_group_the_models_the_claim_speaks_of():
    pts = paper_vs_ours_points(_wilson_rows())
    assert list(pts["side"]) == ["independent"] * 3 + ["stolen"] * 5 + ["victim"]
    assert pts["label"].iloc[0] == "references (leave-one-out) (n=10)"
    assert pts["label"].iloc[3] == "copies of the victim: mse, 250 queries (n=5)"
    assert pts["label"].iloc[7] == "copies of the victim: mse, 250 queries, victim's init (n=5)"
    refs = pts.iloc[0]
    assert (refs["mean"], refs["low"], refs["high"]) == pytest.approx(_t95([52.0 + 0.1 * i for i in range(10)]))
    victim = pts.iloc[-1]
    assert (victim["mean"], victim["low"], victim["high"], victim["interval"]) == (90.0, 88.0, 92.0, "Wilson")
    assert not set(pts["role"]) & {"random", "initialisation", "same lineage"}  # controls are in the other figure


def test_plot_paper_vs_ours_marks_the_papers_claim_and_our_intervals():
    fig = plot_paper_vs_ours(_wilson_rows(), "binary")
    try:
        ax = fig.axes[0]
        assert fig.get_figwidth() <= 9 and len(ax.get_yticks()) == 9
        chance = [ln for ln in ax.get_lines() if ln.get_label().startswith(PAPER_CLAIM_INDEPENDENT)]
        assert len(chance) == 1 and chance[0].get_xdata()[0] == 50.0
        shaded = [c for c in ax.collections if c.get_label() == PAPER_CLAIM_STOLEN]
        (x0, y0), (x1, y1) = shaded[0].get_paths()[0].get_extents().get_points()
        assert (x0, x1) == (50.0, 100.0) and (y0, y1) == pytest.approx((2.55, 7.45))  # the copies' rows 3-7
        assert any("ours: mean, 95 % interval" == t.get_text() for t in fig.legends[0].get_texts())
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="No independent models"):
        plot_paper_vs_ours([r for r in _rows() if r["role"] in ("random", "same lineage")])


def test_paper_text_places_the_independent_models_against_chance():
    text = paper_text(_rows())
    assert text.startswith("The paper published no transferability numbers")
    mean, low, high = _t95(_independent_accs())
    assert f"the 16 independent models average {mean:.1f} % (95 % CI {low:.1f}-{high:.1f}), above chance" in text
    assert "from 62.0 % (mse, 250 queries) to 65.6 % (infonce, 250 queries)" in text
    near = [
        dict(r, watermark_acc=49.0 + (i % 3)) if r["role"] in INDEPENDENT_ROLES else r for i, r in enumerate(_rows())
    ]
    assert "consistent with chance" in paper_text(near)
    assert "about chance (25 %)" in paper_text(_rows(), task="four_way")
    assert paper_text(_rows(copy_acc=55.0, seeds=1) + _rows(copy_acc=55.0, seeds=1)).endswith(
        "every cell of copies averages 55.0 %."
    )
