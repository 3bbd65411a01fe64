"""Does a defense hurt the attacker more than a legitimate user? (the paper's claim C4;
book/paper_setup.md#setup-defenses)

One defended API serves two kinds of user on each judged downstream task (``downstream_sets``):

* a **legitimate user** sends its own labelled images of the task (the task's ``probe_train``
  images, then ``probe_val`` to choose the probe's regularisation and ``probe_test`` to be
  scored) and fits a linear probe on the defended answers (the official ``legitimate.py`` trains
  a small head on defended outputs the same way);
* an **attacker** sends as many queries as the legitimate user has labelled training images
  (``probe_train``), drawn from the victim's own data (its own subset for each seed), and steals
  through the defended API (:func:`encsteal.attack.steal`); its copy is probed on the same
  labelled images of the task, undefended (it owns the copy).

Queries are matched: the attacker's query set and the legitimate user's labelled training set
have the same size (``probe_train``). Both also need the validation and test images encoded, the
legitimate user through the API, the attacker through its copy (using a stolen copy is free:
that is the point of stealing).

Seeds: each seed draws its own attacker query subset (the ``queries`` stream), stolen
initialisation (the ``stolen`` stream) and defense randomness (``GaussianNoise(seed=s)``, and the
detector's poison), and its own random-init encoder (the baseline the victim must beat on a task
for the task to be judged). The undefended API is deterministic, so the legitimate user's
undefended accuracy is measured once per task.

Every user's harm is its relative loss: the share of its own undefended accuracy it loses
(``100 * (1 - acc(s) / acc(0))``, per seed); beside it the tables report the share of the victim's
margin over the seed's random-init encoder that a user's accuracy recovers (below 0: worse than an
untrained network). :func:`paired_table` compares the legitimate user's loss with the best
attacker's at each strength (paired over seeds, Holm), :func:`matched_table` reads the attacker's
loss where the legitimate user has lost a given share, and :func:`judge_defense` turns the
comparison into the verdict.

Time (quick profile, one thread): 5 seeds x 3 noise strengths (0 and ``strengths``) x one attacker
of ``probe_train`` = 1,000 queries for ``defense_steal_epochs`` = 6 epochs (about 4-12 s a steal
and 2-4 s of probes each, depending on the machine's load), plus the detector at one threshold.

The duplicate detector (:class:`encsteal.defenses.DuplicateDetector`, official threshold and
poison) is measured against a naive attacker and one that drops outlier answers
(``StealConfig(drop_outlier_ratio=...)``), beside the legitimate user's flag rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from encsteal import params, tables
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, outlier_answers, steal
from encsteal.augment import Augment
from encsteal.cache import ResultCache
from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.defenses import DuplicateDetector, GaussianNoise, detection_metrics, representation_std
from encsteal.experiments.claims import Verdict
from encsteal.params import Params
from encsteal.probe import extract_features, fit_probe
from encsteal.seeds import generator, random_init_encoder
from encsteal.stats import holm, mean_interval, paired_difference
from encsteal.victims import Victim, train_victim, victim_training_set

CLAIM = "Defenses that perturb the outputs hurt legitimate users as much as attackers."
ROLES: tuple[str, ...] = ("probe_train", "probe_val", "probe_test")
PROBE_CS: tuple[float, ...] = (0.1, 1.0)
"""Inverse regularisation strengths of every probe of the chapter (legitimate user, copies, baselines)."""
DROP_RATIO = 10.0
"""The outlier-dropping attacker's norm ratio (:func:`encsteal.attack.outlier_answers`)."""
LEGIT, VICTIM, RANDOM = "legitimate", "victim", "random_init"
ALPHA = 0.05
VERDICTS: tuple[str, ...] = ("reproduced", "partly reproduced", "not reproduced", "not evaluated")


# ---- users and their accuracies ----------------------------------------------------------------


def query_in_chunks(api: EncoderAPI, images: torch.Tensor, user: str, chunk: int = 1024) -> torch.Tensor:
    """Send ``images`` to ``api`` as ``user`` in calls of ``chunk`` images (as the attack does)."""
    return torch.cat([api.query(images[s : s + chunk], user) for s in range(0, len(images), chunk)])


def probe_accuracy(features: Mapping[str, torch.Tensor], splits: Mapping[str, ImageSet]) -> float:
    """Test accuracy (%) of the linear probe fitted on ``features['probe_train']`` (C chosen on
    ``probe_val`` among :data:`PROBE_CS`)."""
    missing = [r for r in ROLES if r not in splits or r not in features]
    if missing:
        raise ValueError(f"The probe needs features and labels of {ROLES}; missing {missing}.")
    probe = fit_probe(
        features["probe_train"],
        splits["probe_train"].labels,
        features["probe_val"],
        splits["probe_val"].labels,
        PROBE_CS,
    )
    return 100 * probe.accuracy(features["probe_test"], splits["probe_test"].labels)


def legitimate_accuracy(api: EncoderAPI, splits: Mapping[str, ImageSet], user: str) -> float:
    """The legitimate user's accuracy (%): it sends its images (train, val, test, in that order) to
    ``api`` and fits the probe on the answers."""
    return probe_accuracy({r: query_in_chunks(api, splits[r].images, user) for r in ROLES}, splits)


def encoder_accuracy(encoder: torch.nn.Module, splits: Mapping[str, ImageSet]) -> float:
    """Accuracy (%) of the probe on ``encoder``'s own features (a stolen copy, a random-init encoder)."""
    return probe_accuracy({r: extract_features(encoder, splits[r]) for r in ROLES}, splits)


@dataclass
class Task:
    """A judged downstream task: the legitimate user's labelled training images (``probe_train``)
    and the task's validation and test images."""

    name: str
    splits: dict[str, ImageSet]


def defense_tasks(names: Sequence[str], sizes: Mapping[str, int], seed: int) -> list[Task]:
    """The tasks' probe splits: the same images as the other chapters' probes for the same sizes
    and seed."""
    return [Task(name, role_splits(name, {r: sizes[r] for r in ROLES}, seed=seed)) for name in names]


def attacker_queries(pool: ImageSet, n: int, seed: int) -> ImageSet:
    """Seed ``seed``'s ``n`` query images: a subset of ``pool`` drawn from its ``queries`` stream."""
    if n > len(pool):
        raise ValueError(f"{n} queries requested but the attacker's pool holds {len(pool)} images.")
    idx = torch.randperm(len(pool), generator=generator(seed, "queries"))[:n]
    return pool.subset(torch.sort(idx).values)


def victim_output_std(victim: Victim, n: int = 2000) -> float:
    """The mean per-dimension std of the victim's API outputs on ``n`` of its own training images:
    a scale the defender knows, the unit of the noise strengths (book/paper_setup.md#setup-book-choices)."""
    data = victim_training_set(victim.config)
    api = EncoderAPI(victim.encoder, victim.head)
    return float(representation_std(query_in_chunks(api, data.images[:n], "defender")))


