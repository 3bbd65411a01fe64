"""Chapter 4: the judge on synthetic results (every verdict, an ineffective defense, a task the
victim does not win), the paired and matched tables, the sentences chosen from results, and the
measurements on a tiny victim."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from encsteal.attack import outlier_answers
from encsteal.cache import ResultCache
from encsteal.data import role_splits
from encsteal.experiments import defenses as D
from encsteal.victims import VictimConfig, train_victim

SEEDS = [0, 1, 2, 3, 4]
TASKS = ("mnistm", "photocrops")


def _results(loss_legit, loss_attacker, victim=60.0, random=40.0, attacker=50.0, jitter=0.5, zero=False):
    """Synthetic chapter results. ``loss_legit[s]`` / ``loss_attacker[s]``: the relative loss (%)
    of each user at strength s (strength 0 is the undefended API), plus per-seed jitter of
    ``jitter`` points (none for exactly-zero losses when ``zero``)."""
    rng = np.random.default_rng(0)
    base, noise = [], []
    for task in TASKS:
        for seed in SEEDS:
            base.append({"seed": seed, "task": task, "user": D.VICTIM, "accuracy": victim})
            base.append({"seed": seed, "task": task, "user": D.RANDOM, "accuracy": random + rng.normal(0, 1)})
            clean_attacker = attacker + rng.normal(0, 1)
            noise.append({"strength": 0.0, "seed": seed, "task": task, "user": D.LEGIT, "accuracy": victim})
            noise.append(
                {"strength": 0.0, "seed": seed, "task": task, "user": "attacker_mse", "accuracy": clean_attacker}
            )
            for s in loss_legit:
                users = ((D.LEGIT, victim, loss_legit[s]), ("attacker_mse", clean_attacker, loss_attacker[s]))
                for user, start, loss in users:
                    wobble = 0.0 if (zero and loss == 0) else rng.normal(0, jitter)
                    acc = start * (1 - loss / 100) + wobble
                    noise.append({"strength": float(s), "seed": seed, "task": task, "user": user, "accuracy": acc})
    return {"seeds": SEEDS, "queries": 1000, "baselines": base, "noise": noise}


def test_judge_reproduced_when_the_legitimate_user_loses_more():
    v = D.judge_defense(_results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0}))
    assert v.verdict == "reproduced" and v.claim == D.CLAIM
    assert "legitimate user hurt more" in v.evidence and "4 of 4 cells" in v.evidence


def test_judge_reproduced_when_losses_are_not_separable():
    results = _results({0.5: 20.0}, {0.5: 20.0}, jitter=3.0)
    table = D.paired_table(results)
    assert table["effective"].all() and (table["outcome"] == "not separable").all()
    assert D.judge_defense(results).verdict == "reproduced"


def test_judge_not_reproduced_when_the_attacker_loses_separably_more():
    v = D.judge_defense(_results({0.1: 1.0, 0.5: 3.0}, {0.1: 20.0, 0.5: 50.0}))
    assert v.verdict == "not reproduced" and "attacker hurt more" in v.evidence


def test_judge_partly_reproduced_when_it_depends_on_the_strength():
    v = D.judge_defense(_results({0.1: 20.0, 0.5: 2.0}, {0.1: 1.0, 0.5: 40.0}))
    assert v.verdict == "partly reproduced"


def test_an_ineffective_defense_is_not_evaluated():
    # zero noise: every defended accuracy equals the undefended one, for every seed
    results = _results({0.1: 0.0, 0.5: 0.0}, {0.1: 0.0, 0.5: 0.0}, zero=True)
    assert not D.paired_table(results)["effective"].any()
    v = D.judge_defense(results)
    assert v.verdict == "not evaluated" and "no defended strength changed" in v.evidence
    # an ineffective strength does not count for the claim: only the effective one decides
    mixed = _results({0.1: 0.0, 0.5: 2.0}, {0.1: 0.0, 0.5: 40.0}, zero=True)
    assert D.judge_defense(mixed).verdict == "not reproduced"


def test_a_defense_that_only_touches_the_attacker_does_not_reproduce():
    # like a detector that fires on the attacker only: the legitimate user is untouched
    results = _results({0.5: 0.0}, {0.5: 30.0}, zero=True)
    cells = D.paired_table(results)
    assert cells["effective"].all() and (cells["outcome"] == "attacker hurt more").all()
    assert D.judge_defense(results).verdict == "not reproduced"


def test_tasks_the_victim_does_not_win_are_not_judged():
    results = _results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0)
    assert not D.baseline_table(results)["judged"].any()
    assert D.paired_table(results).empty
    v = D.judge_defense(results)
    assert v.verdict == "not evaluated" and "beats a random-init encoder on no task" in v.evidence
    assert "not above zero, so the task is not judged" in D.margin_sentence(results)
    assert "No task was judged" in D.noise_sentence(results) and "No task was judged" in D.matched_sentence(results)


def test_paired_table_uses_holm_over_the_effective_cells():
    results = _results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0})
    table = D.paired_table(results)
    assert len(table) == 4 and set(table.task) == set(TASKS)
    row = table[(table.task == "mnistm") & (table.strength == 0.5)].iloc[0]
    assert row.legit_loss == pytest.approx(40.0, abs=1.0) and row.attacker_loss == pytest.approx(2.0, abs=1.5)
    assert row["diff"] == pytest.approx(row.legit_loss - row.attacker_loss)
    assert row.diff_low < row["diff"] < row.diff_high and row.attacker == "attacker_mse"
    # a difference significant alone but not after Holm over many cells stays "not separable"
    strengths = (0.1, 0.2, 0.3, 0.4, 0.5)
    weak = _results({s: 6.0 for s in strengths}, {s: 4.0 for s in strengths}, jitter=0.8)
    cells = D.paired_table(weak)
    assert cells["effective"].all()
    lone = cells[(cells.p < 0.05) & (cells.outcome == "not separable")]
    assert len(lone) >= 3  # each would be separable alone (p < 0.05), not among 10 comparisons


def test_the_best_attacker_is_the_one_the_defense_leaves_best_off():
    results = _results({0.5: 10.0}, {0.5: 30.0})
    for r in list(results["noise"]):
        if r["user"] == "attacker_mse":  # a second attacker, weaker undefended, untouched by the defense
            results["noise"].append({**r, "user": "attacker_infonce", "accuracy": 48.0})
    legit, attacker, best = D.user_losses(results, "mnistm", 0.5)
    assert best == "attacker_infonce"  # 48 % against the mse copy's 35 % at strength 0.5
    clean_best = D._per_seed(D._frame(results, "noise"), task="mnistm", user="attacker_mse", strength=0.0)
    assert np.allclose(attacker, 100 * (1 - 48.0 / clean_best))  # against the best undefended attacker


def test_matched_table_interpolates_the_attacker_loss():
    results = _results({1.0: 10.0, 2.0: 30.0}, {1.0: 2.0, 2.0: 4.0}, jitter=0.0, zero=True)
    table = D.matched_table(results, targets=(10.0, 25.0, 50.0)).set_index(["task", "target"])
    assert table.loc[("mnistm", 10.0), "attacker_loss"] == pytest.approx(2.0, abs=1e-6)
    assert table.loc[("mnistm", 25.0), "attacker_loss"] == pytest.approx(3.5, abs=1e-6)  # at strength 1.75
    assert table.loc[("mnistm", 25.0), "strength"] == pytest.approx(1.75)
    assert table.loc[("mnistm", 50.0), "reached"] == 0 and math.isnan(table.loc[("mnistm", 50.0), "attacker_loss"])
    text = D.matched_sentence(results)
    assert "has lost 10 % of its accuracy" in text and "less" in text


def test_relative_loss_is_paired_by_seed():
    import pandas as pd

    assert list(D.relative_loss(pd.Series([30.0, 40.0]), pd.Series([60.0, 40.0]))) == [50.0, 0.0]
    with pytest.raises(ValueError, match="paired by seed"):
        D.relative_loss(pd.Series([1.0], index=[0]), pd.Series([1.0], index=[1]))


def test_sentences_follow_the_outcome():
    hurt_legit = D.noise_sentence(_results({0.5: 40.0}, {0.5: 1.0}))
    hurt_attacker = D.noise_sentence(_results({0.5: 1.0}, {0.5: 40.0}))
    assert "legitimate user is hurt separably more" in hurt_legit
    assert "down to 36.0 %, below the random-init encoder" in hurt_legit  # 60 x 0.6 < 40
    assert "attacker is hurt separably more" in hurt_attacker and "below the random-init" not in hurt_attacker
    assert "the best attacker gains 5 %" in D.noise_sentence(_results({0.5: 40.0}, {0.5: -5.0}))
    assert "the best attacker loses about 0 %" in D.noise_sentence(_results({0.5: 40.0}, {0.5: -0.2}, jitter=0.0))
    assert D._percent(-0.03, -0.9, 0.84) == "0.0 % [-0.9, 0.8]"
    texts = {D.verdict_sentence(D.Verdict(D.CLAIM, "", v)) for v in D.VERDICTS}
    assert len(texts) == 4
    assert "not reproduced" in D.verdict_sentence(D.Verdict(D.CLAIM, "", "not reproduced"))
    # a reproduced claim whose every effective cell hurts the legitimate user separably more says so
    results = _results({0.5: 40.0}, {0.5: 1.0})
    cells = D.paired_table(results)
    stronger = D.verdict_sentence(D.judge_defense(results), cells)
    assert "hurts the legitimate user more" in stronger
    even = _results({0.5: 20.0}, {0.5: 20.0}, jitter=3.0)
    assert "hurts the legitimate user more" not in D.verdict_sentence(D.judge_defense(even), D.paired_table(even))


def test_noise_table_reports_margin_shares():
    results = _results({0.5: 50.0}, {0.5: 0.0}, jitter=0.0)
    table = D.noise_table(results)
    legit = table.loc[("mnistm", 0.5, D.LEGIT)]
    assert legit.accuracy == pytest.approx(30.0) and legit.loss == pytest.approx(50.0)
    assert legit.margin_share < 0  # 30 % is below the random-init encoders' 40 %
    assert table.loc[("mnistm", 0.0, D.LEGIT)].margin_share == pytest.approx(100.0)


def _detector_results():
    results = _results({0.5: 40.0}, {0.5: 1.0})
    det, detection = [], []
    for task in TASKS:
        for seed in SEEDS:
            det.append(
                {"threshold": 0.8, "seed": seed, "task": task, "user": D.LEGIT, "accuracy": 9.0 + seed / 10}
                | {"flagged": 99.0, "kept": float("nan")}
            )
            det.append(
                {"threshold": 0.8, "seed": seed, "task": task, "user": "attacker_mse_drop", "accuracy": 45.0 + seed}
                | {"flagged": 97.0, "kept": 30.0}
            )
    for seed in SEEDS:
        detection.append({"threshold": 0.8, "seed": seed, "precision": 50.0 + seed, "recall": 100.0, "f1": 67.0})
        detection[-1]["roc_auc"] = 0.7 + seed / 100
    return results | {"detector": det, "detection": detection}


def test_detector_tables_and_sentence():
    results = _detector_results()
    table = D.detector_table(results)
    row = table.loc[(0.8, "mnistm", "attacker_mse_drop")]
    undefended = D._per_seed(D._frame(results, "noise"), task="mnistm", user="attacker_mse", strength=0.0)
    assert row.kept_share == pytest.approx(float(np.mean(100 * (45.0 + np.arange(5)) / undefended.values)))
    assert row.answers_used == 30.0 and row.flagged == 97.0
    assert table.loc[(0.8, "mnistm", D.LEGIT)].kept_share == pytest.approx(100 * 9.2 / 60.0)
    assert D.detection_table(results).loc[0.8, "precision"] == pytest.approx(52.0)
    assert table.loc[(0.8, "mnistm", D.LEGIT)].margin_share < -100  # 9 % is far below the random-init 40 %
    text = D.detector_sentence(results)
    assert "99 % on mnistm" in text and "97 % of the attacker's 1000 plain queries" in text
    assert "trains on the 30 answers left unpoisoned" in text
    assert "9.2 % on mnistm" in text and "below the random-init encoder" in text
    share = row.margin_share  # (47 - random) / (60 - random) for random about 40: above random
    assert 20 < share < 50 and f"47.0 % on mnistm ({share:.0f} % [" in text


def test_detector_sentence_on_tasks_that_are_not_judged_quotes_kept_shares():
    results = _detector_results()
    unjudged = _results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0)
    text = D.detector_sentence(results | {"baselines": unjudged["baselines"]})
    assert "victim's margin" not in text and "the task is not judged" in text
    kept = D.detector_table(results).loc[(0.8, "mnistm", D.LEGIT)]
    assert f"9.2 % on mnistm ({kept.kept_share:.0f} % [" in text


def test_plot_noise_is_a_pyplot_figure_one_panel_per_task():
    fig = D.plot_noise(_results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0}))
    try:
        assert isinstance(fig, Figure) and plt.fignum_exists(fig.number)
        assert len(fig.axes) == 2 and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
        assert [ax.get_title() for ax in fig.axes] == list(TASKS)
        assert fig.get_size_inches()[0] <= D.FIGURE_WIDTH
    finally:
        plt.close(fig)


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_paper_vs_ours_figure_draws_our_losses_against_the_claim():
    from matplotlib.container import ErrorbarContainer

    results = _results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0}, jitter=0.0)
    fig = D.plot_paper_vs_ours(results)
    try:
        (ax,) = fig.axes
        assert fig.get_size_inches()[0] <= D.FIGURE_WIDTH
        labels = _legend_texts(ax)
        assert D.PAPER_CLAIM_LABEL in labels and set(TASKS) <= set(labels)
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 4  # one per (task, defended strength)
        points = sorted(
            (round(float(b.lines[0].get_xdata()[0]), 6), round(float(b.lines[0].get_ydata()[0]), 6)) for b in bars
        )
        assert points == [(10.0, 1.0), (10.0, 1.0), (40.0, 2.0), (40.0, 2.0)]  # (user's loss, attacker's loss)
        diagonal = next(line for line in ax.get_lines() if line.get_label() == D.PAPER_CLAIM_LABEL)
        x, y = diagonal.get_data()
        assert np.allclose(x, y)  # the claim: equal loss
        assert sorted(t.get_text() for t in ax.texts) == ["0.1x", "0.1x", "0.5x", "0.5x"]
    finally:
        plt.close(fig)
    unjudged = D.plot_paper_vs_ours(_results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0))
    try:
        assert "no judged task" in [t.get_text() for t in unjudged.axes[0].texts]
    finally:
        plt.close(unjudged)


def test_detector_figure_shows_kept_shares_against_the_claim():
    results = _detector_results()
    fig = D.plot_detector(results)
    try:
        (ax,) = fig.axes
        assert D.DETECTOR_CLAIM_LABEL in _legend_texts(ax) and "legitimate user" in _legend_texts(ax)
        heights = sorted(round(p.get_height(), 6) for p in ax.patches)
        table = D.detector_table(results)
        assert heights == sorted(round(x, 6) for x in table.kept_share)  # one bar per (task, user)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(TASKS)
    finally:
        plt.close(fig)


def test_attack_configs_one_per_loss_an_augmented_views_attack_and_dropping():
    attacks = D.attack_configs(
        ["mse", "infonce"], epochs=3, seed=7, views_loss="infonce", loss_settings={"infonce": {"temperature": 0.3}}
    )
    assert list(attacks) == ["mse", "infonce", "infonce_views"]
    assert attacks["infonce"].loss_params == {"temperature": 0.3} and attacks["mse"].loss_params == {}
    assert attacks["infonce_views"].augment == "views" and all(a.seed == 7 for a in attacks.values())
    assert all(a.drop_outlier_ratio is None for a in attacks.values())
    assert D.attack_configs(["mse"], 1, 0, drop_outlier_ratio=10.0)["mse"].drop_outlier_ratio == 10.0


def test_augmented_pair_stream_truth():
    x = torch.randint(0, 255, (6, 1, 12, 12), dtype=torch.uint8)
    stream, truth = D.augmented_pair_stream(x, seed=1)
    assert stream.shape == (12, 1, 12, 12) and truth.tolist() == [False] * 6 + [True] * 6


# ---- what the paper at a glance and the readers see ----------------------------------------------


def _t_interval(values, digits=1):
    """Reference: mean [low, high] with the Student-t 95 % interval, formatted like the book."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return f"{x.mean():.{digits}f} [{x.mean() - half:.{digits}f},\u00a0{x.mean() + half:.{digits}f}]"


