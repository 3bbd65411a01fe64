"""Chapter 1: supervised vs self-supervised APIs (what one query leaks) and the cost of stealing.

**Leakage (claim C3, "self-supervised APIs leak more per query than supervised APIs").** One
victim backbone, the supervised Fashion-MNIST convnet, behind four APIs that differ only in what
they return: its representation, its class probabilities, its top-k scores and its label
(:data:`OUTPUTS`). For every seed (its own query subset, nested over the budgets, and its own
stolen initialisation, the same for the four APIs of that seed) the attacker steals a copy from
each API at each budget, and the copy is judged by the few-label probe (:data:`METRIC`) on the
downstream tasks.

The statistic, fixed before any run: per task, output and seed, the area under the few-label
accuracy vs log10(queries) curve divided by the log-range of the budgets (the mean accuracy over
log-spaced budgets, in %: :func:`log_auc`); the random-init encoder of the seed enters as one more
"output" (:data:`RANDOM`, its few-label accuracy). Comparisons (:data:`JUDGED_PAIRS`: representation
vs random-init, representation vs probabilities, probabilities vs label, representation vs label)
are paired differences over seeds, with Holm's correction over all judged comparisons of all
judged tasks; a difference is *separable* when Holm rejects it at :data:`ALPHA` (the paired 95 %
interval is shown beside). A task is judged only where the supervised victim beats the random-init
encoder by at least :data:`MIN_MARGIN` points on the few-label probe, mean over seeds. The rules of
the verdict: :func:`leakage_outcome`. The SSL victim's representation API is shown beside (same
queries and seeds), not judged.

**Cost (claim C6, "stealing an encoder costs far less than training it").** The paper's setups
(:data:`encsteal.cost.PAPER_SETUPS`) turned into hours with throughputs this package measures
(:func:`encsteal.benchmarks.paper_architectures`) and into money over ranges of compute and API
prices; "far less" means at least :data:`FAR_LESS` times cheaper; the rules: :func:`judge_cost`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from encsteal import benchmarks, cost, paper_tables, params, tables
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.experiments.claims import Verdict
from encsteal.experiments.downstream import Downstream, downstream_tasks
from encsteal.fidelity import linear_cka, mean_cosine_similarity
from encsteal.params import Params
from encsteal.probe import extract_features, few_label_indices, fit_probe
from encsteal.seeds import derive_seed, generator, random_init_encoder
from encsteal.stats import holm, mean_interval, paired_difference
from encsteal.victims import Victim, train_victim

OUTPUTS: tuple[str, ...] = ("representation", "probabilities", "topk", "label")
"""The supervised victim's API outputs, from the most to the least informative."""
SSL = "SSL representation"
"""The SimCLR victim's representation API (shown beside, not judged)."""
REPRESENTATIONS: tuple[str, ...] = ("representation", SSL)
"""Outputs whose copies have a victim representation to be compared with (cosine, CKA)."""
RANDOM = "random-init"
"""The random-init encoder of each seed, compared like an output (its statistic: its few-label accuracy)."""
JUDGED_PAIRS: tuple[tuple[str, str], ...] = (
    ("representation", RANDOM),
    ("representation", "probabilities"),
    ("probabilities", "label"),
    ("representation", "label"),
)
"""The comparisons the leakage verdict rests on (first minus second), on every judged task: does the
representation copy learn anything at all (above the random-init encoder), and the order of the outputs."""
ROLES: tuple[str, ...] = ("probe_train", "probe_val", "probe_test")
METRIC = "few_label"
"""The probe the leakage statistic uses: ``per_class`` labels per class (:func:`probe_scores`)."""
MIN_MARGIN = 10.0
"""Points by which the victim must beat a random-init encoder (mean over seeds) for a task to be judged."""
ALPHA = 0.05
"""Family-wise level of Holm's correction over the judged comparisons."""
FAR_LESS = 10.0
""""Far less": training costs at least this many times what stealing costs."""
FIDELITY_NOTE = (
    "Cosine and CKA compare a copy's representation with the victim's: they are shown only for copies "
    "stolen from a representation API. A probability, top-k or label API reveals no representation, so "
    "its copy was never asked to match one and its coordinates are arbitrary."
)


# ---- the APIs ---------------------------------------------------------------------------------


def api_menu(ssl_victim: Victim | None, supervised_victim: Victim, top_k: int = 3) -> dict[str, EncoderAPI]:
    """The supervised victim behind one API per output of :data:`OUTPUTS` (one backbone, only the
    output varies), plus the SSL victim's representation API when ``ssl_victim`` is given."""
    enc, head = supervised_victim.encoder, supervised_victim.head
    menu = {"representation": EncoderAPI(enc)}
    for output in OUTPUTS[1:]:
        menu[output] = EncoderAPI(enc, head, mode="supervised", output=output, top_k=top_k)
    if ssl_victim is not None:
        menu[SSL] = EncoderAPI(ssl_victim.encoder, ssl_victim.head)
    return menu


def outputs_table(menu: Mapping[str, EncoderAPI], probe: torch.Tensor) -> pd.DataFrame:
    """What each API returns for one image: values, non-zero values, and an upper bound on the bits
    of one answer (32 per float32 value; a class index needs ceil(log2(classes)) bits)."""
    rows = []
    for name, api in menu.items():
        out = api.query(probe[:1], user="inspector")
        nonzero = int((out != 0).sum())
        classes = api.head.out_dim if api.mode == "supervised" else 0  # type: ignore[union-attr]
        index_bits = math.ceil(math.log2(classes)) if classes else 0
        bits = {"label": index_bits, "topk": nonzero * (32 + index_bits)}.get(api.output, 32 * out.shape[1])
        rows.append(
            {
                "API": name,
                "values returned": out.shape[1],
                "non-zero values": nonzero,
                "bits per answer (at most)": bits,
            }
        )
    return pd.DataFrame(rows).set_index("API")


# ---- evaluation ---------------------------------------------------------------------------------