def augmented_pair_stream(images: torch.Tensor, seed: int = 0, views: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """The images an augmented-query attacker sends: ``views`` augmented copies of every image,
    view by view (``[v1(x); v2(x); ...]`` as ``steal(augment="views")`` does), and the truth
    (True for every copy after an image's first)."""
    gen = torch.Generator().manual_seed(seed)
    x = images.float().div(255.0) if images.dtype == torch.uint8 else images
    aug = Augment()
    stream = torch.cat([aug(x, gen) for _ in range(views)])
    truth = torch.zeros(len(stream), dtype=torch.bool)
    truth[len(x) :] = True
    return stream, truth


def attack_configs(
    losses: Sequence[str],
    epochs: int,
    seed: int,
    views_loss: str | None = None,
    views: int = 2,
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
    drop_outlier_ratio: float | None = None,
) -> dict[str, StealConfig]:
    """One plain attack per loss (with its ``loss_settings``, the profile's; default: the loss's own),
    keyed by the loss; with ``views_loss`` also ``<views_loss>_views``, which sends every image as
    ``views`` augmented views; ``drop_outlier_ratio`` makes every attack drop outlier answers."""
    settings = loss_settings or {}

    def config(loss: str, **kw: Any) -> StealConfig:
        return StealConfig(
            loss=loss,
            loss_params=dict(settings.get(loss, {})),
            epochs=epochs,
            seed=seed,
            drop_outlier_ratio=drop_outlier_ratio,
            **kw,
        )

    attacks = {loss: config(loss) for loss in losses}
    if views_loss is not None:
        attacks[f"{views_loss}_views"] = config(views_loss, augment="views", views=views)
    return attacks


# ---- the measurements ----------------------------------------------------------------------------


@dataclass
class Setup:
    """What every measurement of the chapter shares."""

    victim: Victim
    tasks: list[Task]
    pool: ImageSet
    seeds: list[int]
    num_queries: int
    epochs: int
    losses: list[str]
    loss_settings: dict[str, dict[str, Any]]
    reference_std: float
    cache: ResultCache
    device: str = "cpu"

    def api(self, defense: Any = None) -> EncoderAPI:
        return EncoderAPI(self.victim.encoder, self.victim.head, defenses=[defense] if defense is not None else [])

    def steal(self, api: EncoderAPI, seed: int, loss: str, user: str, drop: bool = False):
        cfg = attack_configs(
            [loss], self.epochs, seed, loss_settings=self.loss_settings, drop_outlier_ratio=DROP_RATIO if drop else None
        )[loss]
        queries = attacker_queries(self.pool, self.num_queries, seed)
        return steal(api, queries, cfg, user=user, cache=self.cache, device=self.device, progress=False)


def baseline_rows(s: Setup) -> list[dict[str, Any]]:
    """Per task: the victim's accuracy (the legitimate user on the undefended API, deterministic:
    one value repeated for every seed) and each seed's random-init encoder."""
    rows = []
    api = s.api()
    enc = s.victim.encoder
    for task in s.tasks:
        victim_acc = legitimate_accuracy(api, task.splits, f"legit-{task.name}")
        for seed in s.seeds:
            rand = random_init_encoder(s.victim.config.arch, enc.in_channels, enc.input_size, seed)
            rows.append({"seed": seed, "task": task.name, "user": VICTIM, "accuracy": victim_acc})
            rows.append(
                {"seed": seed, "task": task.name, "user": RANDOM, "accuracy": encoder_accuracy(rand, task.splits)}
            )
    return rows


def noise_rows(s: Setup, strengths: Sequence[float], baselines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (strength, seed, task, user) of zero-mean Gaussian noise whose std is
    ``strength`` times :attr:`Setup.reference_std`; strength 0 is the undefended API (the
    legitimate user's accuracy there is the victim's, from ``baselines``)."""
    victim_acc = {(r["seed"], r["task"]): r["accuracy"] for r in baselines if r["user"] == VICTIM}
    rows: list[dict[str, Any]] = []
    jobs = [(seed, float(x)) for seed in s.seeds for x in [0.0, *sorted(set(strengths) - {0.0})]]
    for seed, strength in tqdm(jobs, desc="noise", leave=False):
        defense = None
        if strength > 0:
            defense = GaussianNoise(mean=0.0, std=strength, reference_std=s.reference_std, seed=seed)
        api = s.api(defense)
        for task in s.tasks:
            acc = victim_acc[(seed, task.name)] if defense is None else legitimate_accuracy(api, task.splits, LEGIT)
            rows.append({"strength": strength, "seed": seed, "task": task.name, "user": LEGIT, "accuracy": acc})
        for loss in s.losses:
            copy = s.steal(api, seed, loss, f"attacker-{loss}").encoder
            for task in s.tasks:
                rows.append(
                    {
                        "strength": strength,
                        "seed": seed,
                        "task": task.name,
                        "user": f"attacker_{loss}",
                        "accuracy": encoder_accuracy(copy, task.splits),
                    }
                )
    return rows


def detector_rows(s: Setup, thresholds: Sequence[float]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The duplicate detector (history scope, official N(1000, 0.5^2) poison, seed = the seed) at
    each threshold: rows per (threshold, seed, task, user) for the legitimate user and each
    outlier-dropping attacker ``attacker_<loss>_drop`` (plain queries, the seed's subset), with
    the share of the user's queries flagged (``flagged``, %; a naive attacker's answers are
    poisoned in that share) and, for attackers, the answers they train on (``kept``); and per
    (threshold, seed) the detector's precision, recall, F1 and ROC-AUC on its target, an
    augmented-pair stream made of the seed's query images.

    The undefended reference of each user is the noise sweep's strength 0 (same seeds, queries
    and attacks; the outlier-dropping attacker drops nothing there when :func:`natural_outliers`
    are all 0)."""
    rows: list[dict[str, Any]] = []
    detection: list[dict[str, Any]] = []
    for seed in tqdm(s.seeds, desc="detector", leave=False):
        queries = attacker_queries(s.pool, s.num_queries, seed)
        for th in thresholds:
            det = DuplicateDetector(threshold=float(th), seed=seed)
            api = s.api(det)
            for task in s.tasks:
                user = f"legit-{task.name}"
                acc = legitimate_accuracy(api, task.splits, user)
                flagged = 100 * float(det.decisions(user)[1].float().mean())
                rows.append(
                    {"threshold": float(th), "seed": seed, "task": task.name, "user": LEGIT, "accuracy": acc}
                    | {"flagged": flagged, "kept": float("nan")}
                )
            # what the attacker's plain queries get (a fresh detector: a cached steal sends nothing)
            probe = DuplicateDetector(threshold=float(th), seed=seed)
            answers = query_in_chunks(s.api(probe), queries.images, "probe")
            flagged = 100 * float(probe.decisions("probe")[1].float().mean())
            kept = int((~outlier_answers(answers, DROP_RATIO)).sum())
            for loss in s.losses:
                name = f"attacker_{loss}_drop"
                copy = s.steal(api, seed, loss, name, drop=True).encoder
                for task in s.tasks:
                    rows.append(
                        {
                            "threshold": float(th),
                            "seed": seed,
                            "task": task.name,
                            "user": name,
                            "accuracy": encoder_accuracy(copy, task.splits),
                            "flagged": flagged,
                            "kept": float(kept),
                        }
                    )
            stream, truth = augmented_pair_stream(queries.images[: s.num_queries // 2], seed=seed)
            fresh = DuplicateDetector(threshold=float(th), seed=seed)
            query_in_chunks(s.api(fresh), stream, "pairs")
            scores, flags = fresh.decisions("pairs")
            m = detection_metrics(truth, flags, scores)
            detection.append(
                {"threshold": float(th), "seed": seed}
                | {k: 100 * m[k] for k in ("precision", "recall", "f1")}
                | {"roc_auc": m["roc_auc"]}
            )
    return rows, detection


def natural_outliers(s: Setup) -> list[int]:
    """Per seed, how many undefended answers the outlier-dropping attacker would drop (0 means
    that without the detector it trains exactly like the naive attacker)."""
    api = s.api()
    counts = []
    for seed in s.seeds:
        answers = query_in_chunks(api, attacker_queries(s.pool, s.num_queries, seed).images, "x")
        counts.append(int(outlier_answers(answers, DROP_RATIO).sum()))
    return counts


# ---- tables with intervals -------------------------------------------------------------------------


def _frame(results: Mapping[str, Any], key: str) -> pd.DataFrame:
    if key not in results:
        raise ValueError(f"The results have no {key!r} rows; they have {sorted(results)}.")
    return pd.DataFrame(list(results[key]))


def _interval_columns(values: Sequence[float], prefix: str) -> dict[str, float]:
    iv = mean_interval(values)
    return {prefix: iv.mean, f"{prefix}_low": iv.low, f"{prefix}_high": iv.high}


def _per_seed(frame: pd.DataFrame, **where: Any) -> pd.Series:
    sel = frame
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.set_index("seed")["accuracy"].sort_index()


def relative_loss(defended: pd.Series, undefended: pd.Series) -> pd.Series:
    """Per seed, the share (%) of its undefended accuracy a user loses: ``100 * (1 - d / u)``."""
    if not defended.index.equals(undefended.index):
        raise ValueError(f"Losses are paired by seed: got seeds {list(defended.index)} and {list(undefended.index)}.")
    return 100 * (1 - defended / undefended)


def baseline_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per task: the victim's accuracy, the random-init encoders' (mean and 95 % interval over
    seeds) and the victim's margin over them (a task counts as judged when the interval of the
    margin lies above zero)."""
    base = _frame(results, "baselines")
    rows = []
    for task in dict.fromkeys(base["task"]):
        victim = _per_seed(base, task=task, user=VICTIM)
        rand = _per_seed(base, task=task, user=RANDOM)
        margin = mean_interval(victim - rand)
        rows.append(
            {"task": task, "victim": float(victim.mean())}
            | _interval_columns(rand, "random_init")
            | _interval_columns(victim - rand, "margin")
            | {"judged": margin.low > 0}
        )
    return pd.DataFrame(rows).set_index("task")


def margin_shares(results: Mapping[str, Any], task: str, accuracy: pd.Series) -> pd.Series:
    """Per seed, the share (%) of the victim's margin over that seed's random-init encoder that
    ``accuracy`` recovers: ``100 * (acc - random) / (victim - random)``
    (:func:`encsteal.stats.margin_share`)."""
    base = _frame(results, "baselines")
    victim, rand = _per_seed(base, task=task, user=VICTIM), _per_seed(base, task=task, user=RANDOM)
    return 100 * (accuracy - rand) / (victim - rand)


def noise_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per (task, strength, user): accuracy, the share of the victim's margin over the random-init
    encoders it recovers (``margin_share``, %) and relative loss (% of the user's own undefended
    accuracy), means with 95 % intervals over seeds."""
    noise = _frame(results, "noise")
    rows = []
    for (task, user), group in noise.groupby(["task", "user"], sort=False):
        clean = _per_seed(group, strength=0.0)
        for strength in sorted(group["strength"].unique()):
            acc = _per_seed(group, strength=strength)
            rows.append(
                {"task": task, "strength": float(strength), "user": user}
                | _interval_columns(acc, "accuracy")
                | _interval_columns(margin_shares(results, task, acc), "margin_share")
                | _interval_columns(relative_loss(acc, clean), "loss")
            )
    return pd.DataFrame(rows).set_index(["task", "strength", "user"]).sort_index()


def _best_attacker(frame: pd.DataFrame, task: str, strength: float) -> str:
    """The attacker with the highest mean accuracy on ``task`` at ``strength`` (the one a defense
    leaves best off)."""
    sel = frame[(frame.task == task) & (frame.strength == strength) & frame.user.str.startswith("attacker_")]
    if sel.empty:
        raise ValueError(f"No attacker was measured on {task!r} at strength {strength}.")
    return str(sel.groupby("user")["accuracy"].mean().idxmax())


def user_losses(results: Mapping[str, Any], task: str, strength: float) -> tuple[pd.Series, pd.Series, str]:
    """Per seed, the legitimate user's relative loss and the best attacker's (the best at
    ``strength``, against the best undefended attacker's accuracy of the same seed), and the best
    attacker's name."""
    noise = _frame(results, "noise")
    legit = relative_loss(
        _per_seed(noise, task=task, user=LEGIT, strength=strength),
        _per_seed(noise, task=task, user=LEGIT, strength=0.0),
    )
    best, best_clean = _best_attacker(noise, task, strength), _best_attacker(noise, task, 0.0)
    attacker = relative_loss(
        _per_seed(noise, task=task, user=best, strength=strength),
        _per_seed(noise, task=task, user=best_clean, strength=0.0),
    )
    return legit, attacker, best


def judged_tasks(results: Mapping[str, Any]) -> list[str]:
    """The tasks where the victim's margin over the random-init encoders is above zero (interval)."""
    table = baseline_table(results)
    return [str(t) for t in table.index[table["judged"]]]


def paired_table(results: Mapping[str, Any], alpha: float = ALPHA) -> pd.DataFrame:
    """The judged comparison, one row per (judged task, defended strength).

    ``legit_loss`` and ``attacker_loss`` (the best attacker, ``attacker``): relative losses (%)
    with 95 % intervals over seeds. ``effective``: the defense changed something, i.e. the
    legitimate user's or the best attacker's loss differs from zero (t-test over seeds, Holm over
    the 2 x cells tests at ``alpha``; a loss that is exactly zero for every seed never counts).
    ``diff`` = legit_loss - attacker_loss, paired by seed, with its interval and p-value; among
    the effective cells Holm decides which differences are separable. ``outcome``: "no effect",
    "legitimate user hurt more", "attacker hurt more" or "not separable".
    """
    noise = _frame(results, "noise")
    cells = []
    for task in judged_tasks(results):
        for strength in sorted(noise.loc[(noise.task == task) & (noise.strength > 0), "strength"].unique()):
            legit, attacker, best = user_losses(results, task, float(strength))
            zeros = [0.0] * len(legit)
            legit_iv, p_legit = paired_difference(legit.values, zeros)
            att_iv, p_att = paired_difference(attacker.values, zeros)
            diff, p = paired_difference(legit.values, attacker.values)
            cells.append(
                {
                    "task": task,
                    "strength": float(strength),
                    "attacker": best,
                    "legit_loss": legit_iv.mean,
                    "legit_loss_low": legit_iv.low,
                    "legit_loss_high": legit_iv.high,
                    "attacker_loss": att_iv.mean,
                    "attacker_loss_low": att_iv.low,
                    "attacker_loss_high": att_iv.high,
                    "diff": diff.mean,
                    "diff_low": diff.low,
                    "diff_high": diff.high,
                    "p": p,
                    "_p_effect": (p_legit, p_att),
                }
            )
    if not cells:
        return pd.DataFrame(
            columns=["task", "strength", "attacker", "legit_loss", "attacker_loss", "diff", "p", "effective", "outcome"]
        )
    effect = holm([q for c in cells for q in c["_p_effect"]], alpha)
    for i, c in enumerate(cells):
        c["effective"] = bool(effect[2 * i] or effect[2 * i + 1])
        del c["_p_effect"]
    live = [i for i, c in enumerate(cells) if c["effective"]]
    separable = holm([cells[i]["p"] for i in live], alpha) if live else []
    for c in cells:
        c["separable"] = False
        c["outcome"] = "no effect"
    for i, sep in zip(live, separable):
        c = cells[i]
        c["separable"] = bool(sep)
        c["outcome"] = (
            "not separable" if not sep else "legitimate user hurt more" if c["diff"] > 0 else "attacker hurt more"
        )
    return pd.DataFrame(cells)


def _crossing(strengths: np.ndarray, values: np.ndarray, target: float) -> float:
    """The first strength at which the piecewise-linear curve ``values(strengths)`` reaches
    ``target`` (NaN if it never does)."""
    for i in range(1, len(strengths)):
        lo, hi = values[i - 1], values[i]
        if lo < target <= hi:
            return float(strengths[i - 1] + (target - lo) / (hi - lo) * (strengths[i] - strengths[i - 1]))
    return float("nan")


def matched_table(results: Mapping[str, Any], targets: Sequence[float] = (10.0, 25.0)) -> pd.DataFrame:
    """The attacker's loss at matched legitimate-user loss: per judged task and ``target`` (% of
    the legitimate user's undefended accuracy), for each seed the strength at which its
    legitimate-user loss curve (piecewise linear in strength, 0 at strength 0) first reaches the
    target, and the best attacker's loss interpolated there. Means with 95 % intervals over the
    seeds that reach the target (``reached``; no interval with fewer than 2)."""
    noise = _frame(results, "noise")
    rows = []
    for task in judged_tasks(results):
        strengths = np.array(sorted(noise.loc[noise.task == task, "strength"].unique()), dtype=float)
        per_strength = {x: user_losses(results, task, float(x)) for x in strengths if x > 0}
        for target in targets:
            at, legit_at = [], []
            for seed in sorted(noise.loc[noise.task == task, "seed"].unique()):
                legit = np.array([0.0] + [per_strength[x][0][seed] for x in strengths[1:]])
                att = np.array([0.0] + [per_strength[x][1][seed] for x in strengths[1:]])
                where = _crossing(strengths, legit, target)
                if not math.isnan(where):
                    at.append(float(np.interp(where, strengths, att)))
                    legit_at.append(where)
            row: dict[str, Any] = {"task": task, "target": float(target), "reached": len(at)}
            if len(at) >= 2:
                row |= _interval_columns(at, "attacker_loss") | {"strength": float(np.mean(legit_at))}
            else:
                row |= {"attacker_loss": float("nan"), "attacker_loss_low": float("nan")}
                row |= {"attacker_loss_high": float("nan"), "strength": float("nan")}
            rows.append(row)
    return pd.DataFrame(rows)


def detector_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per (threshold, task, user) of the detector: accuracy (mean, 95 % interval), the share of
    the user's queries flagged, the answers attackers train on, and the share of its undefended
    accuracy each user keeps (``kept_share``, %; undefended = the noise part's strength 0: the
    same queries, seeds and attacks, and the outlier-dropping attacker drops nothing there when
    :func:`natural_outliers` are all 0)."""
    det, noise = _frame(results, "detector"), _frame(results, "noise")
    rows = []
    for (th, task, user), group in det.groupby(["threshold", "task", "user"], sort=False):
        acc = group.set_index("seed")["accuracy"].sort_index()
        clean_user = user.removesuffix("_drop")
        clean = _per_seed(noise, task=task, user=clean_user, strength=0.0)
        rows.append(
            {"threshold": th, "task": task, "user": user}
            | _interval_columns(acc, "accuracy")
            | _interval_columns(margin_shares(results, task, acc), "margin_share")
            | _interval_columns(100 * acc / clean, "kept_share")
            | {"flagged": float(group["flagged"].mean()), "answers_used": float(group["kept"].mean())}
        )
    return pd.DataFrame(rows).set_index(["threshold", "task", "user"])


def detection_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """The detector's precision, recall, F1 (%) and ROC-AUC on augmented pairs, per threshold
    (means with 95 % intervals over the seeds' query images)."""
    det = _frame(results, "detection")
    rows = []
    for th, group in det.groupby("threshold"):
        row: dict[str, Any] = {"threshold": th}
        for k in ("precision", "recall", "f1", "roc_auc"):
            row |= _interval_columns(group[k].values, k)
        rows.append(row)
    return pd.DataFrame(rows).set_index("threshold")


# ---- tables for readers ------------------------------------------------------------------------
# Formatted with encsteal.tables: one cell per mean and its 95 % interval over seeds, n/a where a
# value is missing (the captions say when), named rows, at most tables.MAX_COLUMNS data columns.

STRENGTH = "noise std"
MARGIN_SHARE = "margin share (%)"
LOSS = "loss (%)"
NBSP_COMMA = ",\u00a0"
"""Between an interval's bounds: a comma and a no-break space."""
NOT_JUDGED = "task not judged"
LEGIT_LOSS = "legitimate user's loss (%)"
ATTACKER_LOSS = "attacker's loss (%)"


def user_label(user: str) -> str:
    """A user's name for readers: ``attacker_mse_drop`` -> ``attacker (mse), drops outliers``."""
    if user == LEGIT:
        return "legitimate user"
    if not user.startswith("attacker_"):
        raise ValueError(f"Unknown user {user!r}: expected {LEGIT!r} or attacker_<loss>[_drop].")
    loss = user.removeprefix("attacker_")
    if loss.endswith("_drop"):
        return f"attacker ({loss.removesuffix('_drop')}), drops outliers"
    return f"attacker ({loss})"


def strength_label(strength: float) -> str:
    """A noise strength for readers: ``0.5``, or ``0 (undefended)``."""
    return "0 (undefended)" if strength == 0 else f"{strength:g}"


def _rounded(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` decimals, never -0 (a missing value stays missing)."""
    return x if tables.is_missing(x) else round(float(x), digits) + 0.0


def cell(row: Any, prefix: str, digits: int = 1) -> str:
    """``row[prefix]`` with its interval (``row[prefix + '_low']``, ``..._high``) as one cell; a
    value without spread over seeds (the deterministic undefended API) shows alone, a missing one
    as n/a. The interval's bounds are joined by a no-break space, so that a narrow column breaks
    the cell before the bracket, never inside it."""
    mean, low, high = (_rounded(row[k], digits) for k in (prefix, f"{prefix}_low", f"{prefix}_high"))
    if not tables.is_missing(low) and not tables.is_missing(high) and round(low, digits) == round(high, digits):
        return tables.number(float(mean), digits)
    return tables.interval(mean, low, high, digits).replace(", ", NBSP_COMMA)


def _margin_cell(row: Any, judged: set[str]) -> str:
    """A row's share of the victim's margin (%), or n/a on a task that is not judged (the victim
    does not beat the random-init encoders there, so a share of its margin means nothing)."""
    return cell(row, "margin_share", 0) if row.task in judged else tables.NA


def _not_judged_rows(results: Mapping[str, Any], columns: Sequence[str], column: str, label: str) -> pd.DataFrame:
    """One row per task that is not judged: ``label`` in ``column``, n/a elsewhere."""
    base = baseline_table(results)
    rest = [str(t) for t in base.index[~base["judged"]]]
    values = [[label if c == column else tables.NA for c in columns] for _ in rest]
    return pd.DataFrame(values, columns=list(columns), index=pd.Index(rest, name="task"))


def baseline_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`baseline_table` for readers: per task the victim's accuracy, the random-init
    encoders', the victim's margin (points) and whether the task is judged."""
    base = baseline_table(results)
    rows = {
        task: {
            "victim (%)": tables.number(r.victim),
            "random-init encoders (%)": cell(r, "random_init"),
            "victim's margin (points)": cell(r, "margin"),
            "judged": "yes" if r.judged else "no",
        }
        for task, r in base.iterrows()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task")


def noise_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`noise_table` for readers: per task, strength and user the probe accuracy and the
    relative loss (% of the user's own undefended accuracy)."""
    table = noise_table(results).reset_index()
    order = {task: i for i, task in enumerate(dict.fromkeys(_frame(results, "noise")["task"]))}
    table = table.assign(_task=table.task.map(order), _attacker=table.user != LEGIT).sort_values(
        ["_task", "strength", "_attacker", "user"], kind="stable"
    )
    return pd.DataFrame(
        {
            STRENGTH: table.strength.map(strength_label).values,
            "user": table.user.map(user_label).values,
            "accuracy (%)": [cell(r, "accuracy") for _, r in table.iterrows()],
            LOSS: [cell(r, "loss") for _, r in table.iterrows()],
        },
        index=pd.Index(table.task.values, name="task"),
    )


def paired_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`paired_table` for readers: per judged task and defended strength both users'
    relative losses, their paired difference (points) and the outcome; the best attacker is
    named in a column only when several attack losses were measured."""
    cells = paired_table(results)
    several = len(cells) > 0 and (cells.attacker.nunique() > 1 or len(results.get("losses", [])) > 1)
    columns: dict[str, list[str]] = {STRENGTH: [strength_label(x) for x in cells.strength]}
    if several:
        columns["best attacker"] = [user_label(a) for a in cells.attacker]
    columns |= {
        LEGIT_LOSS: [cell(r, "legit_loss") for _, r in cells.iterrows()],
        ATTACKER_LOSS: [cell(r, "attacker_loss") for _, r in cells.iterrows()],
        "difference (points)": [cell(r, "diff") for _, r in cells.iterrows()],
        "outcome": list(cells.outcome),
    }
    table = pd.DataFrame(columns, index=pd.Index(list(cells.task), name="task"))
    return pd.concat([table, _not_judged_rows(results, list(columns), "outcome", NOT_JUDGED)])


def matched_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`matched_table` for readers: per judged task and matched legitimate-user loss, the
    seeds that reach it, the mean noise std there and the best attacker's loss (n/a when fewer
    than two seeds reach it)."""
    table = matched_table(results)
    n_seeds = len(results["seeds"])
    columns = {
        LEGIT_LOSS: [tables.number(x, 0) for x in table.get("target", [])],
        "seeds reaching it": [f"{int(r)} of {n_seeds}" for r in table.get("reached", [])],
        "noise std there (mean)": [tables.number(x, 2) for x in table.get("strength", [])],
        ATTACKER_LOSS: [cell(r, "attacker_loss") for _, r in table.iterrows()],
    }
    readers = pd.DataFrame(columns, index=pd.Index(list(table.get("task", [])), name="task"))
    return pd.concat([readers, _not_judged_rows(results, list(columns), "seeds reaching it", f"none ({NOT_JUDGED})")])


def detector_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`detector_table` for readers: per task (and threshold, in a column when several were
    measured) and user the share of its queries flagged, its accuracy, the share of the victim's
    margin over the random-init encoders it recovers and the share of its own undefended accuracy
    it keeps."""
    table = detector_table(results).reset_index()
    judged = set(judged_tasks(results))
    order = {task: i for i, task in enumerate(dict.fromkeys(table.task))}
    table = table.assign(_task=table.task.map(order), _attacker=table.user != LEGIT).sort_values(
        ["_task", "threshold", "_attacker"], kind="stable"
    )
    columns = {"threshold": [tables.number(x, 2) for x in table.threshold]} if table.threshold.nunique() > 1 else {}
    columns |= {
        "user": list(table.user.map(user_label)),
        "flagged (%)": [tables.number(x, 0) for x in table.flagged],
        "accuracy (%)": [cell(r, "accuracy") for _, r in table.iterrows()],
        MARGIN_SHARE: [_margin_cell(r, judged) for _, r in table.iterrows()],
        "kept (%)": [cell(r, "kept_share", 0) for _, r in table.iterrows()],
    }
    return pd.DataFrame(columns, index=pd.Index(list(table.task), name="task"))


def detection_reader(results: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`detection_table` for readers: the detector's precision, recall, F1 (%) and ROC-AUC
    on the augmented-pair stream, per threshold."""
    table = detection_table(results)
    rows = {
        tables.number(th, 2): {
            "precision (%)": cell(r, "precision"),
            "recall (%)": cell(r, "recall"),
            "F1 (%)": cell(r, "f1"),
            "ROC-AUC": cell(r, "roc_auc", 2),
        }
        for th, r in table.iterrows()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("threshold")


# ---- the judge ---------------------------------------------------------------------------------

PAPER_CLAIM = "no number published; in words: output noise hurts legitimate users as much as attackers"
"""The paper's claim C4 for the paper at a glance (it published no defense numbers)."""


def _whole(x: float) -> str:
    """``x`` to a whole number, never "-0"."""
    text = f"{x:.0f}"
    return "0" if text == "-0" else text


def loss_summary(cells: pd.DataFrame) -> str:
    """The paired cells (:func:`paired_table`) at their strongest noise, in one short line: per task
    the legitimate user's and the best attacker's relative loss (%) with 95 % intervals."""
    if cells.empty:
        raise ValueError("No paired cells to summarise: no task was judged.")
    top = cells[cells.strength == cells.strength.max()]
    parts = [
        f"{c.task} {_whole(c.legit_loss)} [{_whole(c.legit_loss_low)}, {_whole(c.legit_loss_high)}] vs "
        f"{_whole(c.attacker_loss)} [{_whole(c.attacker_loss_low)}, {_whole(c.attacker_loss_high)}]"
        for c in top.itertuples()
    ]
    return f"loss (%) at noise {top.strength.iloc[0]:g}x, user vs attacker: " + "; ".join(parts)


def judge_defense(results: Mapping[str, Any], alpha: float = ALPHA) -> Verdict:
    """C4: defenses that perturb the outputs (zero-mean noise) hurt legitimate users as much as attackers.

    From the chapter's saved results (per-seed ``noise`` and ``baselines`` rows):

    1. Only judged tasks count: the victim's margin over the seeds' random-init encoders has a
       95 % interval above zero (:func:`baseline_table`).
    2. Each (judged task, strength > 0) is a cell (:func:`paired_table`): each user's relative loss
       (% of its own undefended accuracy, per seed; the best attacker is the one with the highest
       mean accuracy at that strength). A cell counts only if the defense changed something: the
       legitimate user's or the best attacker's loss differs from zero (Holm over all these
       tests). A defense that hurts nobody (zero noise, a detector that never fires) has no
       effective cell.
    3. In each effective cell the paired difference legit loss - attacker loss (over seeds, Holm
       over the effective cells) is "attacker hurt more" when separable and negative.

    Verdict: "not evaluated" when no cell is effective (or no task is judged); "reproduced" when no
    effective cell has the attacker hurt separably more (the legitimate user loses at least as
    much wherever the defense bites); "not reproduced" when every effective cell has the attacker
    hurt separably more; "partly reproduced" otherwise (at some strengths).
    """
    base = baseline_table(results)
    paper = PAPER_CLAIM
    margins = "; ".join(
        f"{t}: victim {r.victim:.1f} % vs random-init {r.random_init:.1f} % (margin {r.margin:.1f} "
        f"[{r.margin_low:.1f}, {r.margin_high:.1f}])"
        for t, r in base.iterrows()
    )
    if not base["judged"].any():
        ours = "victim beats random-init on no task; margin (points) " + ", ".join(
            f"{t} {_whole(r.margin)} [{_whole(r.margin_low)}, {_whole(r.margin_high)}]" for t, r in base.iterrows()
        )
        return Verdict(
            CLAIM, f"the victim beats a random-init encoder on no task ({margins})", "not evaluated", paper, ours
        )
    cells = paired_table(results, alpha)
    live = cells[cells["effective"]] if len(cells) else cells
    if live.empty:
        return Verdict(
            CLAIM,
            f"no defended strength changed any user's accuracy separably ({margins})",
            "not evaluated",
            paper,
            "no effect; " + loss_summary(cells),
        )
    parts = [
        f"{c.task}, std {c.strength:g}x: legitimate user loses {c.legit_loss:.1f} % [{c.legit_loss_low:.1f}, "
        f"{c.legit_loss_high:.1f}] of its accuracy, best attacker ({c.attacker.removeprefix('attacker_')}) "
        f"{c.attacker_loss:.1f} % [{c.attacker_loss_low:.1f}, {c.attacker_loss_high:.1f}], difference "
        f"{c.diff:+.1f} [{c.diff_low:+.1f}, {c.diff_high:+.1f}] ({c.outcome})"
        for c in live.itertuples()
    ]
    idle = len(cells) - len(live)
    evidence = (
        f"{len(live)} of {len(cells)} cells changed something"
        + (f" ({idle} without effect)" if idle else "")
        + "; "
        + "; ".join(parts)
        + f". Margins: {margins}"
    )
    worse = int((live["outcome"] == "attacker hurt more").sum())
    verdict = "reproduced" if worse == 0 else "not reproduced" if worse == len(live) else "partly reproduced"
    return Verdict(CLAIM, evidence, verdict, paper, loss_summary(live))


# ---- sentences chosen by code ------------------------------------------------------------------


def _loses(loss: float, decimals: int = 0) -> str:
    """'loses 5 %' or, for a negative loss, 'gains 1 %' ('loses about 0 %' when it rounds to zero)."""
    if round(loss, decimals) == 0:
        return "loses about 0 %"
    return f"{'loses' if loss >= 0 else 'gains'} {abs(loss):.{decimals}f} %"


def noise_sentence(results: Mapping[str, Any]) -> str:
    """What the noise does at its strongest strength, task by task (the comparatives chosen from
    the paired outcomes)."""
    cells = paired_table(results)
    if cells.empty:
        return "No task was judged: the victim beats the random-init encoders on none of them."
    top = cells[cells.strength == cells.strength.max()]
    table = noise_table(results)
    parts = []
    for c in top.itertuples():
        legit = table.loc[(c.task, c.strength, LEGIT)]
        below = (
            ", below the random-init encoder: its answers are worth less than an untrained network's"
            if legit.margin_share_high < 0
            else ""
        )
        compare = {
            "legitimate user hurt more": "the legitimate user is hurt separably more",
            "attacker hurt more": "the attacker is hurt separably more",
            "not separable": "the two losses are not separable at this scale",
            "no effect": "the noise changes neither user's accuracy separably",
        }[c.outcome]
        parts.append(
            f"on {c.task} the legitimate user {_loses(c.legit_loss)} of its undefended accuracy (down to "
            f"{legit.accuracy:.1f} %{below}) and the best attacker {_loses(c.attacker_loss)} of its own ({compare})"
        )
    strongest = f"With the strongest noise (std {top.strength.iloc[0]:g} times the representation's), "
    return strongest + "; ".join(parts) + "."


def _percent(mean: float, low: float, high: float, digits: int = 1) -> str:
    """``0.8 % [0.0, 1.7]`` for a sentence (never "-0.0")."""
    m, lo, hi = (_rounded(x, digits) for x in (mean, low, high))
    return f"{m:.{digits}f} % [{lo:.{digits}f}, {hi:.{digits}f}]"


def matched_sentence(results: Mapping[str, Any]) -> str:
    """The attacker's loss at matched legitimate-user loss, for the first target reached."""
    if not judged_tasks(results):
        return "No task was judged, so there is no matched comparison."
    table = matched_table(results)
    n_seeds = len(results["seeds"])
    parts = []
    for c in table.itertuples():
        if c.reached < 2:
            continue
        rel = (
            "less"
            if c.attacker_loss_high < c.target
            else "more"
            if c.attacker_loss_low > c.target
            else "about as much (not separable)"
        )
        seeds = "" if c.reached == n_seeds else f", reached in {c.reached} of {n_seeds} seeds"
        parts.append(
            f"on {c.task}, where the legitimate user has lost {c.target:.0f} % of its accuracy (noise std about "
            f"{c.strength:.2g} times the representation's{seeds}), the best attacker's loss is "
            f"{_percent(c.attacker_loss, c.attacker_loss_low, c.attacker_loss_high)}: {rel}"
        )
    if not parts:
        return "At the measured strengths the legitimate user never lost the matched shares in two seeds or more."
    return "At matched harm to the legitimate user, " + "; ".join(parts) + "."


def _versus_random(row: Any) -> str:
    """A row's margin share (%, with its interval) in words: above, level with or below the
    random-init encoder."""
    share, low, high = row.margin_share, row.margin_share_low, row.margin_share_high
    interval = f"{share:.0f} % [{low:.0f}, {high:.0f}] of the victim's margin over a random-init encoder"
    if high < 0:
        return f"{interval}: below the random-init encoder"
    if low <= 0:
        return f"{interval}: not separable from the random-init encoder"
    return interval


def detector_sentence(results: Mapping[str, Any]) -> str:
    """What the duplicate detector does to each user at its strictest threshold measured, in
    accuracy and in shares of the victim's margin over the random-init encoders."""
    table = detector_table(results).reset_index()
    clean = noise_table(results)
    det = _frame(results, "detector")
    th = float(table.threshold.min())
    at = table[table.threshold == th]
    legit = at[at.user == LEGIT]
    drops = at[at.user.str.endswith("_drop")]
    judged = set(judged_tasks(results))

    def standing(r: Any) -> str:
        """Against the random-init encoders on a judged task; else the share of the user's own
        undefended accuracy kept (a share of no margin means nothing)."""
        if r.task in judged:
            return _versus_random(r)
        kept = f"{r.kept_share:.0f} % [{r.kept_share_low:.0f}, {r.kept_share_high:.0f}]"
        return f"{kept} of its undefended accuracy; the task is not judged"

    flagged_legit = " and ".join(f"{r.flagged:.0f} % on {r.task}" for r in legit.itertuples())
    attacker_flagged = float(det[(det.threshold == th) & det.user.str.startswith("attacker_")]["flagged"].mean())
    text = (
        f"At threshold {th:g} the detector poisons the answers to the legitimate user's queries ({flagged_legit}) "
        f"and to {attacker_flagged:.0f} % of the attacker's {int(results['queries'])} plain queries. "
        "The legitimate user's probe falls to "
        + " and ".join(f"{r.accuracy:.1f} % on {r.task} ({standing(r)})" for r in legit.itertuples())
        + "."
    )
    for user in dict.fromkeys(drops.user):
        d = drops[drops.user == user]
        naive = user.removesuffix("_drop")
        parts = []
        for r in d.itertuples():
            before = clean.loc[(r.task, 0.0, naive)]
            undefended = (
                f"; undefended, its copy recovers {before.margin_share:.0f} % [{before.margin_share_low:.0f}, "
                f"{before.margin_share_high:.0f}]"
                if r.task in judged
                else ""
            )
            parts.append(f"{r.accuracy:.1f} % on {r.task} ({standing(r)}{undefended})")
        used = float(d["answers_used"].mean())
        answers = "answer" if round(used) == 1 else "answers"
        text += (
            f" The {naive.removeprefix('attacker_')} attacker that drops outlier answers trains on the {used:.0f} "
            f"{answers} left unpoisoned; its copy reaches " + " and ".join(parts) + "."
        )
    return text


def margin_sentence(results: Mapping[str, Any]) -> str:
    """The victim's margin over the random-init encoders on each task."""
    base = baseline_table(results)
    parts = [
        f"on {t} the victim's probe reaches {r.victim:.1f} % and the random-init encoders {r.random_init:.1f} % "
        f"[{r.random_init_low:.1f}, {r.random_init_high:.1f}], a margin of {r.margin:.1f} points"
        + ("" if r.judged else " that is not above zero, so the task is not judged")
        for t, r in base.iterrows()
    ]
    return "With the legitimate user's labelled images, " + "; ".join(parts) + "."


def verdict_sentence(verdict: Verdict, cells: pd.DataFrame | None = None) -> str:
    """The chapter's conclusion in words, from the verdict and (when given) the paired cells of
    :func:`paired_table`: a reproduced claim whose effective cells all have the legitimate user
    hurt separably more says so."""
    live = cells[cells["effective"]] if cells is not None and len(cells) else None
    if (
        verdict.verdict == "reproduced"
        and live is not None
        and len(live)
        and (live["outcome"] == "legitimate user hurt more").all()
    ):
        return (
            "Wherever the noise changed something, the legitimate user lost a separably larger share of its "
            "accuracy than the best attacker. The claim (such defenses hurt legitimate users as much as attackers) "
            "is reproduced at this scale in a stronger form: the noise hurts the legitimate user more."
        )
    return {
        "reproduced": "Wherever the noise changed something, the legitimate user lost at least as large a share of "
        "its accuracy as the best attacker (or the two were not separable): the claim is reproduced at this scale.",
        "partly reproduced": "The claim is partly reproduced: at some strengths the attacker lost a separably larger "
        "share of its accuracy than the legitimate user, at others not.",
        "not reproduced": "The claim is not reproduced at this scale: wherever the noise changed something, the "
        "attacker lost a separably larger share of its accuracy than the legitimate user.",
        "not evaluated": "The claim is not evaluated: no noise strength changed either user's accuracy separably, or "
        "no task was judged.",
    }[verdict.verdict]


# ---- the chapter -------------------------------------------------------------------------------


FIGURE_WIDTH = 9.0
"""Inches: the widest figure that fits the book's text column at dpi 110."""
PAPER_CLAIM_LABEL = "paper's claim (no number published): equal loss"
DETECTOR_CLAIM_LABEL = "paper's claim, as we read it (no number): evaded, 100 % kept"


def plot_noise(results: Mapping[str, Any]) -> Figure:
    """Per task: probe accuracy (mean and 95 % interval over seeds) against the noise strength for
    the legitimate user and each attacker, with the random-init encoders' mean."""
    table = noise_table(results).reset_index()
    base = baseline_table(results)
    tasks = list(dict.fromkeys(_frame(results, "noise")["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(min(FIGURE_WIDTH, 4.4 * len(tasks)), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = table[table.task == task]
        for i, user in enumerate(sorted(dict.fromkeys(sub["user"]), key=lambda u: u != LEGIT)):
            u = sub[sub.user == user]
            ax.errorbar(
                u.strength,
                u.accuracy,
                yerr=[u.accuracy - u.accuracy_low, u.accuracy_high - u.accuracy],
                marker="o",
                capsize=3,
                label=user_label(user),
                color=f"C{i}",
            )
        ax.axhline(base.loc[task, "random_init"], ls="--", color="grey", lw=1, label="random-init encoders")
        ax.set_xticks(sorted(sub.strength.unique()))
        ax.set_xlabel("noise std (x representation std)")
        ax.set_ylabel("probe accuracy (%)")
        ax.set_title(task)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_paper_vs_ours(results: Mapping[str, Any]) -> Figure:
    """The paper's claim against our measurement: per judged task and noise strength, the best
    attacker's relative loss against the legitimate user's (means with 95 % intervals over seeds,
    both axes; hollow markers: the noise changed neither loss separably), with the paper's claim,
    which has no number, drawn as the diagonal of equal loss. Below the diagonal the legitimate user
    loses more; above it, the attacker (where the claim fails)."""
    cells = paired_table(results)
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    lows, highs = [0.0], [1.0]
    for i, task in enumerate(dict.fromkeys(cells.task) if len(cells) else []):
        c = cells[cells.task == task].sort_values("strength")
        color = f"C{i}"
        ax.plot([0.0, *c.legit_loss], [0.0, *c.attacker_loss], color=color, lw=1.5, label=task)
        for r in c.itertuples():
            ax.errorbar(
                r.legit_loss,
                r.attacker_loss,
                xerr=[[r.legit_loss - r.legit_loss_low], [r.legit_loss_high - r.legit_loss]],
                yerr=[[r.attacker_loss - r.attacker_loss_low], [r.attacker_loss_high - r.attacker_loss]],
                marker="o",
                ms=7,
                capsize=3,
                color=color,
                mfc=color if r.effective else "white",
            )
            ax.annotate(
                f"{r.strength:g}x",
                (r.legit_loss, r.attacker_loss),
                xytext=(6, 6) if i % 2 == 0 else (6, -14),
                textcoords="offset points",
                color=color,
            )
        lows += [float(c.legit_loss_low.min()), float(c.attacker_loss_low.min())]
        highs += [float(c.legit_loss_high.max()), float(c.attacker_loss_high.max())]
    pad = 0.05 * (max(highs) - min(lows))
    lo, hi = min(lows) - pad, max(highs) + pad
    ax.fill_between([lo, hi], [lo, hi], [hi, hi], color="C3", alpha=0.08, label="attacker loses more (claim fails)")
    ax.plot([lo, hi], [lo, hi], ls="--", color="black", lw=1.2, label=PAPER_CLAIM_LABEL)
    if len(cells) and not cells.effective.all():
        ax.scatter([], [], marker="o", facecolors="white", edgecolors="grey", label="hollow: no separable effect")
    if cells.empty:
        ax.text(0.5, 0.5, "no judged task", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("legitimate user's loss (% of its undefended accuracy)")
    ax.set_ylabel("best attacker's loss (% of its undefended accuracy)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_detector(results: Mapping[str, Any]) -> Figure:
    """The duplicate detector against the paper's conclusion that query-pattern detection is
    inadequate for encoders (no number published; read here as: an attacker evades it and keeps
    its accuracy): per task (and threshold) the share of its undefended accuracy each user keeps
    (means with 95 % intervals over seeds), the legitimate user beside the outlier-dropping
    attacker, against the reference line at 100 %."""
    table = detector_table(results).reset_index()
    several = table.threshold.nunique() > 1
    groups = list(dict.fromkeys(zip(table.task, table.threshold)))
    users = sorted(dict.fromkeys(table.user), key=lambda u: u != LEGIT)
    fig, ax = plt.subplots(figsize=(min(FIGURE_WIDTH, max(6.4, 2.0 + 1.6 * len(groups))), 4.2))
    width = 0.8 / len(users)
    for i, user in enumerate(users):
        u = table[table.user == user].set_index(["task", "threshold"]).loc[groups]
        x = np.arange(len(groups)) + (i - (len(users) - 1) / 2) * width
        ax.bar(
            x,
            u.kept_share,
            width,
            yerr=[u.kept_share - u.kept_share_low, u.kept_share_high - u.kept_share],
            capsize=3,
            color=f"C{i}",
            label=user_label(user),
        )
    ax.axhline(100, ls="--", color="black", lw=1.2, label=DETECTOR_CLAIM_LABEL)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{t}, threshold {th:g}" if several else t for t, th in groups])
    ax.set_ylabel("accuracy kept (%)")
    ax.set_ylim(0, max(110.0, float(table.kept_share_high.max()) + 5))
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    return fig


@dataclass
class DefenseChapter:
    """Chapter 4's measurements (per-seed rows) and its settings."""

    results: dict[str, Any]

    @property
    def baselines(self) -> pd.DataFrame:
        return baseline_table(self.results)

    @property
    def noise(self) -> pd.DataFrame:
        return noise_table(self.results)

    @property
    def paired(self) -> pd.DataFrame:
        return paired_table(self.results)

    @property
    def matched(self) -> pd.DataFrame:
        return matched_table(self.results)

    @property
    def detector(self) -> pd.DataFrame:
        return detector_table(self.results)

    @property
    def detection(self) -> pd.DataFrame:
        return detection_table(self.results)

    def verdict(self) -> Verdict:
        return judge_defense(self.results)

    def saved(self) -> dict[str, Any]:
        """What the chapter saves (``chapter.save_results``): the per-seed results, which
        :func:`judge_defense` reads, and the verdict they give."""
        v = self.verdict()
        verdict = {"claim": v.claim, "evidence": v.evidence, "verdict": v.verdict, "paper": v.paper, "ours": v.ours}
        return {**self.results, **verdict}

    def numbers(self) -> dict[str, float]:
        """Numbers the prose quotes (glue names prefixed with the chapter's)."""
        r = self.results
        return {
            "defenses_queries": r["queries"],
            "defenses_n_seeds": len(r["seeds"]),
            "defenses_ref_std": r["reference_std"],
            "defenses_drop_ratio": r["drop_ratio"],
            "defenses_max_strength": max(r["strengths"]),
        }

    def sentences(self) -> dict[str, str]:
        """Sentences chosen by code from the results (glued as Markdown, names prefixed with the
        chapter's)."""
        return {
            "defenses_margin_text": margin_sentence(self.results),
            "defenses_noise_text": noise_sentence(self.results),
            "defenses_matched_text": matched_sentence(self.results),
            "defenses_detector_text": detector_sentence(self.results),
            "defenses_verdict_text": verdict_sentence(self.verdict(), paired_table(self.results)),
        }


def run(p: Params, cache: ResultCache | None = None) -> DefenseChapter:
    """Chapter 4 at the scale of ``p``: the victim, the judged tasks, baselines, the noise sweep
    and the duplicate detector, for every seed."""
    victim = train_victim(params.victim_config(p), device=p.device, progress=False)
    sizes = params.probe_sizes(p)
    queries = p.probe_train  # matched: as many queries as the legitimate user's labelled training images
    pool = role_splits(p.victim_dataset, {"victim": p.victim_num_train, "query": 4 * queries}, seed=p.seed)["query"]
    s = Setup(
        victim=victim,
        tasks=defense_tasks(p.downstream_sets, sizes, p.seed),
        pool=pool,
        seeds=list(p.seeds),
        num_queries=queries,
        epochs=p.defense_steal_epochs,
        losses=list(p.defense_attack_losses),
        loss_settings={k: dict(v) for k, v in p.loss_settings.items()},
        reference_std=round(victim_output_std(victim), 6),
        cache=cache if cache is not None else ResultCache(),
        device=p.device,
    )
    base = baseline_rows(s)
    noise = noise_rows(s, p.strengths, base)
    det, detection = detector_rows(s, p.thresholds)
    return DefenseChapter(
        {
            "claim": CLAIM,
            "tasks": [t.name for t in s.tasks],
            "seeds": s.seeds,
            "queries": s.num_queries,
            "strengths": sorted(set(float(x) for x in p.strengths)),
            "thresholds": [float(x) for x in p.thresholds],
            "losses": s.losses,
            "reference_std": s.reference_std,
            "drop_ratio": DROP_RATIO,
            "natural_outliers": natural_outliers(s),
            "baselines": base,
            "noise": noise,
            "detector": det,
            "detection": detection,
        }
    )