def test_judge_fills_paper_and_ours_on_every_path():
    exact = _results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0}, jitter=0.0)
    v = D.judge_defense(exact)
    assert v.verdict == "reproduced" and v.paper == D.PAPER_CLAIM and "no number published" in v.paper
    # the strongest strength, both tasks: the user lost 40 %, the attacker 2 % (no spread: exact)
    assert v.ours == (
        "loss (%) at noise 0.5x, user vs attacker: mnistm 40 [40, 40] vs 2 [2, 2]; photocrops 40 [40, 40] vs 2 [2, 2]"
    )
    worse = D.judge_defense(_results({0.5: 1.0}, {0.5: 30.0}, jitter=0.0))
    assert worse.verdict == "not reproduced" and "vs 30 [30, 30]" in worse.ours and worse.paper == D.PAPER_CLAIM
    idle = D.judge_defense(_results({0.5: 0.0}, {0.5: 0.0}, zero=True))
    assert (
        idle.verdict == "not evaluated" and idle.ours.startswith("no effect; ") and "0 [0, 0] vs 0 [0, 0]" in idle.ours
    )
    unjudged_rows = _results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0)
    unjudged = D.judge_defense(unjudged_rows)
    assert unjudged.verdict == "not evaluated" and unjudged.paper == D.PAPER_CLAIM
    margins = [
        40.0 - r["accuracy"] for r in unjudged_rows["baselines"] if r["task"] == "mnistm" and r["user"] == D.RANDOM
    ]
    expected = _t_interval(margins, 0).replace("\u00a0", " ").replace("[-0,", "[0,").replace(" -0]", " 0]")
    assert unjudged.ours.startswith("victim beats random-init on no task") and f"mnistm {expected}" in unjudged.ours
    for verdict in (v, worse, idle, unjudged):
        assert len(verdict.paper) <= 120 and len(verdict.ours) <= 120
    with pytest.raises(ValueError, match="no task was judged"):
        D.loss_summary(D.paired_table(_results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0)))