def probe_scores(
    features: Mapping[str, torch.Tensor], task: Downstream, seed: int, full: bool = True
) -> dict[str, float]:
    """Accuracies (%) of the linear probe on all probe labels (``probe``, when ``full``) and of the
    few-label probe (``few_label``: ``task.per_class`` labels per class, drawn from ``seed``'s own
    ``few_label`` stream), as :func:`encsteal.experiments.downstream.evaluate` computes them.
    ``features["probe_train"]`` may hold only the few-label rows when ``full`` is False
    (``features["few_rows"]`` then says so)."""
    y = {r: task.splits[r].labels for r in ROLES}
    idx = few_label_indices(y["probe_train"], task.per_class, derive_seed(seed, "few_label"))
    few_x = features["few_rows"] if "few_rows" in features else features["probe_train"][idx]
    few = fit_probe(few_x, y["probe_train"][idx], features["probe_val"], y["probe_val"], task.Cs)
    out = {"few_label": 100 * few.accuracy(features["probe_test"], y["probe_test"])}
    if full:
        probe = fit_probe(features["probe_train"], y["probe_train"], features["probe_val"], y["probe_val"], task.Cs)
        out["probe"] = 100 * probe.accuracy(features["probe_test"], y["probe_test"])
    return out


def copy_features(encoder: nn.Module, task: Downstream, seed: int) -> dict[str, torch.Tensor]:
    """The features a few-label evaluation needs: only the few-label rows of ``probe_train``."""
    idx = few_label_indices(task.splits["probe_train"].labels, task.per_class, derive_seed(seed, "few_label"))
    return {
        "few_rows": extract_features(encoder, task.splits["probe_train"].images[idx]),
        "probe_val": extract_features(encoder, task.splits["probe_val"]),
        "probe_test": extract_features(encoder, task.splits["probe_test"]),
    }


def victim_scores(
    features: Mapping[str, Mapping[str, torch.Tensor]], tasks: Sequence[Downstream], seeds: Sequence[int]
) -> pd.DataFrame:
    """A victim's probes per task and seed from its features per task (``features[task]``): the
    full probe (the same for every seed: fitted once) and seed ``s``'s few-label probe."""
    rows = []
    for task in tasks:
        feats = features[task.name]
        full = probe_scores(feats, task, seeds[0])["probe"]
        for s in seeds:
            few = probe_scores(feats, task, s, full=False)["few_label"]
            rows.append({"task": task.name, "seed": s, "victim_probe": full, "victim_few_label": few})
    return pd.DataFrame(rows)


def random_scores(
    tasks: Sequence[Downstream], seeds: Sequence[int], arch: str = "convnet", in_channels: int = 1, size: int = 28
) -> pd.DataFrame:
    """A random-init encoder of the victim's architecture (seed ``s``'s own initialisation,
    :func:`encsteal.seeds.random_init_encoder`) per task and seed: full and few-label probes."""
    rows = []
    for s in seeds:
        rand = random_init_encoder(arch, in_channels, size, s)
        for task in tasks:
            feats = {r: extract_features(rand, task.splits[r]) for r in ROLES}
            sc = probe_scores(feats, task, s)
            rows.append(
                {"task": task.name, "seed": s, "random_probe": sc["probe"], "random_few_label": sc["few_label"]}
            )
    return pd.DataFrame(rows)


def margin_frame(victim: pd.DataFrame, random: pd.DataFrame) -> pd.DataFrame:
    """Victim and random-init probes side by side per task and seed, with the margins (points)."""
    m = victim.merge(random, on=["task", "seed"], validate="one_to_one")
    for probe in ("probe", "few_label"):
        m[f"margin_{probe}"] = m[f"victim_{probe}"] - m[f"random_{probe}"]
    return m


def query_pool(p: Params, size: int) -> ImageSet:
    """The attacker's pool: ``size`` images of the victim's data set, never among the victim's
    training images (nor, when the tasks use that data set with the victim's split seed, its probe images)."""
    cfg = params.victim_config(p)
    sizes = {"victim": cfg.num_train, **params.probe_sizes(p), "query": size}
    return role_splits(cfg.dataset, sizes, seed=cfg.split_seed)["query"]


def seed_queries(pool: ImageSet, seed: int, n: int) -> ImageSet:
    """Seed ``seed``'s own ``n`` queries from the pool (its ``queries`` stream); budget ``b`` uses the first ``b``."""
    if n > len(pool):
        raise ValueError(f"{n} queries asked from a pool of {len(pool)} images.")
    order = torch.randperm(len(pool), generator=generator(seed, "queries"))[:n]
    return pool.subset(order)


def leakage_grid(
    menu: Mapping[str, EncoderAPI],
    pool: ImageSet,
    tasks: Sequence[Downstream],
    budgets: Sequence[int],
    seeds: Sequence[int],
    epochs: int,
    victim_test_features: Mapping[str, Mapping[str, torch.Tensor]],
    ssl_budgets: Sequence[int] = (),
    batch_size: int = 32,
    lr: float = 3e-3,
    device: str = "cpu",
) -> pd.DataFrame:
    """Steal a copy from each API at each budget for each seed (``epochs``, Adam at ``lr``, batches of
    ``batch_size``; MSE on representations, cross-entropy on labels, soft cross-entropy on scores);
    its few-label accuracy on each task (and, for a representation API, cosine and CKA to that
    victim's test representations: ``victim_test_features[output][task]``). The SSL API is stolen at
    ``ssl_budgets`` only."""
    plan = [
        (s, name, b)
        for s in seeds
        for name in menu
        for b in sorted(budgets if name != SSL else ssl_budgets)
        if b <= max(budgets)
    ]
    queries = {s: seed_queries(pool, s, max(budgets)) for s in seeds}
    rows = []
    quiet = len(plan) < 2 or not sys.stderr.isatty()  # no progress bar on a page
    for s, name, b in tqdm(plan, desc="leakage", disable=quiet):
        api = menu[name]
        config = StealConfig(loss="mse", epochs=epochs, batch_size=batch_size, lr=lr, seed=s)
        result = steal(api, queries[s].subset(torch.arange(b)), config, device=device, progress=False)
        for task in tasks:
            feats = copy_features(result.encoder, task, s)
            row = {
                "output": name,
                "seed": s,
                "budget": b,
                "task": task.name,
                "queries_paid": result.queries,
                "attack_seconds": result.seconds,
                **probe_scores(feats, task, s, full=False),
            }
            if name in REPRESENTATIONS:
                vict = victim_test_features[name][task.name]
                row["cosine"] = mean_cosine_similarity(feats["probe_test"], vict)
                row["cka"] = linear_cka(feats["probe_test"], vict)
            rows.append(row)
    return pd.DataFrame(rows)


# ---- the statistic and the comparisons -----------------------------------------------------------