def test_labels_and_cells_for_readers():
    assert D.user_label(D.LEGIT) == "legitimate user" and D.user_label("attacker_mse") == "attacker (mse)"
    assert D.user_label("attacker_infonce_drop") == "attacker (infonce), drops outliers"
    with pytest.raises(ValueError, match="Unknown user 'victim'"):
        D.user_label("victim")
    assert D.strength_label(0.0) == "0 (undefended)" and D.strength_label(0.25) == "0.25"
    row = {"x": -0.03, "x_low": -0.9, "x_high": 0.84}
    assert D.cell(row, "x") == "0.0 [-0.9,\u00a00.8]"  # never "-0.0"; the bracket never breaks
    assert D.cell({"x": 61.1, "x_low": 61.1, "x_high": 61.1}, "x") == "61.1"  # no spread: alone
    assert D.cell({"x": float("nan"), "x_low": float("nan"), "x_high": float("nan")}, "x") == "n/a"


def _check_reader(table):
    from encsteal.tables import MAX_COLUMNS, check_for_readers, to_markdown

    check_for_readers(table)  # no NaN, named rows, not wider than the page
    assert len(table.columns) <= MAX_COLUMNS and table.index.name
    assert to_markdown(table).startswith("|")


def test_reader_tables_for_the_noise():
    results = _results({0.1: 10.0, 0.5: 40.0}, {0.1: 1.0, 0.5: 2.0}, jitter=0.0)
    base = D.baseline_reader(results)
    _check_reader(base)
    randoms = [r["accuracy"] for r in results["baselines"] if r["task"] == "mnistm" and r["user"] == D.RANDOM]
    assert base.loc["mnistm", "victim (%)"] == "60.0" and base.loc["mnistm", "judged"] == "yes"
    assert base.loc["mnistm", "random-init encoders (%)"] == _t_interval(randoms)
    assert base.loc["mnistm", "victim's margin (points)"] == _t_interval(60.0 - np.array(randoms))

    noise = D.noise_reader(results)
    _check_reader(noise)
    assert len(noise) == 2 * 3 * 2  # tasks x strengths (0 and two defended) x users
    first = noise.loc["mnistm"].iloc[0]  # the undefended legitimate user comes first
    assert first[D.STRENGTH] == "0 (undefended)" and first["user"] == "legitimate user"
    assert first["accuracy (%)"] == "60.0" and first[D.LOSS] == "0.0"
    legit = noise.loc["mnistm"].set_index([D.STRENGTH, "user"]).loc[("0.5", "legitimate user")]
    assert legit["accuracy (%)"] == "36.0" and legit[D.LOSS] == "40.0"  # 60 x (1 - 0.4)

    paired = D.paired_reader(results)
    _check_reader(paired)
    row = paired.loc["photocrops"].set_index(D.STRENGTH).loc["0.5"]
    assert row[D.LEGIT_LOSS] == "40.0" and row[D.ATTACKER_LOSS] == "2.0" and row["difference (points)"] == "38.0"
    assert row["outcome"] == "legitimate user hurt more" and "best attacker" not in paired.columns


def test_reader_tables_name_tasks_that_are_not_judged():
    results = _results({0.5: 40.0}, {0.5: 1.0}, victim=40.0, random=40.0)
    _check_reader(D.noise_reader(results))
    detector = D.detector_reader(_detector_results() | {"baselines": results["baselines"]})
    _check_reader(detector)
    assert (detector[D.MARGIN_SHARE] == "n/a").all()  # a share of no margin means nothing
    paired, matched = D.paired_reader(results), D.matched_reader(results)
    _check_reader(paired)
    _check_reader(matched)
    assert list(paired.index) == list(TASKS) and (paired["outcome"] == D.NOT_JUDGED).all()
    assert (paired[D.LEGIT_LOSS] == "n/a").all()
    assert (matched["seeds reaching it"] == f"none ({D.NOT_JUDGED})").all()


def test_reader_table_of_the_matched_comparison():
    results = _results({1.0: 10.0, 2.0: 30.0}, {1.0: 2.0, 2.0: 4.0}, jitter=0.0, zero=True)
    table = D.matched_reader(results)
    _check_reader(table)
    rows = table.loc["mnistm"].set_index(D.LEGIT_LOSS)
    assert rows.loc["10", D.ATTACKER_LOSS] == "2.0" and rows.loc["10", "seeds reaching it"] == "5 of 5"
    assert rows.loc["25", "noise std there (mean)"] == "1.75" and rows.loc["25", D.ATTACKER_LOSS] == "3.5"