def log_auc(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Area under ``values`` against log10(``budgets``), divided by the log-range: the mean of the
    curve over log-spaced budgets (a single budget: its value)."""
    b, v = np.asarray(budgets, dtype=float), np.asarray(values, dtype=float)
    if len(b) != len(v) or len(b) == 0:
        raise ValueError(f"Need one value per budget, got {len(b)} budgets and {len(v)} values.")
    if len(np.unique(b)) != len(b) or (b <= 0).any():
        raise ValueError(f"Budgets must be distinct and positive, got {list(b)}.")
    order = np.argsort(b)
    x, y = np.log10(b[order]), v[order]
    if len(x) == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def leakage_scores(
    grid: pd.DataFrame,
    margin_table: pd.DataFrame,
    ssl_margins: pd.DataFrame | None = None,
    metric: str = METRIC,
) -> pd.DataFrame:
    """Per task, output and seed: the statistic (:func:`log_auc` of ``metric`` over the budgets) and
    its share of the victim's margin over the random-init encoder of that seed,
    (auc - random) / (victim - random): the supervised victim's margins (``margin_table``) for its
    outputs, the SSL victim's (``ssl_margins``) for the SSL API (left out without them). The
    random-init encoder of each seed is added as output :data:`RANDOM` (share 0)."""
    rows = []
    tables = {False: margin_table.set_index(["task", "seed"])}
    if ssl_margins is not None:
        tables[True] = ssl_margins.set_index(["task", "seed"])
    for (task, output, seed), g in grid.groupby(["task", "output", "seed"], sort=False):
        if (output == SSL) not in tables:
            continue
        m = tables[output == SSL]
        auc = log_auc(g.budget.tolist(), g[metric].tolist())
        victim, random = m.loc[(task, seed), f"victim_{metric}"], m.loc[(task, seed), f"random_{metric}"]
        share = (auc - random) / (victim - random) if victim != random else float("nan")
        rows.append({"task": task, "output": output, "seed": int(seed), "auc": auc, "share": share})
    for r in margin_table.itertuples():  # the random-init encoder: the same at every budget
        rows.append(
            {"task": r.task, "output": RANDOM, "seed": int(r.seed), "auc": getattr(r, f"random_{metric}"), "share": 0.0}
        )
    return pd.DataFrame(rows)


def judged_tasks(margin_table: pd.DataFrame, metric: str = METRIC, min_margin: float = MIN_MARGIN) -> list[str]:
    """Tasks where the victim's mean margin over the random-init encoder is at least ``min_margin``."""
    mean = margin_table.groupby("task", sort=False)[f"margin_{metric}"].mean()
    return [t for t, v in mean.items() if v >= min_margin]


def compare(
    scores: pd.DataFrame, tasks: Sequence[str], pairs: Sequence[tuple[str, str]] = JUDGED_PAIRS, alpha: float = ALPHA
) -> pd.DataFrame:
    """Paired differences of the statistic over seeds (first - second output) for each pair on each
    task, 95 % intervals, paired t-test p-values and Holm's correction over all of them."""
    rows = []
    for task in tasks:
        t = scores[scores.task == task].pivot(index="seed", columns="output", values="auc")
        for a, b in pairs:
            if a not in t or b not in t:
                continue
            both = t[[a, b]].dropna()
            iv, pv = paired_difference(both[a].tolist(), both[b].tolist())
            rows.append(
                {
                    "task": task,
                    "comparison": f"{a} - {b}",
                    "first": a,
                    "second": b,
                    "difference": iv.mean,
                    "low": iv.low,
                    "high": iv.high,
                    "seeds": iv.n,
                    "p": pv,
                }
            )
    table = pd.DataFrame(
        rows, columns=["task", "comparison", "first", "second", "difference", "low", "high", "seeds", "p"]
    )
    rejected = holm(table.p.tolist(), alpha) if len(table) else []
    table["holm_rejected"] = rejected
    table["outcome"] = [
        (f"{r['first']} above" if r.difference > 0 else f"{r['second']} above") if rej else "not separable"
        for (_, r), rej in zip(table.iterrows(), rejected)
    ]
    return table


def _above(comparisons: pd.DataFrame, task: str, a: str, b: str) -> bool:
    row = comparisons[(comparisons.task == task) & (comparisons["first"] == a) & (comparisons["second"] == b)]
    return bool(len(row)) and bool(row.holm_rejected.iloc[0]) and float(row.difference.iloc[0]) > 0


def leakage_outcome(comparisons: pd.DataFrame, tasks: Sequence[str]) -> str:
    """The verdict from the Holm-corrected comparisons on the judged ``tasks`` ("above" = separably
    above). On every judged task the representation copy must be above the random-init encoder (a
    copy that learnt nothing shows no leak at all); then "reproduced" when on every judged task
    representation is above probabilities and probabilities above label; "partly reproduced" when
    on every judged task representation is above label but the full order does not hold on every
    one; "not reproduced" otherwise (including a representation copy no better than random);
    "not evaluated" without a judged task."""
    if not tasks:
        return "not evaluated"
    if not all(_above(comparisons, t, "representation", RANDOM) for t in tasks):
        return "not reproduced"
    chain = all(
        _above(comparisons, t, "representation", "probabilities") and _above(comparisons, t, "probabilities", "label")
        for t in tasks
    )
    if chain:
        return "reproduced"
    if all(_above(comparisons, t, "representation", "label") for t in tasks):
        return "partly reproduced"
    return "not reproduced"


def judge_leakage(results: Mapping) -> Verdict:
    """Claim C3 from the chapter's saved results (``results["leakage"]``: per-seed ``margins`` and
    ``scores``, the random-init encoder among the outputs): tasks judged where the supervised
    victim's mean few-label margin over a random-init encoder is at least ``MIN_MARGIN`` points; on
    them, the Holm-corrected paired comparisons of the log-budget AUC over seeds (:func:`compare`
    with :data:`JUDGED_PAIRS`); verdict by :func:`leakage_outcome`."""
    claim = "Self-supervised APIs (representations) leak more per query than supervised APIs (labels, scores)."
    leak = results["leakage"]
    margin_table, scores = pd.DataFrame(leak["margins"]), pd.DataFrame(leak["scores"])
    paper = paper_leakage_words()
    if margin_table.empty or scores.empty:
        return Verdict(claim, "no leakage results were measured", "not evaluated", paper, "no leakage measured")
    tasks = judged_tasks(margin_table)
    table = compare(scores, tasks)
    verdict = leakage_outcome(table, tasks)
    evidence = leakage_evidence(margin_table, table, tasks, leak.get("budgets", []))
    return Verdict(claim, evidence, verdict, paper, leakage_ours(margin_table, table, tasks))


def paper_leakage_words() -> str:
    """What the paper says on leakage (it published no number): representations of the sizes it
    names (:data:`encsteal.paper_tables.API_DIMENSIONS`) leak more than labels or scores."""
    dims = paper_tables.API_DIMENSIONS
    reps = sorted({v for k, v in dims.items() if "representation" in k}, reverse=True)
    scores = sorted({v for k, v in dims.items() if "classifier" in k})
    return (
        f"no number published; representations ({'/'.join(map(str, reps))} values) said to leak more "
        f"than labels or scores ({'/'.join(map(str, scores))})"
    )


def leakage_ours(margin_table: pd.DataFrame, comparisons: pd.DataFrame, tasks: Sequence[str]) -> str:
    """Our number for the paper at a glance: on each judged task, the representation copy's
    log-budget AUC minus the label copy's (points, 95 % interval over seeds); without a judged
    task, the victim's margins that kept every task out."""
    if not tasks:
        mean = margin_table.groupby("task", sort=False)[f"margin_{METRIC}"].mean()
        margins = ", ".join(f"{t} {v:+.1f}" for t, v in mean.items())
        return f"no task judged: victim's few-label margin under {MIN_MARGIN:.0f} points ({margins})"
    rows = comparisons[(comparisons["first"] == "representation") & (comparisons["second"] == "label")]
    parts = [f"{r.task} {r.difference:+.1f} [{r.low:.1f}, {r.high:.1f}]" for r in rows.itertuples()]
    return "representation minus label, log-budget AUC (points): " + "; ".join(parts)


def leakage_evidence(margin_table: pd.DataFrame, comparisons: pd.DataFrame, tasks: Sequence[str], budgets) -> str:
    """One paragraph: the victim's margins per task, which tasks are judged, and each comparison."""
    parts = []
    for task, g in margin_table.groupby("task", sort=False):
        iv = mean_interval(g[f"margin_{METRIC}"].tolist())
        status = "judged" if task in tasks else f"not judged (under {MIN_MARGIN:.0f} points)"
        parts.append(
            f"{task}: supervised victim {iv.mean:+.1f} points over a random-init encoder "
            f"(few-label, 95 % CI {iv.low:.1f} to {iv.high:.1f}, {iv.n} seeds), {status}"
        )
    text = "; ".join(parts) + "."
    if tasks:
        text += (
            f" Log-budget AUC of the few-label accuracy over {', '.join(str(b) for b in budgets)} queries, "
            "paired differences over seeds (Holm over the judged comparisons): "
        )
        text += "; ".join(
            f"{r.task} {r.comparison} {r.difference:+.1f} points [{r.low:.1f}, {r.high:.1f}], {r.outcome}"
            for r in comparisons.itertuples()
        )
        text += "."
    return text


# ---- the leakage tables ----------------------------------------------------------------------------


def interval_row(values: Sequence[float]) -> dict[str, float]:
    iv = mean_interval(values) if len(values) >= 2 else None
    mean = float(np.mean(values)) if len(values) else float("nan")
    return {"mean": mean, "low": iv.low if iv else float("nan"), "high": iv.high if iv else float("nan")}


def margin_summary(margin_table: pd.DataFrame, tasks_judged: Sequence[str]) -> pd.DataFrame:
    """Per task: the victim's and the random-init encoder's probes, mean over seeds, and the margins
    with their 95 % intervals; ``judged`` says whether the task enters the verdict."""
    rows = []
    for task, g in margin_table.groupby("task", sort=False):
        row: dict[str, object] = {"task": task}
        for probe in ("probe", "few_label"):
            row[f"victim {probe}"] = g[f"victim_{probe}"].mean()
            row[f"random-init {probe}"] = g[f"random_{probe}"].mean()
            iv = interval_row(g[f"margin_{probe}"].tolist())
            row[f"margin {probe}"], row[f"margin {probe} low"], row[f"margin {probe} high"] = (
                iv["mean"],
                iv["low"],
                iv["high"],
            )
        row["judged"] = task in tasks_judged
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


def _ordered(table: pd.DataFrame, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows by task (first seen order), output (:data:`OUTPUTS`, then the others) and budget."""
    order = {o: i for i, o in enumerate((*OUTPUTS, SSL, RANDOM))}
    task_order = {t: i for i, t in enumerate(tasks if tasks is not None else dict.fromkeys(table.task))}
    keys = [table.task.map(task_order), table.output.map(lambda o: order.get(o, len(order)))]
    if "budget" in table:
        keys.append(table.budget)
    idx = np.lexsort([k.to_numpy() for k in reversed(keys)])
    return table.iloc[idx].reset_index(drop=True)


def curve_table(
    grid: pd.DataFrame, margin_table: pd.DataFrame, ssl_margins: pd.DataFrame | None = None, metric: str = METRIC
) -> pd.DataFrame:
    """Per task, output and budget: ``metric`` mean and 95 % interval over seeds, and the share of
    the victim's margin over the random-init encoder it recovers (per seed, then mean and interval;
    the SSL API's share against the SSL victim's margin, ``ssl_margins``)."""
    tables = {False: margin_table.set_index(["task", "seed"])}
    if ssl_margins is not None:
        tables[True] = ssl_margins.set_index(["task", "seed"])
    rows = []
    for (task, output, budget), g in grid.groupby(["task", "output", "budget"], sort=False):
        row = {"task": task, "output": output, "budget": int(budget), **interval_row(g[metric].tolist())}
        if (output == SSL) in tables:
            m = tables[output == SSL]
            victim = np.array([m.loc[(task, s), f"victim_{metric}"] for s in g.seed])
            random = np.array([m.loc[(task, s), f"random_{metric}"] for s in g.seed])
            share = interval_row(((g[metric].to_numpy() - random) / (victim - random)).tolist())
            row.update({"share": share["mean"], "share low": share["low"], "share high": share["high"]})
        rows.append(row)
    return _ordered(pd.DataFrame(rows))


def fidelity_table(grid: pd.DataFrame) -> pd.DataFrame:
    """Cosine and CKA of copies stolen from a representation API: mean over seeds per task,
    output and budget (other outputs have none: :data:`FIDELITY_NOTE`)."""
    rep = grid[grid.output.isin(REPRESENTATIONS)]
    if rep.empty:
        return pd.DataFrame(columns=["cosine", "cka"])
    return rep.groupby(["task", "output", "budget"])[["cosine", "cka"]].mean()


def leakage_sentences(margin_table: pd.DataFrame, comparisons: pd.DataFrame, tasks: Sequence[str]) -> dict[str, str]:
    """The chapter's sentences on margins and comparisons, chosen from the results."""
    summary = margin_summary(margin_table, tasks)
    margin_parts = []
    for task, r in summary.iterrows():
        state = (
            "judged"
            if r.judged
            else f"under the {MIN_MARGIN:.0f}-point rule, so the comparisons on {task} are shown but not judged"
        )
        margin_parts.append(
            f"on {task} the supervised victim's few-label probe beats a random-init encoder by "
            f"{r['margin few_label']:.1f} points (95 % CI {r['margin few_label low']:.1f} to "
            f"{r['margin few_label high']:.1f}; full probe {r['margin probe']:.1f}): {state}"
        )
    margins_text = "Margins: " + "; ".join(margin_parts) + "."
    if not tasks:
        comp_text = (
            f"No task passes the {MIN_MARGIN:.0f}-point rule at this scale, so no comparison is judged "
            "and the claim is not evaluated."
        )
    else:
        parts = []
        for r in comparisons.itertuples():
            what = (
                f"**{r.outcome}** by {abs(r.difference):.1f} points (95 % CI {r.low:.1f} to {r.high:.1f})"
                if r.holm_rejected
                else f"**not separable** at this scale (difference {r.difference:+.1f}, 95 % CI {r.low:.1f} to "
                f"{r.high:.1f})"
            )
            parts.append(f"on {r.task}, {r.comparison.replace(' - ', ' vs ')}: {what}")
        comp_text = "Judged comparisons (Holm-corrected): " + "; ".join(parts) + "."
    return {"leak_margins_text": margins_text, "leak_comparisons_text": comp_text}


# ---- cost -------------------------------------------------------------------------------------------


def _setups(results_cost: Mapping) -> list[cost.PaperSetup]:
    return [cost.PaperSetup(**s) for s in results_cost["setups"]]


def cost_grid(results_cost: Mapping) -> pd.DataFrame:
    """Every (setup, accounting, compute price, API price) with its costs and ratio (:func:`cost.price_grid`)."""
    tps = cost.throughputs(results_cost["throughput"])
    rows = cost.price_grid(
        _setups(results_cost), tps, results_cost["compute_prices"], results_cost["api_prices"], (False, True)
    )
    return pd.DataFrame(rows)


def hours_table(results_cost: Mapping) -> pd.DataFrame:
    """Per setup: images through the network and hours on the measured machine (query-once accounting;
    the provider's hours under both accountings)."""
    tps = cost.throughputs(results_cost["throughput"])
    rows = []
    for s in _setups(results_cost):
        once, again = cost.hours(s, tps[s.arch], False), cost.hours(s, tps[s.arch], True)
        rows.append(
            {
                "setup": s.name,
                "training passes": s.train_passes,
                "stealing passes": s.steal_passes,
                "passes ratio": s.train_passes / s.steal_passes,
                "training hours": once["train_hours"],
                "stealing hours": once["steal_hours"],
                "hours ratio": once["train_hours"] / once["steal_hours"],
                "API answers (once)": int(once["api_queries"]),
                "API answers (re-query)": int(again["api_queries"]),
                "provider hours (once)": once["provider_hours"],
                "provider hours (re-query)": again["provider_hours"],
            }
        )
    return pd.DataFrame(rows).set_index("setup")


def break_even_table(results_cost: Mapping, factor: float = FAR_LESS) -> pd.DataFrame:
    """Per setup, accounting and compute price: the API price per 1,000 queries above which stealing
    costs more than training (break-even) and the one below which it is ``factor`` times cheaper
    (NaN: not even with free queries)."""
    tps = cost.throughputs(results_cost["throughput"])
    rows = []
    for s in _setups(results_cost):
        for rq in (False, True):
            for c in results_cost["compute_prices"]:
                be = cost.api_price_for_ratio(s, tps[s.arch], c, 1.0, rq)
                fl = cost.api_price_for_ratio(s, tps[s.arch], c, factor, rq)
                rows.append(
                    {
                        "setup": s.name,
                        "accounting": cost.ACCOUNTING[rq],
                        "compute_per_hour": c,
                        "break-even API price per 1k": float("nan") if be is None else be,
                        f"{factor:g}x cheaper below (per 1k)": float("nan") if fl is None else fl,
                    }
                )
    return pd.DataFrame(rows)


def cost_outcome(ratios: Sequence[float], factor: float = FAR_LESS) -> str:
    """ "reproduced" when every ratio training/stealing is at least ``factor``, "partly reproduced"
    when some is, "not reproduced" when none is, "not evaluated" without any."""
    if len(ratios) == 0:
        return "not evaluated"
    far = [r >= factor for r in ratios]
    return "reproduced" if all(far) else "partly reproduced" if any(far) else "not reproduced"


def judge_cost(results: Mapping) -> Verdict:
    """Claim C6 from the chapter's saved results (``results["cost"]``: measured throughputs, the
    paper's setups and the price ranges). For every setup, compute price and API price of the
    ranges, with each query billed once (the paper's budgets): the ratio training cost / stealing
    cost. Verdict by :func:`cost_outcome` with :data:`FAR_LESS`: reproduced when stealing is at least
    that many times cheaper at every point of the range, partly when at some, not reproduced when
    at none. The re-query-every-epoch accounting is reported in the evidence, not judged."""
    claim = "Stealing an encoder costs far less than training it."
    c = results.get("cost") or {}
    paper = paper_cost_words()
    if not c.get("throughput") or not c.get("setups") or not c.get("compute_prices") or not c.get("api_prices"):
        return Verdict(
            claim, "no throughput or price range was measured", "not evaluated", paper, "no throughput measured"
        )
    grid = cost_grid(c)
    once = grid[grid.accounting == cost.ACCOUNTING[False]]
    again = grid[grid.accounting == cost.ACCOUNTING[True]]
    verdict = cost_outcome(once.train_over_steal.tolist())
    return Verdict(claim, cost_evidence(c, once, again), verdict, paper, cost_ours(once))


def quoted_ratio() -> float:
    """Training over stealing cost in the figures quoted around the paper
    (:func:`encsteal.paper_tables.cost_figures`)."""
    quoted = paper_tables.cost_figures().set_index("item")["usd"]
    return float(quoted["training a ResNet-50 SSL encoder"] / quoted["stealing such an encoder"])


def paper_cost_words() -> str:
    """The paper's cost figures for the paper at a glance (quoted on the authors' blog, citing SSLGuard)."""
    quoted = paper_tables.cost_figures().set_index("item")["usd"]
    return (
        f"training USD {quoted['training a ResNet-50 SSL encoder']:,.2f} vs stealing USD "
        f"{quoted['stealing such an encoder']:,.2f} (blog, citing SSLGuard): {quoted_ratio():.0f}x"
    )


def cost_ours(once: pd.DataFrame, factor: float = FAR_LESS) -> str:
    """Our range of training/stealing cost ratios over the setups and the price grid (each query
    billed once): a range over assumed prices, not a confidence interval."""
    r = once.train_over_steal
    return (
        f"training/stealing {_ratio(r.min())} to {_ratio(r.max())} over the price range (query once); "
        f">= {factor:g}x at {int((r >= factor).sum())} of {len(r)} points"
    )


def _times(value: float) -> str:
    """A cost ratio for a sentence: two significant digits under 10 (0.046, 2.3), whole above."""
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"


def _ratio(value: float) -> str:
    return f"{_times(value)}x"


def cost_evidence(results_cost: Mapping, once: pd.DataFrame, again: pd.DataFrame) -> str:
    c = results_cost
    tps = cost.throughputs(c["throughput"])
    parts = [
        f"{s}: training/stealing {_ratio(g.train_over_steal.min())} to {_ratio(g.train_over_steal.max())}, "
        f"{int((g.train_over_steal >= FAR_LESS).sum())} of {len(g)} price points at least {FAR_LESS:g}x"
        for s, g in once.groupby("setup", sort=False)
    ]
    tp = "; ".join(
        f"{a}: victim step {t.victim_step:.2f}, stealing step {t.stealing_step:.2f}, API answer {t.api_answer:.2f} "
        "images/s"
        for a, t in tps.items()
    )
    prices = (
        f"compute {', '.join(f'{x:g}' for x in c['compute_prices'])} USD/hour, API "
        f"{', '.join(f'{x:g}' for x in c['api_prices'])} USD per 1,000 queries"
    )
    return (
        f"Measured on {_machine_name(c.get('machine', {}))} ({tp}); prices {prices}. "
        f"Each query billed once: {'; '.join(parts)}. Re-querying every epoch (official code): "
        f"{int((again.train_over_steal >= FAR_LESS).sum())} of {len(again)} price points at least {FAR_LESS:g}x "
        "(not judged)."
    )


def _machine_name(machine: Mapping) -> str:
    name = machine.get("cpu") or machine.get("processor") or "this machine"
    threads = machine.get("threads")
    return f"{name}, {threads} thread{'s' if threads != 1 else ''}" if threads else str(name)


def cost_sentences(results_cost: Mapping) -> dict[str, str]:
    """The chapter's sentences on cost, chosen from the results."""
    grid = cost_grid(results_cost)
    once = grid[grid.accounting == cost.ACCOUNTING[False]]
    again = grid[grid.accounting == cost.ACCOUNTING[True]]
    outcome = cost_outcome(once.train_over_steal.tolist())
    n_far, n = int((once.train_over_steal >= FAR_LESS).sum()), len(once)
    lead = {
        "reproduced": f"Billing each query once, stealing is at least {FAR_LESS:g} times cheaper than training at "
        f"every one of the {n} (setup, compute price, API price) points of the range.",
        "partly reproduced": f"Billing each query once, stealing is at least {FAR_LESS:g} times cheaper than training "
        f"at {n_far} of the {n} (setup, compute price, API price) points of the range, not at the others.",
        "not reproduced": f"Billing each query once, stealing is at least {FAR_LESS:g} times cheaper than training at "
        f"none of the {n} (setup, compute price, API price) points of the range.",
        "not evaluated": "No price point was evaluated.",
    }[outcome]
    worst = once.loc[once.train_over_steal.idxmin()] if n else None
    detail = (
        f" The least favourable point is {worst.setup} at {worst.compute_per_hour:g} USD per compute hour and "
        f"{worst.api_per_1k:g} USD per 1,000 queries: training {worst.train_usd:,.0f} USD, stealing "
        f"{worst.steal_usd:,.0f} USD (ratio {_times(worst.train_over_steal)})."
        if worst is not None
        else ""
    )
    n_again = int((again.train_over_steal >= FAR_LESS).sum())
    requery = (
        f"Re-sending every query in every epoch, as the official code does, multiplies the API bill by the "
        f"number of stealing epochs: then stealing is at least {FAR_LESS:g} times cheaper at {n_again} of "
        f"{len(again)} points."
    )
    be = break_even_table(results_cost)
    col = "break-even API price per 1k"
    ranges = []
    for (setup, accounting), g in be.groupby(["setup", "accounting"], sort=False):
        ranges.append(f"{setup}, {accounting}: {g[col].min():.3g} to {g[col].max():.3g} USD")
    lo, hi = min(results_cost["compute_prices"]), max(results_cost["compute_prices"])
    break_even = (
        f"Over compute prices from {lo:g} to {hi:g} USD per hour, stealing costs more than training once the API "
        "charges more than (per 1,000 queries): " + "; ".join(ranges) + "."
    )
    ratio = quoted_ratio()
    quoted_text = (
        f"The figures quoted around the paper (authors' blog, citing SSLGuard; not verified there) put training "
        f"at {ratio:.0f} times the cost of stealing."
    )
    hours = hours_table(results_cost)
    compute = (
        "Compute alone, without the API bill: "
        + "; ".join(
            f"{setup}: training sends {r['passes ratio']:.1f} times as many images through the network as stealing, "
            f"and takes {r['hours ratio']:.1f} times as long with the steps measured here"
            for setup, r in hours.iterrows()
        )
        + "."
    )
    return {
        "compute_text": compute,
        "cost_text": lead + detail,
        "cost_requery_text": requery,
        "break_even_text": break_even,
        "quoted_cost_text": quoted_text,
    }


def quoted_costs() -> pd.DataFrame:
    """The paper's own cost figures, labelled as quoted with their provenance."""
    return paper_tables.cost_figures().assign(origin="quoted, not measured").set_index("item")


# ---- the chapter ------------------------------------------------------------------------------------


@dataclass
class ApiCostChapter:
    """Everything chapter 1 shows and saves."""

    outputs: pd.DataFrame
    margins: pd.DataFrame
    margin_summary: pd.DataFrame
    grid: pd.DataFrame
    scores: pd.DataFrame  # per task, output and seed (the SSL API too when stolen at every budget)
    curves: pd.DataFrame
    comparisons: pd.DataFrame
    fidelity: pd.DataFrame
    judged: list[str]
    throughput: pd.DataFrame
    hours: pd.DataFrame
    cost_grid: pd.DataFrame
    break_even: pd.DataFrame
    quoted: pd.DataFrame
    text: dict[str, str]
    values: dict[str, float]
    saved: dict = field(default_factory=dict)

    def results(self) -> dict:
        """What the chapter saves: everything :func:`judge_leakage` and :func:`judge_cost` read."""
        return self.saved

    def reader_tables(self) -> dict[str, pd.DataFrame]:
        """The tables the chapter shows, formatted for readers (:mod:`encsteal.tables`): means with
        their 95 % intervals in one cell, n/a instead of NaN, at most a text column wide, keyed by
        names the page glues them under (prefixed ``api_cost_``)."""
        return reader_tables(self)


def _sig(value: float | None, digits: int = 3) -> str:
    return tables.NA if value is None or tables.is_missing(value) else f"{value:,.{digits}g}"


def _iv(values: pd.Series, digits: int = 1) -> str:
    finite = values.dropna().to_numpy(dtype=float)
    if len(finite) == 0:
        return tables.NA
    if len(finite) == 1 or np.allclose(finite, finite[0]):
        return tables.number(float(finite[0]), digits)
    iv = mean_interval(finite)
    return tables.interval(iv.mean, iv.low, iv.high, digits)


def _p_value(value: float) -> str:
    return tables.NA if tables.is_missing(value) else f"{value:.3f}"


def leakage_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per task and output (in :data:`OUTPUTS` order, then the SSL API and the random-init
    encoder): the statistic (log-budget AUC, %) and the share of the victim's margin it recovers,
    each as mean and 95 % interval over seeds (``low``/``high`` NaN with a single seed)."""
    rows = []
    for (task, output), g in _ordered(scores).groupby(["task", "output"], sort=False):
        auc, share = interval_row(g.auc.tolist()), interval_row(g.share.dropna().tolist())
        rows.append(
            {
                "task": task,
                "output": output,
                "auc": auc["mean"],
                "auc low": auc["low"],
                "auc high": auc["high"],
                "share": share["mean"],
                "share low": share["low"],
                "share high": share["high"],
                "seeds": g.seed.nunique(),
            }
        )
    return pd.DataFrame(rows)


def values_per_answer(outputs: pd.DataFrame) -> pd.Series:
    """Numbers one answer of each API carries (from :func:`outputs_table`): the values it returns,
    but for the top-k API its non-zero scores (the others are set to 0)."""
    sizes = outputs["values returned"].astype(int).copy()
    if "topk" in sizes.index:
        sizes["topk"] = int(outputs.loc["topk", "non-zero values"])
    return sizes.rename("values per answer")


def paper_outputs_table() -> pd.DataFrame:
    """The output sizes the paper contrasts (:data:`encsteal.paper_tables.API_DIMENSIONS`), for readers."""
    table = paper_tables.api_dimensions().rename(columns=lambda c: "values per answer")
    return tables.for_readers(table, 0, "output of the paper's models")


def reader_tables(ch: ApiCostChapter) -> dict[str, pd.DataFrame]:
    """See :meth:`ApiCostChapter.reader_tables`. Each table has one named index (the other keys
    are leading columns), at most :data:`encsteal.tables.MAX_COLUMNS` data columns and no missing cell."""
    out: dict[str, pd.DataFrame] = {}
    out["outputs"] = tables.for_readers(ch.outputs, 0, "API")
    out["paper_outputs"] = paper_outputs_table()
    rows = []
    for task, g in ch.margins.groupby("task", sort=False):
        for probe, name in (("probe", "linear probe (all labels)"), ("few_label", "few-label probe")):
            judged = (
                ("yes" if task in ch.judged else f"no (under {MIN_MARGIN:.0f} points)")
                if probe == METRIC
                else "not used"
            )
            rows.append(
                {
                    "task": task,
                    "probe": name,
                    "victim (%)": _iv(g[f"victim_{probe}"]),
                    "random-init (%)": _iv(g[f"random_{probe}"]),
                    "margin (points)": _iv(g[f"margin_{probe}"]),
                    "judged": judged,
                }
            )
    out["margins"] = pd.DataFrame(rows).set_index("task")
    cv = _ordered(ch.curves)
    budgets = {int(b): f"{int(b):,} queries" for b in sorted(cv.budget.unique())}
    rows = []
    for (task, output), g in cv.groupby(["task", "output"], sort=False):
        cells = {budgets[int(r.budget)]: tables.interval(r.mean, r.low, r.high) for r in g.itertuples()}
        rows.append({"task": task, "output": output, **{c: cells.get(c, tables.NA) for c in budgets.values()}})
    out["accuracy"] = pd.DataFrame(rows, columns=["task", "output", *budgets.values()]).set_index("task")
    summary = leakage_summary(ch.scores)
    out["scores"] = pd.DataFrame(
        {
            "task": summary.task,
            "output": summary.output,
            "log-budget AUC (%)": [tables.interval(*v) for v in summary[["auc", "auc low", "auc high"]].to_numpy()],
            "share of margin": [
                tables.interval(*v, digits=2) for v in summary[["share", "share low", "share high"]].to_numpy()
            ],
            "seeds": summary.seeds.astype(str),
        }
    ).set_index("task")
    cp = ch.comparisons
    out["comparisons"] = pd.DataFrame(
        {
            "task": [t if j else f"{t} (not judged)" for t, j in zip(cp.task, cp.get("judged", [True] * len(cp)))],
            "comparison": cp.comparison.str.replace(" - ", " minus "),
            "difference (points)": [tables.interval(m, lo, hi) for m, lo, hi in zip(cp.difference, cp.low, cp.high)],
            "p (paired t)": [_p_value(v) for v in cp.p],
            "Holm rejects": ["yes" if r else "no" for r in cp.holm_rejected],
            "outcome": cp.outcome,
        }
    ).set_index("task")
    rep = ch.grid[ch.grid.output.isin(REPRESENTATIONS)] if len(ch.grid) else ch.grid
    out["fidelity"] = pd.DataFrame(
        [
            {
                "task": task,
                "output": output,
                "queries": f"{int(budget):,}",
                "cosine": _iv(g.cosine, 3),
                "CKA": _iv(g.cka, 3),
            }
            for (task, output, budget), g in _ordered(rep).groupby(["task", "output", "budget"], sort=False)
        ]
        if len(rep)
        else [{"task": tables.NA, "output": tables.NA, "queries": tables.NA, "cosine": tables.NA, "CKA": tables.NA}]
    ).set_index("task")
    tp = ch.throughput.set_index("arch")[["workload", "image_size", "batch", "steps", "seconds", "images_per_s"]]
    tp.columns = ["workload", "input (px)", "batch", "timed steps", "seconds", "images/s"]
    out["throughput"] = tables.for_readers(tp, 2, "architecture")
    h = ch.hours
    out["hours_compute"] = tables.for_readers(
        h[["training passes", "stealing passes", "passes ratio", "training hours", "stealing hours", "hours ratio"]], 1
    )
    out["hours_api"] = tables.for_readers(
        h[["API answers (once)", "API answers (re-query)", "provider hours (once)", "provider hours (re-query)"]], 2
    )
    be = ch.break_even
    short = {cost.ACCOUNTING[False]: "once", cost.ACCOUNTING[True]: "re-query"}
    rows = []
    for (setup, c), g in be.groupby(["setup", "compute_per_hour"], sort=False):
        row: dict[str, str] = {"setup": setup, "compute (USD/hour)": f"{c:g}"}
        for r in g.to_dict(orient="records"):
            what = short[r["accounting"]]
            row[f"break-even, {what}"] = _sig(r["break-even API price per 1k"])
            row[f"{FAR_LESS:g}x cheaper below, {what}"] = _sig(r[f"{FAR_LESS:g}x cheaper below (per 1k)"])
        rows.append(row)
    out["break_even"] = pd.DataFrame(rows).set_index("setup")
    q = ch.quoted[["usd", "relation", "source", "checked"]].rename(columns={"usd": "USD"})
    q["USD"] = q["USD"].map(lambda v: f"{v:,.2f}")
    out["quoted"] = q
    machine = {k: ("none" if v is None else v) for k, v in ch.saved["cost"]["machine"].items()}
    out["machine"] = tables.for_readers(pd.Series(machine, name="value").to_frame(), 2, "measured on")
    return out


def run(p: Params) -> ApiCostChapter:
    """Chapter 1: the two victims, what their APIs return, the leakage grid over outputs, budgets
    and seeds with the victim's margins, and the paper-scale cost model from measured throughput."""
    ssl = train_victim(params.victim_config(p), device=p.device, progress=False)
    sup = train_victim(params.victim_config(p, method="supervised"), device=p.device, progress=False)
    menu = api_menu(ssl if p.ssl_budgets else None, sup, p.top_k)
    pool = query_pool(p, max(p.leak_budgets) * 4)
    outputs = outputs_table(api_menu(ssl, sup, p.top_k), pool.images)
    tasks = downstream_tasks(p, sup.encoder, p.downstream_sets, p.victim_dataset, p.victim_num_train)
    victim_test = {"representation": {t.name: t.victim_features["probe_test"] for t in tasks}}
    random = random_scores(tasks, p.seeds)
    margin_table = margin_frame(victim_scores({t.name: t.victim_features for t in tasks}, tasks, p.seeds), random)
    ssl_margins = None
    if p.ssl_budgets:
        ssl_feats = {t.name: {r: extract_features(ssl.encoder, t.splits[r]) for r in ROLES} for t in tasks}
        victim_test[SSL] = {name: f["probe_test"] for name, f in ssl_feats.items()}
        ssl_margins = margin_frame(victim_scores(ssl_feats, tasks, p.seeds), random)
    grid = leakage_grid(
        menu,
        pool,
        tasks,
        p.leak_budgets,
        p.seeds,
        p.steal_epochs,
        victim_test,
        p.ssl_budgets,
        p.leak_batch_size,
        p.leak_lr,
        device=p.device,
    )
    scores = leakage_scores(grid, margin_table)
    judged = judged_tasks(margin_table)
    comparisons = compare(scores, judged)
    unjudged = [t for t in p.downstream_sets if t not in judged]
    shown = pd.concat(  # the tasks under the margin rule: shown, Holm over their own family, not judged
        [comparisons.assign(judged=True), compare(scores, unjudged).assign(judged=False)], ignore_index=True
    )
    # cost
    throughput = benchmarks.paper_architectures(p.bench_batch, p.bench_steps)
    cost_results = {
        "machine": benchmarks.machine_description(),
        "throughput": throughput,
        "setups": [s.as_dict() for s in cost.PAPER_SETUPS],
        "compute_prices": list(p.compute_prices_per_hour),
        "api_prices": list(p.api_prices_per_1k),
        "factor": FAR_LESS,
        "quoted": paper_tables.cost_figures().to_dict(orient="records"),
    }
    saved = {
        "leakage": {
            "metric": METRIC,
            "statistic": "log-budget AUC of the few-label accuracy (%)",
            "budgets": list(p.leak_budgets),
            "seeds": list(p.seeds),
            "tasks": list(p.downstream_sets),
            "min_margin": MIN_MARGIN,
            "alpha": ALPHA,
            "top_k": p.top_k,
            "margins": margin_table.to_dict(orient="records"),
            "ssl_margins": [] if ssl_margins is None else ssl_margins.to_dict(orient="records"),
            "grid": grid.to_dict(orient="records"),
            "scores": scores.to_dict(orient="records"),
            "judged_tasks": judged,
            "comparisons": comparisons.to_dict(orient="records"),
        },
        "cost": cost_results,
    }
    text = {**leakage_sentences(margin_table, comparisons, judged), **cost_sentences(cost_results)}
    text["leak_verdict_text"] = _verdict_sentence(judge_leakage(saved))
    text["cost_verdict_text"] = _verdict_sentence(judge_cost(saved))
    text["fidelity_note"] = FIDELITY_NOTE
    hours = hours_table(cost_results)
    same_budgets = sorted(p.ssl_budgets) == sorted(p.leak_budgets)  # else the SSL API has no comparable AUC
    values = {
        "repr_dim": float(outputs.loc["representation", "values returned"]),
        "prob_dim": float(outputs.loc["probabilities", "values returned"]),
        "top_k": float(p.top_k),
        "n_seeds": float(len(p.seeds)),
        "far_less": FAR_LESS,
        "min_margin": MIN_MARGIN,
    }
    text = {f"api_cost_{k}": v for k, v in text.items()}  # glue names are unique across the book
    values = {f"api_cost_{k}": v for k, v in values.items()}
    return ApiCostChapter(
        outputs,
        margin_table,
        margin_summary(margin_table, judged),
        grid,
        leakage_scores(grid, margin_table, ssl_margins if same_budgets else None),
        curve_table(grid, margin_table, ssl_margins),
        shown,
        fidelity_table(grid),
        judged,
        pd.DataFrame(throughput),
        hours,
        cost_grid(cost_results),
        break_even_table(cost_results),
        quoted_costs(),
        text,
        values,
        saved,
    )


def _verdict_sentence(v: Verdict) -> str:
    return f"Verdict at this scale: **{v.verdict}**. {v.evidence}"