def _undefended_mse(task):
    rows = [r for r in _detector_results()["noise"] if r["task"] == task and r["strength"] == 0.0]
    return np.array([r["accuracy"] for r in sorted(rows, key=lambda r: r["seed"]) if r["user"] == "attacker_mse"])


def test_reader_tables_of_the_detector():
    results = _detector_results()
    det = D.detector_reader(results)
    _check_reader(det)
    attacker = det.loc["mnistm"].set_index("user").loc["attacker (mse), drops outliers"]
    assert "threshold" not in det.columns and attacker["flagged (%)"] == "97"  # one threshold: in the caption
    assert attacker["kept (%)"] == _t_interval(100 * (45.0 + np.arange(5)) / _undefended_mse("mnistm"), 0)
    assert attacker["accuracy (%)"] == _t_interval(45.0 + np.arange(5))
    assert list(det.loc["mnistm", "user"]) == ["legitimate user", "attacker (mse), drops outliers"]
    detection = D.detection_reader(results)
    _check_reader(detection)
    assert detection.loc["0.80", "precision (%)"] == _t_interval(50.0 + np.arange(5))
    assert detection.loc["0.80", "recall (%)"] == "100.0"
    assert detection.loc["0.80", "ROC-AUC"] == _t_interval(0.7 + np.arange(5) / 100, 2)


def test_glue_names_carry_the_chapter_prefix_and_saved_results_the_strings():
    chapter = D.DefenseChapter(_detector_results() | {"reference_std": 0.5, "drop_ratio": 10.0, "strengths": [0.5]})
    assert all(k.startswith("defenses_") for k in chapter.numbers()) and chapter.numbers()["defenses_n_seeds"] == 5
    assert all(k.startswith("defenses_") for k in chapter.sentences())
    saved = chapter.saved()
    assert saved["paper"] == D.PAPER_CLAIM and saved["ours"] == chapter.verdict().ours != "n/a"


# ---- the measurements on a tiny victim ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = ResultCache(tmp_path_factory.mktemp("cache"))
    victim = train_victim(
        VictimConfig(dataset="mnist5k", num_train=256, epochs=1, batch_size=64), cache, device="cpu", progress=False
    )
    sizes = {"probe_train": 64, "probe_val": 48, "probe_test": 64}
    pool = role_splits("mnist5k", {"victim": 256, "query": 256}, seed=0)["query"]
    tasks = D.defense_tasks(["mnist5k"], sizes, seed=3)
    return D.Setup(victim, tasks, pool, [0, 1], 64, 1, ["mse"], {}, D.victim_output_std(victim), cache)


def test_attacker_queries_are_the_seeds_own_subsets(tiny):
    a, b = D.attacker_queries(tiny.pool, 64, 0), D.attacker_queries(tiny.pool, 64, 1)
    assert len(a) == 64 and torch.equal(a.images, D.attacker_queries(tiny.pool, 64, 0).images)
    assert not torch.equal(a.images, b.images)
    with pytest.raises(ValueError, match="pool holds 256"):
        D.attacker_queries(tiny.pool, 257, 0)


def test_measurements_on_a_tiny_victim(tiny):
    base = D.baseline_rows(tiny)
    assert {(r["user"], r["seed"]) for r in base} == {(u, s) for u in (D.VICTIM, D.RANDOM) for s in (0, 1)}
    victim_acc = {r["accuracy"] for r in base if r["user"] == D.VICTIM}
    assert len(victim_acc) == 1  # the undefended API is deterministic
    assert victim_acc == {D.encoder_accuracy(tiny.victim.encoder, tiny.tasks[0].splits)}

    noise = D.noise_rows(tiny, [30.0], base)
    legit = {(r["strength"], r["seed"]): r["accuracy"] for r in noise if r["user"] == D.LEGIT}
    assert legit[(0.0, 0)] == legit[(0.0, 1)] == victim_acc.pop()
    assert legit[(30.0, 0)] < legit[(0.0, 0)] - 10  # strong noise hurts the legitimate user
    assert legit[(30.0, 0)] != legit[(30.0, 1)]  # each seed its own noise
    attackers = {(r["strength"], r["seed"]) for r in noise if r["user"] == "attacker_mse"}
    assert attackers == {(s, k) for s in (0.0, 30.0) for k in (0, 1)}

    rows, detection = D.detector_rows(tiny, [0.8])
    drop = [r for r in rows if r["user"] == "attacker_mse_drop"]
    assert len(drop) == 2 and all(0 < r["kept"] < 64 and r["flagged"] > 0 for r in drop)
    assert all(r["kept"] == pytest.approx(64 * (1 - r["flagged"] / 100)) for r in drop)  # the poison, exactly
    assert {r["user"] for r in rows} == {D.LEGIT, "attacker_mse_drop"}
    assert len(detection) == 2 and all(0 <= d["recall"] <= 100 for d in detection)
    assert D.natural_outliers(tiny) == [0, 0]

    results = {"seeds": [0, 1], "queries": 64, "baselines": base, "noise": noise}
    results |= {"detector": rows, "detection": detection}
    assert D.judge_defense(results).verdict in D.VERDICTS  # runs on real rows
    assert set(D.detector_table(results).index.get_level_values("user")) == {D.LEGIT, "attacker_mse_drop"}


def test_the_outlier_rule_leaves_undefended_answers_alone(tiny):
    answers = D.query_in_chunks(tiny.api(), tiny.pool.images, "x")
    assert not outlier_answers(answers, D.DROP_RATIO).any()
