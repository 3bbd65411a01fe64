"""Chapter 6, after the paper: later attacks and defenses on one benchmark.

Attacks: StolenEncoder (Liu et al., CCS 2022, arXiv:2201.05889) and Cont-Steal (Sha et al.,
CVPR 2023, arXiv:2201.07513) beside the paper's InfoNCE, and an adaptive attacker against B4B
(Dubinski et al., NeurIPS 2023, arXiv:2310.08571) with several accounts. Defenses: Gaussian noise
(the paper's) and B4B; ownership test: dataset inference for encoders (Dziedzic et al.,
NeurIPS 2022, arXiv:2209.09024).

What every number rests on
--------------------------
* **Victim**: the quick SimCLR victim (``p.victim_dataset``, shipped), behind one
  :class:`encsteal.api.EncoderAPI` per defense and seed.
* **Tasks**: the judged downstream tasks of chapter 4 (:func:`encsteal.experiments.defenses.defense_tasks`:
  the same probe images as the other chapters), scored with its linear probe
  (:func:`~encsteal.experiments.defenses.encoder_accuracy`,
  :func:`~encsteal.experiments.defenses.legitimate_accuracy`). A task is judged when the victim's
  margin over the seeds' random-init encoders has a 95 % interval above zero
  (:func:`~encsteal.experiments.defenses.baseline_table`).
* **Queries**: seed ``s`` draws ``budget + overlap`` images from the held-out pool of the victim's
  data set (:func:`encsteal.experiments.losses.query_pool` / ``seed_queries``: never the victim's
  training images); the first ``budget`` are every attack's queries, the rest the adaptive
  attackers' overlap images.
* **Legitimate user**: one per task; it sends its task's images (train, validation, test) through
  the same defended API and fits the probe on the answers it got.
* **Attacks** (:data:`ATTACKS`), one training budget for all (Adam 1e-3, batch 128, ``p.later_epochs``
  epochs; copies start from the seed's own ``stolen`` stream): InfoNCE (the paper's; the profile's
  temperature), StolenEncoder (lambda = ``p.stolenencoder_lambda``, k = 1; its lambda sweep on the
  undefended API) and Cont-Steal (one augmented view per image answered once). Every attack pays
  ``budget`` queries.
* **Adaptive attackers** (:data:`ADAPTIVE`), InfoNCE through :class:`encsteal.later.sybil.SybilAPI`
  with standardised answers: ``standardized`` (one account; its overlap images only serve the
  answer statistics) on the undefended API and against B4B, and ``sybil`` (``p.sybil_accounts``
  accounts, affine maps into account 0's space) against B4B. They pay ``budget`` plus the overlap
  images on every account.
* **Defenses**: none, zero-mean Gaussian noise (std ``p.later_noise_std`` times the victim's
  representation std) and B4B (:class:`encsteal.later.b4b.B4B`, its parameters from ``p.b4b_*``,
  ``reference_std`` = the representation std, so alpha is in those units), each seeded with the seed.
* **B4B coverage** is recorded per user: the legitimate users' from the run, the attackers' by
  replaying their query images through a fresh B4B (:func:`replay_coverage`), because an attack
  replayed from the cache sends nothing. Coverage depends only on the images, so the replay is
  exact for the plain queries (InfoNCE, StolenEncoder, the adaptive attackers' accounts); Cont-Steal
  sends augmented views drawn inside the attack and is not replayed.
* **Dataset inference**: members are ``p.di_images`` of the victim's training images (another
  ``p.di_images`` fit the mixture), non-members as many test images of the same data set; suspects:
  the victim, the undefended copies of every attack and seed (stolen), random-init encoders of
  every seed and the shipped SimCLR model on MNIST (independent), and SimCLR models trained like
  the victim on the same images with other seeds (``p.reference_seeds``; shown apart, since a
  membership test is meant to flag them).

:meth:`LaterChapter.results` holds per-seed rows of everything; the judges (:func:`judge_b4b`,
:func:`judge_sybil`, :func:`judge_dataset_inference`, :func:`judge_stolenencoder`) and every table,
figure and sentence of the chapter are computed from it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from encsteal import params, tables
from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.cache import ResultCache
from encsteal.data.imageset import ImageSet
from encsteal.data.registry import load
from encsteal.defenses import GaussianNoise
from encsteal.experiments import defenses as ch4
from encsteal.experiments.claims import Verdict
from encsteal.experiments.losses import query_pool, seed_queries
from encsteal.later.attacks import contsteal_config, stolenencoder_config
from encsteal.later.b4b import B4B, b4b_sigma, query_coverage
from encsteal.later.dataset_inference import DatasetInferenceConfig, dataset_inference, flag_rate
from encsteal.later.sybil import split_sizes, sybil_steal
from encsteal.params import Params
from encsteal.seeds import random_init_encoder
from encsteal.stats import holm, mean_interval, paired_difference
from encsteal.tables import NA
from encsteal.victims import Victim, train_victim, victim_training_set

ATTACKS: tuple[str, ...] = ("infonce", "stolenencoder", "contsteal")
"""The single-account attacks of the grid."""
ADAPTIVE: tuple[str, ...] = ("standardized", "sybil")
"""The adaptive InfoNCE attackers: standardised answers through one account, and sybils."""
DEFENSES: tuple[str, ...] = ("none", "noise", "b4b")
LEGIT, VICTIM, RANDOM = ch4.LEGIT, ch4.VICTIM, ch4.RANDOM
STOLEN, INDEPENDENT, SAME_DATA = "stolen", "independent", "same data"
"""Dataset-inference suspect groups (the victim is its own group)."""
MIN_SEEDS = 5
"""Seeds a judged cell needs."""
MIN_INDEPENDENT = 5
"""Independent models the false-positive rate needs."""
FEW_POINTS = 5.0
"""'Within a few points': the legitimate user's loss (accuracy points, 95 % interval) stays below this."""
ALPHA = 0.05
"""Family-wise level of each judge's Holm-corrected comparisons."""
BATCH = 128
"""Batch size of every stealing run."""
DETECTION_LEVEL = 0.5
"""Dataset inference 'flags stolen copies' when the detection rate's interval lies above this."""

ATTACK_NAMES = {
    "infonce": "InfoNCE",
    "stolenencoder": "StolenEncoder",
    "contsteal": "Cont-Steal",
    "standardized": "InfoNCE, standardised",
    "sybil": "InfoNCE, sybils",
    LEGIT: "legitimate user",
}
DEFENSE_NAMES = {"none": "none", "noise": "noise", "b4b": "B4B"}
TASK_NAMES = {
    "mnistm": "MNIST-M",
    "photocrops": "photo crops",
    "fmnist": "Fashion-MNIST",
    "digits": "digits",
    "mnist5k": "MNIST",
}

CLAIM_B4B = (
    "B4B keeps a legitimate user's accuracy within a few points while a single-account attacker loses much more."
)
CLAIM_SYBIL = "Sybil accounts with a learned mapping recover only part of what B4B takes from the attacker."
CLAIM_DI = "Dataset inference flags stolen copies and not independent encoders, without touching the victim's training."
CLAIM_LAMBDA = "StolenEncoder's augmented term (lambda > 0) makes a better copy than lambda = 0 for the same queries."
PAPER_B4B = "no number verified; B4B: legitimate users keep their quality, stolen copies lose utility"
PAPER_SYBIL = "no number verified; B4B: sybils with a mapping do not let the attacker pool answers freely"
PAPER_DI = "no number verified; stolen copies get tiny p-values, independent encoders do not"
PAPER_LAMBDA = "no number verified; its code's runners train with lambda = 20 (k = 1)"


def task_name(task: str) -> str:
    return TASK_NAMES.get(task, task)


def attack_name(attack: str, results: Mapping[str, Any] | None = None) -> str:
    """Reader's name of an attack (with its lambda or its accounts when ``results`` give them)."""
    name = ATTACK_NAMES.get(attack, attack)
    if results is not None and attack == "stolenencoder":
        return f"{name} (lambda {results['stolenencoder_lambda']:g})"
    if results is not None and attack == "sybil":
        return f"{name} ({results['sybil_accounts']} accounts)"
    if results is not None and attack == "standardized":
        return f"{name} (1 account)"
    return name


# ---- running the chapter ------------------------------------------------------------------------


def make_b4b(p: Params, reference_std: float, seed: int) -> B4B:
    """The chapter's B4B for ``seed``, with the parameters of ``p``."""
    return B4B(
        n_tables=p.b4b_tables,
        n_hyperplanes=p.b4b_hyperplanes,
        alpha=p.b4b_alpha,
        beta=p.b4b_beta,
        lam=p.b4b_lam,
        reference_std=reference_std,
        transform=p.b4b_transform,
        hash_source=p.b4b_hash,
        seed=seed,
    )


def attack_config(attack: str, p: Params, seed: int, augment_weight: float | None = None) -> StealConfig:
    """The :class:`~encsteal.attack.StealConfig` of ``attack`` (one of :data:`ATTACKS`; the adaptive
    attackers use ``"infonce"``) for ``seed`` at the chapter's training budget."""
    common = {"epochs": p.later_epochs, "batch_size": BATCH, "seed": seed}
    if attack == "infonce":
        return StealConfig(loss="infonce", loss_params=params.loss_params(p, "infonce"), **common)
    if attack == "stolenencoder":
        lam = p.stolenencoder_lambda if augment_weight is None else augment_weight
        return stolenencoder_config(augment_weight=float(lam), views=1, **common)
    if attack == "contsteal":
        return contsteal_config(**common)
    raise ValueError(f"Unknown attack {attack!r}. Allowed: {', '.join(ATTACKS)}.")


def seed_images(pool: ImageSet, seed: int, budget: int, overlap: int) -> tuple[ImageSet, torch.Tensor]:
    """Seed ``seed``'s query images (the first ``budget`` of its draw from ``pool``) and its
    overlap images (the next ``overlap``)."""
    drawn = seed_queries(pool, seed, budget + overlap)
    return drawn.subset(torch.arange(budget)), drawn.images[budget:]


def replay_coverage(factory: Callable[[], B4B], victim: Victim, calls: Sequence[tuple[str, torch.Tensor]]):
    """Send ``calls`` (user, images), in order, through a fresh B4B from ``factory`` and return per
    user its queries, final coverage (%) and the cost function there (x the reference std).
    Coverage depends only on the images a user sent, so this reproduces what a live attack met."""
    b4b = factory()
    api = EncoderAPI(victim.encoder, victim.head, defenses=[b4b])
    for user, images in calls:
        ch4.query_in_chunks(api, images, user)
    return {
        user: {"queries": api.queries(user), "coverage": b4b.coverage(user), "sigma": b4b.sigma(b4b.coverage(user))}
        for user in dict.fromkeys(u for u, _ in calls)
    }


def _check_sizes(p: Params, pool: ImageSet) -> None:
    if 2 * p.di_images > p.victim_num_train:
        raise ValueError(
            f"di_images={p.di_images} needs 2 x {p.di_images} of the victim's training images (fit and members), "
            f"but it has {p.victim_num_train}; use di_images <= {p.victim_num_train // 2}."
        )
    if p.later_budget + p.sybil_overlap > len(pool):
        raise ValueError(
            f"later_budget + sybil_overlap = {p.later_budget + p.sybil_overlap} exceed the {len(pool)} images "
            "of the attacker's pool; lower them."
        )
    if p.sybil_overlap < 2:
        raise ValueError("sybil_overlap must be >= 2 (the answer statistics need two images).")


@dataclass
class LaterChapter:
    """Everything chapter 6 measured (per-seed rows) and its settings."""

    data: dict[str, Any]

    def results(self) -> dict[str, Any]:
        """What the chapter saves (``chapter.save_results``) and the judges read."""
        return self.data


def run(p: Params, cache: ResultCache | None = None) -> LaterChapter:
    """Chapter 6 at the scale of ``p``: baselines, the attacks x defenses grid with the legitimate
    users, StolenEncoder's lambda sweep, the adaptive attackers against B4B, B4B's coverage and
    dataset inference, for every seed."""
    started = time.perf_counter()
    cache = cache if cache is not None else ResultCache()
    victim = train_victim(params.victim_config(p), device=p.device, progress=False)
    sizes = params.probe_sizes(p)
    pool = query_pool(
        p.victim_dataset,
        p.victim_dataset,
        p.victim_num_train,
        victim.config.split_seed,
        p.downstream_sets,
        sizes,
        p.seed,
    )
    _check_sizes(p, pool)
    reference_std = round(ch4.victim_output_std(victim), 6)
    tasks = ch4.defense_tasks(p.downstream_sets, sizes, p.seed)
    setup = ch4.Setup(
        victim=victim,
        tasks=tasks,
        pool=pool,
        seeds=list(p.seeds),
        num_queries=p.later_budget,
        epochs=p.later_epochs,
        losses=["infonce"],
        loss_settings={k: dict(v) for k, v in p.loss_settings.items()},
        reference_std=reference_std,
        cache=cache,
        device=p.device,
    )
    baselines = ch4.baseline_rows(setup)
    victim_acc = {r["task"]: r["accuracy"] for r in baselines if r["user"] == VICTIM}
    lambdas = sorted({float(x) for x in p.stolenencoder_sweep} - {float(p.stolenencoder_lambda)})
    cells: list[dict[str, Any]] = []
    legit: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    coverage: list[dict[str, Any]] = []
    mapping: list[dict[str, Any]] = []
    copies: dict[tuple[str, int], torch.nn.Module] = {}

    def api_for(defense: Any) -> EncoderAPI:
        return EncoderAPI(victim.encoder, victim.head, defenses=[defense] if defense is not None else [])

    def score(encoder: torch.nn.Module) -> dict[str, float]:
        return {task.name: ch4.encoder_accuracy(encoder, task.splits) for task in tasks}

    def add(rows: list[dict[str, Any]], accs: Mapping[str, float], **keys: Any) -> None:
        rows.extend({**keys, "task": task, "accuracy": acc} for task, acc in accs.items())

    for seed in p.seeds:
        queries, overlap = seed_images(pool, seed, p.later_budget, p.sybil_overlap)
        apis = {
            "none": api_for(None),
            "noise": api_for(GaussianNoise(mean=0.0, std=p.later_noise_std, reference_std=reference_std, seed=seed)),
            "b4b": api_for(make_b4b(p, reference_std, seed)),
        }
        for defense, api in apis.items():
            if defense == "none":  # deterministic: the victim's own accuracy
                for task in tasks:
                    sent = sum(len(task.splits[r]) for r in ch4.ROLES)
                    legit.append(
                        {"defense": defense, "seed": seed, "task": task.name, "accuracy": victim_acc[task.name]}
                        | {"queries": sent}
                    )
            else:
                for task in tasks:
                    user = f"legit-{task.name}"
                    acc = ch4.legitimate_accuracy(api, task.splits, user)
                    legit.append(
                        {"defense": defense, "seed": seed, "task": task.name, "accuracy": acc}
                        | {"queries": api.queries(user)}
                    )
                    if defense == "b4b":
                        b4b = api.defenses[0]
                        coverage.append(
                            {"seed": seed, "user": f"{LEGIT} ({task.name})", "queries": api.queries(user)}
                            | {"coverage": b4b.coverage(user), "sigma": b4b.sigma_history(user)[-1]}
                        )
            for attack in ATTACKS:
                result = steal(
                    api,
                    queries,
                    attack_config(attack, p, seed),
                    user=attack,
                    cache=cache,
                    device=p.device,
                    progress=False,
                )
                if defense == "none":
                    copies[(attack, seed)] = result.encoder
                add(cells, score(result.encoder), attack=attack, defense=defense, seed=seed, queries=result.queries)
        for lam in lambdas:
            result = steal(
                apis["none"],
                queries,
                attack_config("stolenencoder", p, seed, augment_weight=lam),
                user=f"stolenencoder-{lam:g}",
                cache=cache,
                device=p.device,
                progress=False,
            )
            add(sweep, score(result.encoder), **{"lambda": lam}, seed=seed, queries=result.queries)
        for attack, defense, accounts in (
            ("standardized", "none", 1),
            ("standardized", "b4b", 1),
            ("sybil", "b4b", p.sybil_accounts),
        ):
            res = sybil_steal(
                apis[defense],
                queries,
                overlap,
                attack_config("infonce", p, seed),
                n_accounts=accounts,
                user=attack,
                standardize=True,
                cache=cache,
                device=p.device,
                progress=False,
            )
            add(cells, score(res.steal.encoder), attack=attack, defense=defense, seed=seed, queries=res.total_queries)
            mapping += [
                {"seed": seed, "attack": attack, "account": a, "quality": q} for a, q in res.mapping_quality.items()
            ]
        factory = functools.partial(make_b4b, p, reference_std, seed)
        shares = split_sizes(len(queries), p.sybil_accounts)
        starts = np.cumsum([0, *shares])
        calls = [("attacker", queries.images), ("standardized#0", overlap), ("standardized#0", queries.images)]
        calls += [(f"sybil#{k}", overlap) for k in range(p.sybil_accounts)]
        calls += [(f"sybil#{k}", queries.images[starts[k] : starts[k + 1]]) for k in range(p.sybil_accounts)]
        for user, rec in replay_coverage(factory, victim, calls).items():
            coverage.append({"seed": seed, "user": user, **rec})
    curves = coverage_curves(p, victim, tasks, pool, reference_std)
    inference = dataset_inference_rows(p, victim, copies)
    return LaterChapter(
        {
            "tasks": [t.name for t in tasks],
            "seeds": list(p.seeds),
            "budget": p.later_budget,
            "epochs": p.later_epochs,
            "batch_size": BATCH,
            "reference_std": reference_std,
            "noise_std": float(p.later_noise_std),
            "stolenencoder_lambda": float(p.stolenencoder_lambda),
            "stolenencoder_sweep": lambdas,
            "b4b": {
                "n_tables": p.b4b_tables,
                "n_hyperplanes": p.b4b_hyperplanes,
                "alpha": p.b4b_alpha,
                "beta": p.b4b_beta,
                "lam": p.b4b_lam,
                "transform": p.b4b_transform,
                "hash_source": p.b4b_hash,
            },
            "sybil_accounts": p.sybil_accounts,
            "sybil_overlap": p.sybil_overlap,
            "di": {"images": p.di_images, "alpha": p.di_alpha, "n_components": DatasetInferenceConfig().n_components},
            "baselines": baselines,
            "legit": legit,
            "cells": cells,
            "sweep": sweep,
            "coverage": coverage,
            "curves": curves,
            "mapping": mapping,
            "dataset_inference": inference,
            "seconds": time.perf_counter() - started,
        }
    )


def coverage_curves(
    p: Params, victim: Victim, tasks: Sequence[ch4.Task], pool: ImageSet, reference_std: float, step: int = 100
) -> list[dict[str, Any]]:
    """Coverage (%) after every ``step`` queries through a fresh B4B of seed ``p.seeds[0]``: the
    attacker's queries, each legitimate user's images (train, validation, test) and one sybil
    account's (overlap images, then its share)."""
    seed = p.seeds[0]
    api = EncoderAPI(victim.encoder, victim.head, defenses=[make_b4b(p, reference_std, seed)])
    queries, overlap = seed_images(pool, seed, p.later_budget, p.sybil_overlap)
    share = split_sizes(len(queries), p.sybil_accounts)[0]
    streams = {"attacker": queries.images, "sybil#0": torch.cat([overlap, queries.images[:share]])}
    for task in tasks:
        streams[f"{LEGIT} ({task.name})"] = torch.cat(
            [task.splits[r].images for r in ch4.ROLES]
        )  # same size within a task
    rows = []
    for user, images in streams.items():
        sent, cov = query_coverage(api, images, user, batch_size=step)
        rows.append({"user": user, "queries": sent, "coverage": cov})
    return rows


def dataset_inference_rows(
    p: Params, victim: Victim, copies: Mapping[tuple[str, int], torch.nn.Module]
) -> list[dict[str, Any]]:
    """Dataset inference (:func:`encsteal.later.dataset_inference.dataset_inference`, the mixture
    fitted on each suspect's own representations) on every suspect; one row each with its group."""
    train = victim_training_set(victim.config)
    gen = torch.Generator().manual_seed(p.seed)
    order = torch.randperm(len(train), generator=gen)
    n = p.di_images
    fit, members = train.subset(order[:n]), train.subset(order[n : 2 * n])
    test = load(p.victim_dataset, "test")
    nonmembers = test.subset(torch.randperm(len(test), generator=gen)[:n])
    cfg = DatasetInferenceConfig(alpha=p.di_alpha, seed=p.seed)
    enc = victim.encoder
    suspects: list[tuple[str, str, int | None, torch.nn.Module]] = [(VICTIM, "victim", None, enc)]
    suspects += [(STOLEN, attack, seed, model) for (attack, seed), model in copies.items()]
    suspects += [
        (INDEPENDENT, "random-init", s, random_init_encoder(victim.config.arch, enc.in_channels, enc.input_size, s))
        for s in p.seeds
    ]
    other = params.other_data_config(p)
    suspects.append(
        (
            INDEPENDENT,
            f"SimCLR on {task_name(other.dataset)}",
            other.seed,
            train_victim(other, device=p.device, progress=False).encoder,
        )
    )
    suspects += [
        (SAME_DATA, "SimCLR, same images", cfg_.seed, train_victim(cfg_, device=p.device, progress=False).encoder)
        for cfg_ in params.reference_configs(p)
    ]
    rows = []
    for group, model, seed, encoder in suspects:
        result = dataset_inference(encoder, fit, members, nonmembers, cfg)
        rows.append({"group": group, "model": model, "seed": seed, **asdict(result)})
    return rows


# ---- reading the results -------------------------------------------------------------------------


def _frame(results: Mapping[str, Any], key: str) -> pd.DataFrame:
    if key not in results:
        raise ValueError(f"The results have no {key!r} rows; they have {sorted(results)}.")
    return pd.DataFrame(list(results[key]))


def _per_seed(frame: pd.DataFrame, **where: Any) -> pd.Series:
    sel = frame
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.set_index("seed")["accuracy"].sort_index()


def judged_tasks(results: Mapping[str, Any]) -> list[str]:
    """Tasks where the victim's margin over the random-init encoders is above zero (interval)."""
    return ch4.judged_tasks(results)


def accuracy(results: Mapping[str, Any], attack: str, defense: str, task: str) -> pd.Series:
    """Per seed, the accuracy (%) of ``attack``'s copy (or of the legitimate user, :data:`LEGIT`)
    through ``defense`` on ``task`` (empty when not measured)."""
    if attack == LEGIT:
        return _per_seed(_frame(results, "legit"), defense=defense, task=task)
    return _per_seed(_frame(results, "cells"), attack=attack, defense=defense, task=task)


def _rows_of(results: Mapping[str, Any]) -> list[str]:
    cells = _frame(results, "cells")
    present = list(dict.fromkeys(cells["attack"]))
    return [a for a in (*ATTACKS, *ADAPTIVE) if a in present] + [LEGIT]


def benchmark_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """The benchmark, long format: per (task, user, defense) the accuracy and the share of the
    victim's margin it recovers (``share``, %), each with mean and 95 % interval over seeds, and
    the queries the user paid."""
    cells, legit = _frame(results, "cells"), _frame(results, "legit")
    judged = set(judged_tasks(results))
    rows = []
    for task in results["tasks"]:
        for user in _rows_of(results):
            for defense in DEFENSES:
                acc = accuracy(results, user, defense, task)
                if len(acc) < 2:
                    continue
                paid = legit if user == LEGIT else cells[cells.attack == user]
                paid = paid[(paid.defense == defense) & (paid.task == task)]["queries"]
                a = mean_interval(acc)
                s = mean_interval(ch4.margin_shares(results, task, acc)) if task in judged else None
                rows.append(
                    {"task": task, "user": user, "defense": defense, "n": len(acc)}
                    | {"accuracy": a.mean, "accuracy_low": a.low, "accuracy_high": a.high}
                    | {
                        "share": s.mean if s else float("nan"),
                        "share_low": s.low if s else float("nan"),
                        "share_high": s.high if s else float("nan"),
                        "queries": float(paid.mean()),
                    }
                )
    return pd.DataFrame(rows)


def benchmark_table(results: Mapping[str, Any], value: str = "accuracy", task: str | None = None) -> pd.DataFrame:
    """Reader table of the benchmark: one row per attacker and the legitimate user, one column per
    defense (of ``task``; without a task, per task and defense), each cell ``mean [95 % interval]``
    of ``value`` (``"accuracy"``, %, or ``"share"`` of the victim's margin over the random-init
    encoders, %), one number where every seed gives the same value, "n/a" for a cell not run (the
    adaptive attackers only face the undefended API and B4B) or a share on a task not judged."""
    if value not in ("accuracy", "share"):
        raise ValueError(f"value must be 'accuracy' or 'share', got {value!r}.")
    if task is not None and task not in results["tasks"]:
        raise ValueError(f"Unknown task {task!r}; the results have {', '.join(results['tasks'])}.")
    frame = benchmark_frame(results)
    tasks_shown = [task] if task is not None else list(results["tasks"])
    frame = frame[frame.task.isin(tasks_shown)]

    def column(t: str, d: str) -> str:
        return DEFENSE_NAMES[d] if task is not None else f"{task_name(t)}: {DEFENSE_NAMES[d]}"

    table = pd.DataFrame(
        NA,
        index=[attack_name(u, results) for u in _rows_of(results)],
        columns=[column(t, d) for t in tasks_shown for d in DEFENSES],
    )
    digits = 1 if value == "accuracy" else 0
    for r in frame.itertuples():
        mean, low, high = getattr(r, value), getattr(r, f"{value}_low"), getattr(r, f"{value}_high")
        same = not tables.is_missing(low) and math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-9)  # deterministic
        cell = tables.number(float(mean), digits) if same else tables.interval(mean, low, high, digits)
        table.loc[attack_name(r.user, results), column(r.task, r.defense)] = cell
    table.index.name = "attacker / user"
    return table


def queries_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """What each attacker sends and pays per seed (queries, the same through every defense)."""
    cells = _frame(results, "cells")
    what = {
        "infonce": "each query image once, plain",
        "stolenencoder": "each query image once, plain (trained on k = 1 augmentation too)",
        "contsteal": "one augmented view of each query image, once",
        "standardized": "overlap images, then each query image once",
        "sybil": "overlap images to every account, then each account its share",
    }
    rows = {}
    for attack in _rows_of(results)[:-1]:
        paid = cells[cells.attack == attack]["queries"]
        rows[attack_name(attack, results)] = {
            "sent to the API": what[attack],
            "queries per seed": tables.number(int(round(float(paid.mean())))),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "attacker"
    return table


def b4b_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """B4B per user: queries, final coverage (%) and the noise std it set (x the representation
    std), means with 95 % intervals over seeds (sybil accounts pooled)."""
    cov = _frame(results, "coverage")
    cov["role"] = cov["user"].str.replace(r"#\d+$", "", regex=True)
    order = [u for u in dict.fromkeys(cov["role"]) if u.startswith(LEGIT)] + [
        u for u in ("attacker", "standardized", "sybil") if u in set(cov["role"])
    ]
    names = {
        "attacker": "attacker, 1 account (InfoNCE, StolenEncoder)",
        "standardized": "standardised answers, 1 account",
        "sybil": f"each sybil account ({results['sybil_accounts']})",
    }
    rows = {}
    for role in order:
        g = cov[cov.role == role].groupby("seed")[["queries", "coverage", "sigma"]].mean()
        name = names.get(role, role.replace(f"{LEGIT} (", "legitimate user (").replace(")", ")"))
        if role.startswith(LEGIT):
            name = f"legitimate user ({task_name(role[len(LEGIT) + 2 : -1])})"
        rows[name] = {
            "queries": tables.number(int(round(float(g["queries"].mean())))),
            "coverage (%)": _cell(g["coverage"], 1),
            "noise std (x rep. std)": _sigma_cell(g["sigma"]),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "user"
    return table


def _sig(x: float) -> str:
    """A positive quantity spanning orders of magnitude (a noise std): 2 significant digits below 10,
    whole numbers above."""
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.2g}"


def _sigma_cell(values: pd.Series) -> str:
    v = values.dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return NA
    if len(v) == 1 or np.allclose(v, v[0]):
        return _sig(float(v[0]))
    iv = mean_interval(v)
    return f"{_sig(iv.mean)} [{_sig(iv.low)}, {_sig(iv.high)}]"


def _cell(values: pd.Series, digits: int = 1) -> str:
    v = values.dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return NA
    if len(v) == 1 or np.allclose(v, v[0]):
        return tables.number(float(v[0]), digits)
    iv = mean_interval(v)
    return tables.interval(iv.mean, iv.low, iv.high, digits)


def sweep_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    """StolenEncoder on the undefended API: per (lambda, seed, task) the accuracy, the grid's lambda
    taken from the grid."""
    grid = _frame(results, "cells")
    grid = grid[(grid.attack == "stolenencoder") & (grid.defense == "none")].assign(
        **{"lambda": results["stolenencoder_lambda"]}
    )
    rows = [grid[["lambda", "seed", "task", "accuracy"]]]
    if results.get("sweep"):
        rows.append(_frame(results, "sweep")[["lambda", "seed", "task", "accuracy"]])
    return pd.concat(rows, ignore_index=True).sort_values(["lambda", "task", "seed"])


def sweep_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Reader table of StolenEncoder's lambda sweep: per lambda and task, accuracy and share of the
    victim's margin (%), ``mean [95 % interval]``."""
    frame = sweep_frame(results)
    judged = set(judged_tasks(results))
    rows = {}
    for lam in sorted(frame["lambda"].unique()):
        row = {}
        for task in results["tasks"]:
            acc = frame[(frame["lambda"] == lam) & (frame.task == task)].set_index("seed")["accuracy"].sort_index()
            row[f"{task_name(task)}: accuracy (%)"] = _cell(acc, 1)
            row[f"{task_name(task)}: share (%)"] = (
                _cell(ch4.margin_shares(results, task, acc), 0) if task in judged else NA
            )
        rows[f"{lam:g}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "lambda"
    return table


def baseline_reader_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per task: the victim's accuracy, the random-init encoders' and the margin (95 % intervals)."""
    base = ch4.baseline_table(results)
    rows = {
        task_name(t): {
            "victim (%)": tables.number(r.victim, 1),
            "random-init (%)": tables.interval(r.random_init, r.random_init_low, r.random_init_high),
            "margin (points)": tables.interval(r.margin, r.margin_low, r.margin_high),
            "judged": "yes" if r.judged else "no",
        }
        for t, r in base.iterrows()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "task"
    return table


def inference_frame(results: Mapping[str, Any]) -> pd.DataFrame:
    return _frame(results, "dataset_inference")


def _group_label(row: Any) -> str:
    if row.group == VICTIM:
        return "the victim"
    if row.group == STOLEN:
        return f"stolen: {ATTACK_NAMES.get(row.model, row.model)}"
    return f"{row.group}: {row.model}"


def inference_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Dataset inference per group of suspects: models, how many were flagged, the mean
    log-likelihood gap (members - non-members) with its interval, the median and smallest p-value."""
    frame = inference_frame(results)
    frame["label"] = [_group_label(r) for r in frame.itertuples()]
    rows = {}
    for label, g in frame.groupby("label", sort=False):
        rows[label] = {
            "models": tables.number(len(g)),
            "flagged": f"{int(g.flagged.sum())} of {len(g)}",
            "gap (log-lik.)": _cell(g["delta"], 2),
            "median p": f"{float(g.p_value.median()):.2g}",
            "smallest p": f"{float(g.p_value.min()):.2g}",
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "suspects"
    return table


def inference_rates(results: Mapping[str, Any]) -> dict[str, Any]:
    """Detection rate on the stolen copies and false-positive rate on the independent models
    (Clopper-Pearson 95 % intervals), and the victim's own test."""
    frame = inference_frame(results)
    out: dict[str, Any] = {}
    for key, group in (("detection", STOLEN), ("false_positive", INDEPENDENT)):
        flags = frame[frame.group == group]["flagged"].astype(bool).tolist()
        out[key] = asdict(flag_rate(flags)) if flags else None
    victim = frame[frame.group == VICTIM]
    out["victim"] = None if victim.empty else victim.iloc[0].to_dict()
    return out


# ---- the judges -----------------------------------------------------------------------------------


def _seeds_ok(results: Mapping[str, Any]) -> bool:
    return len(results.get("seeds", [])) >= MIN_SEEDS


def _not_evaluated(claim: str, why: str, paper: str) -> Verdict:
    return Verdict(claim, why, "not evaluated", paper=paper, ours=NA)


def _margins(results: Mapping[str, Any]) -> str:
    base = ch4.baseline_table(results)
    return "; ".join(
        f"{t}: victim {r.victim:.1f} % vs random-init {r.random_init:.1f} % (margin {r.margin:.1f} "
        f"[{r.margin_low:.1f}, {r.margin_high:.1f}])"
        for t, r in base.iterrows()
    )


def _has(results: Mapping[str, Any], attack: str, defense: str) -> bool:
    cells = _frame(results, "cells")
    return bool(((cells.attack == attack) & (cells.defense == defense)).any())


def best_attacker(results: Mapping[str, Any], task: str, defense: str = "b4b") -> str:
    """The single-account attack whose copy is best (mean accuracy) through ``defense`` on ``task``."""
    means = {a: float(accuracy(results, a, defense, task).mean()) for a in ATTACKS if _has(results, a, defense)}
    if not means:
        raise ValueError(f"No single-account attack was measured through {defense!r}.")
    return max(means, key=means.get)


def b4b_cells(results: Mapping[str, Any], alpha: float = ALPHA, few: float = FEW_POINTS) -> pd.DataFrame:
    """Per judged task: the legitimate user's loss under B4B (accuracy points, per seed against its
    undefended accuracy) and the best single-account attacker's (against its own undefended copy),
    with 95 % intervals, their paired difference (attacker - legitimate) and Holm's decision over
    the tasks; ``holds``: the legitimate loss's interval lies below ``few`` points and the attacker
    loses separably more, by more than ``few`` points on average."""
    rows = []
    for task in judged_tasks(results):
        best = best_attacker(results, task)
        legit = accuracy(results, LEGIT, "none", task) - accuracy(results, LEGIT, "b4b", task)
        att = accuracy(results, best, "none", task) - accuracy(results, best, "b4b", task)
        li, ai = mean_interval(legit.values), mean_interval(att.values)
        diff, p = paired_difference(att.values, legit.values)
        rows.append(
            {"task": task, "attacker": best, "legit": li.mean, "legit_low": li.low, "legit_high": li.high}
            | {"att": ai.mean, "att_low": ai.low, "att_high": ai.high}
            | {"diff": diff.mean, "diff_low": diff.low, "diff_high": diff.high, "p": p}
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["separable"] = holm(frame["p"].tolist(), alpha)
    frame["holds"] = (frame.legit_high <= few) & frame.separable & (frame["diff"] > few)
    return frame


def judge_b4b(results: Mapping[str, Any], alpha: float = ALPHA, few: float = FEW_POINTS) -> Verdict:
    """L1 (B4B, arXiv:2310.08571): the legitimate user stays within a few points, the single-account
    attacker loses much more.

    Rules, per judged task (the victim's margin over the random-init encoders above zero): the
    legitimate user's loss under B4B (its undefended accuracy minus its accuracy through B4B, per
    seed) has a 95 % interval below ``few`` points, and the best single-account attacker under B4B
    loses separably more than the legitimate user (paired over seeds, Holm over the tasks at
    ``alpha``) and more than ``few`` points more on average (:func:`b4b_cells`).

    Verdict: "not evaluated" with fewer than :data:`MIN_SEEDS` seeds, no B4B cells or no judged
    task; "reproduced" when the rule holds on every judged task, "not reproduced" when on none,
    "partly reproduced" otherwise.
    """
    if not _seeds_ok(results):
        return _not_evaluated(CLAIM_B4B, f"fewer than {MIN_SEEDS} seeds", PAPER_B4B)
    if not any(_has(results, a, "b4b") for a in ATTACKS):
        return _not_evaluated(CLAIM_B4B, "no attack was run against B4B", PAPER_B4B)
    cells = b4b_cells(results, alpha, few)
    if cells.empty:
        return _not_evaluated(CLAIM_B4B, f"no judged task ({_margins(results)})", PAPER_B4B)
    parts = [
        f"{task_name(c.task)}: legitimate user loses {c.legit:.1f} [{c.legit_low:.1f}, {c.legit_high:.1f}] points, "
        f"best attacker ({ATTACK_NAMES[c.attacker]}) {c.att:.1f} [{c.att_low:.1f}, {c.att_high:.1f}], difference "
        f"{c.diff:+.1f} [{c.diff_low:+.1f}, {c.diff_high:+.1f}] ({'holds' if c.holds else 'fails'})"
        for c in cells.itertuples()
    ]
    n = int(cells.holds.sum())
    verdict = "reproduced" if n == len(cells) else "not reproduced" if n == 0 else "partly reproduced"
    ours = "; ".join(
        f"{task_name(c.task)}: user loses {c.legit:.1f} [{c.legit_low:.1f}, {c.legit_high:.1f}], "
        f"attacker {c.att:.0f} pts"
        for c in cells.itertuples()
    )
    return Verdict(CLAIM_B4B, "; ".join(parts), verdict, paper=PAPER_B4B, ours=ours)


def sybil_cells(results: Mapping[str, Any], alpha: float = ALPHA) -> pd.DataFrame:
    """Per judged task, for the InfoNCE attacker with standardised answers: what B4B takes from it
    with one account (``taken`` = undefended - B4B, per seed), what the sybils win back
    (``gain`` = sybils - one account) and what they still miss (``rest`` = undefended - sybils), with
    95 % intervals; Holm over all these one-against-zero tests decides which are separable."""
    rows = []
    for task in judged_tasks(results):
        free = accuracy(results, "standardized", "none", task)
        one = accuracy(results, "standardized", "b4b", task)
        many = accuracy(results, "sybil", "b4b", task)
        row: dict[str, Any] = {"task": task}
        for key, values in (("taken", free - one), ("gain", many - one), ("rest", free - many)):
            iv, p = paired_difference(values.values, np.zeros(len(values)))
            row |= {key: iv.mean, f"{key}_low": iv.low, f"{key}_high": iv.high, f"{key}_p": p}
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    keys = ("taken", "gain", "rest")
    decisions = holm([r[f"{k}_p"] for r in rows for k in keys], alpha)
    for i, k in enumerate(keys):
        frame[f"{k}_sep"] = [decisions[3 * j + i] and rows[j][k] > 0 for j in range(len(rows))]
    frame["outcome"] = [
        "nothing taken"
        if not r.taken_sep
        else "part recovered"
        if r.gain_sep and r.rest_sep
        else "all recovered"
        if r.gain_sep
        else "nothing recovered"
        for r in frame.itertuples()
    ]
    return frame


def judge_sybil(results: Mapping[str, Any], alpha: float = ALPHA) -> Verdict:
    """L2 (B4B, arXiv:2310.08571): sybils with a learned mapping recover only part of what B4B takes.

    The attacker is InfoNCE with standardised answers (which undo B4B's per-user transform), so the
    only difference between its one-account and its sybil runs is the number of accounts. Per
    judged task (:func:`sybil_cells`): B4B must take something from the one-account attacker
    (``taken`` separably above 0), else the task says nothing; the claim holds on a task when the
    sybils win back something (``gain`` separably above 0) and not all of it (``rest`` separably
    above 0). Holm over all tests at ``alpha``.

    Verdict: "not evaluated" with fewer than :data:`MIN_SEEDS` seeds, no sybil cells, or no task
    where B4B took something; "reproduced" when the claim holds on every such task, "not
    reproduced" when on none (the sybils recover nothing, or everything), "partly reproduced" otherwise.
    """
    if not _seeds_ok(results):
        return _not_evaluated(CLAIM_SYBIL, f"fewer than {MIN_SEEDS} seeds", PAPER_SYBIL)
    if not (_has(results, "sybil", "b4b") and _has(results, "standardized", "b4b")):
        return _not_evaluated(CLAIM_SYBIL, "no sybil attack was run against B4B", PAPER_SYBIL)
    cells = sybil_cells(results, alpha)
    live = cells[cells.outcome != "nothing taken"] if len(cells) else cells
    if live.empty:
        why = "B4B took nothing separable from the one-account attacker" if len(cells) else "no judged task"
        return _not_evaluated(CLAIM_SYBIL, f"{why} ({_margins(results)})", PAPER_SYBIL)
    parts = [
        f"{task_name(c.task)}: B4B takes {c.taken:.1f} [{c.taken_low:.1f}, {c.taken_high:.1f}] points from one "
        f"account, {results['sybil_accounts']} sybils win back {c.gain:.1f} [{c.gain_low:.1f}, {c.gain_high:.1f}] "
        f"and miss {c.rest:.1f} [{c.rest_low:.1f}, {c.rest_high:.1f}] ({c.outcome})"
        for c in live.itertuples()
    ]
    idle = len(cells) - len(live)
    n = int((live.outcome == "part recovered").sum())
    verdict = "reproduced" if n == len(live) else "not reproduced" if n == 0 else "partly reproduced"
    evidence = "; ".join(parts) + (f"; {idle} task(s) where B4B took nothing separable" if idle else "")
    ours = "; ".join(
        f"{task_name(c.task)}: win back {c.gain:.1f} [{c.gain_low:.1f}, {c.gain_high:.1f}] of {c.taken:.1f} pts"
        for c in live.itertuples()
    )
    return Verdict(CLAIM_SYBIL, evidence, verdict, paper=PAPER_SYBIL, ours=ours)


def _pct(rate: Mapping[str, Any]) -> str:
    return (
        f"{rate['k']} of {rate['n']} ({100 * rate['rate']:.0f} % [{100 * rate['low']:.0f}, {100 * rate['high']:.0f}])"
    )


def judge_dataset_inference(results: Mapping[str, Any]) -> Verdict:
    """L3 (dataset inference, arXiv:2209.09024): stolen copies are flagged, independent encoders not.

    Detection rate: the share of stolen copies (undefended copies of every attack and seed)
    flagged at the chapter's level (p below ``di.alpha``); false-positive rate: the share of
    independent models (random-init encoders, SimCLR on other data) flagged; Clopper-Pearson 95 %
    intervals. Models trained on the victim's own images with other seeds are not counted in
    either rate (a membership test is meant to flag them).

    Verdict: "not evaluated" with fewer than :data:`MIN_SEEDS` stolen copies or
    :data:`MIN_INDEPENDENT` independent models; "not reproduced" when the false-positive rate's
    interval lies above the level, or the detection rate's interval lies below
    :data:`DETECTION_LEVEL`; "reproduced" when the false-positive rate is at most the level and
    the detection rate's interval lies above :data:`DETECTION_LEVEL`; "partly reproduced" otherwise.
    The victim's own test is reported beside.
    """
    frame = inference_frame(results)
    level = float(results["di"]["alpha"])
    n_stolen, n_indep = int((frame.group == STOLEN).sum()), int((frame.group == INDEPENDENT).sum())
    if n_stolen < MIN_SEEDS or n_indep < MIN_INDEPENDENT:
        return _not_evaluated(
            CLAIM_DI, f"{n_stolen} stolen copies and {n_indep} independent models tested (too few)", PAPER_DI
        )
    rates = inference_rates(results)
    det, fp, victim = rates["detection"], rates["false_positive"], rates["victim"]
    victim_text = (
        f"; the victim itself: gap {victim['delta']:.2f}, p = {victim['p_value']:.2g} "
        f"({'flagged' if victim['flagged'] else 'not flagged'})"
        if victim
        else ""
    )
    evidence = (
        f"at p < {level:g}, stolen copies flagged {_pct(det)}, independent models flagged {_pct(fp)}" + victim_text
    )
    if fp["low"] > level or det["high"] < DETECTION_LEVEL:
        verdict = "not reproduced"
    elif fp["rate"] <= level and det["low"] > DETECTION_LEVEL:
        verdict = "reproduced"
    else:
        verdict = "partly reproduced"
    ours = f"flagged: stolen {_pct(det)}, independent {_pct(fp)}"
    if victim:
        ours += f"; victim p = {victim['p_value']:.2g}"
    return Verdict(CLAIM_DI, evidence, verdict, paper=PAPER_DI, ours=ours)


def lambda_cells(results: Mapping[str, Any], alpha: float = ALPHA) -> pd.DataFrame:
    """Per judged task and lambda > 0: StolenEncoder's accuracy minus that with lambda = 0, paired
    over seeds, with its 95 % interval and Holm's decision over all (lambda, task) pairs."""
    frame = sweep_frame(results)
    rows = []
    if not (frame["lambda"] == 0).any():
        return pd.DataFrame(rows)
    for task in judged_tasks(results):
        base = frame[(frame["lambda"] == 0) & (frame.task == task)].set_index("seed")["accuracy"].sort_index()
        for lam in sorted(x for x in frame["lambda"].unique() if x > 0):
            acc = frame[(frame["lambda"] == lam) & (frame.task == task)].set_index("seed")["accuracy"].sort_index()
            diff, p = paired_difference(acc.values, base.values)
            rows.append(
                {"task": task, "lam": float(lam), "diff": diff.mean, "low": diff.low, "high": diff.high, "p": p}
            )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["separable"] = holm(out["p"].tolist(), alpha)
    return out


def judge_stolenencoder(results: Mapping[str, Any], alpha: float = ALPHA) -> Verdict:
    """L4 (StolenEncoder, arXiv:2201.05889): lambda > 0 beats lambda = 0 at the same queries.

    The grid's lambda (its code's runners' value) against lambda = 0 on the undefended API, paired
    over seeds per judged task, Holm over every (lambda > 0, task) comparison (:func:`lambda_cells`).
    Verdict: "not evaluated" with fewer than :data:`MIN_SEEDS` seeds, no lambda = 0 run or no judged
    task; "reproduced" when the grid's lambda is separably better on every judged task, "not
    reproduced" when on none, "partly reproduced" otherwise. The other lambdas are reported beside.
    """
    if not _seeds_ok(results):
        return _not_evaluated(CLAIM_LAMBDA, f"fewer than {MIN_SEEDS} seeds", PAPER_LAMBDA)
    cells = lambda_cells(results, alpha)
    if cells.empty:
        return _not_evaluated(CLAIM_LAMBDA, "no lambda = 0 run or no judged task", PAPER_LAMBDA)
    lam = float(results["stolenencoder_lambda"])
    grid = cells[cells["lam"] == lam]
    if grid.empty:
        return _not_evaluated(CLAIM_LAMBDA, f"the grid's lambda {lam:g} was not compared", PAPER_LAMBDA)
    better = grid.separable & (grid["diff"] > 0)
    parts = [
        f"{task_name(c.task)}, lambda {c.lam:g} - lambda 0: {c.diff:+.1f} [{c.low:+.1f}, {c.high:+.1f}] points"
        + (" (separable)" if c.separable else "")
        for c in cells.itertuples()
    ]
    n = int(better.sum())
    verdict = "reproduced" if n == len(grid) else "not reproduced" if n == 0 else "partly reproduced"
    ours = "; ".join(
        f"{task_name(c.task)}: {c.diff:+.1f} [{c.low:+.1f}, {c.high:+.1f}] pts vs lambda 0" for c in grid.itertuples()
    )
    return Verdict(CLAIM_LAMBDA, "; ".join(parts), verdict, paper=PAPER_LAMBDA, ours=ours)


def verdicts(results: Mapping[str, Any]) -> dict[str, Verdict]:
    """Every judge of the chapter on ``results``, keyed by the claim's id."""
    return {
        "L1": judge_b4b(results),
        "L2": judge_sybil(results),
        "L3": judge_dataset_inference(results),
        "L4": judge_stolenencoder(results),
    }


# ---- sentences chosen by code ---------------------------------------------------------------------


def _iv(values: Sequence[float] | pd.Series, digits: int = 1) -> str:
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return tables.number(float(v[0]), digits) if len(v) else NA
    iv = mean_interval(v)
    return tables.interval(iv.mean, iv.low, iv.high, digits)


def margin_sentence(results: Mapping[str, Any]) -> str:
    """The victim's margin over the random-init encoders on each task, and whether it is judged."""
    base = ch4.baseline_table(results)
    parts = [
        f"on {task_name(t)} the victim's probe reaches {r.victim:.1f} % and the random-init encoders "
        f"{r.random_init:.1f} % [{r.random_init_low:.1f}, {r.random_init_high:.1f}], a margin of {r.margin:.1f} points"
        + ("" if r.judged else " whose interval is not above zero, so the task is not judged")
        for t, r in base.iterrows()
    ]
    return "With the legitimate user's labelled images, " + "; ".join(parts) + "."


def coverage_summary(results: Mapping[str, Any]) -> pd.DataFrame:
    """Per B4B user role (legitimate users per task, ``attacker``, ``standardized``, ``sybil``): mean
    queries, final coverage (%) and sigma (x the representation std) over seeds (sybil accounts pooled)."""
    cov = _frame(results, "coverage")
    cov["role"] = cov["user"].str.replace(r"#\d+$", "", regex=True)
    return cov.groupby("role", sort=False)[["queries", "coverage", "sigma"]].mean()


def coverage_sentence(results: Mapping[str, Any]) -> str:
    """Where B4B's beta lies between the users' coverages, and the noise each user's answers got."""
    summary = coverage_summary(results)
    beta = float(results["b4b"]["beta"])
    legit = [r for r in summary.index if r.startswith(LEGIT)]
    parts = []
    for role in legit:
        r = summary.loc[role]
        side = "below" if r.coverage < beta else "above"
        parts.append(
            f"the {task_name(role[len(LEGIT) + 2 : -1])} user ends at {r.coverage:.0f} % after its "
            f"{r.queries:,.0f} queries ({side} beta; its last answers get noise of {_sig(r.sigma)} times the "
            "representation's std)"
        )
    text = f"With beta = {beta:g} %, " + "; ".join(parts)
    if "attacker" in summary.index:
        a = summary.loc["attacker"]
        text += (
            f"; the attacker's {a.queries:,.0f} plain queries reach {a.coverage:.0f} % "
            f"({'above' if a.coverage > beta else 'below'} beta: noise {_sig(a.sigma)} times the std)"
        )
    if "sybil" in summary.index:
        s = summary.loc["sybil"]
        text += (
            f", while each of the {results['sybil_accounts']} sybil accounts sends {s.queries:,.0f} and reaches "
            f"{s.coverage:.0f} % (noise {_sig(s.sigma)} times the std)"
        )
    return text + " (means over seeds)."


def _share_text(results: Mapping[str, Any], attack: str, defense: str, task: str) -> str:
    acc = accuracy(results, attack, defense, task)
    return f"{_iv(ch4.margin_shares(results, task, acc), 0)} %"


def grid_sentence(results: Mapping[str, Any]) -> str:
    """What the undefended copies recover, and Cont-Steal against InfoNCE (paired, not judged)."""
    parts = []
    for task in judged_tasks(results):
        shares = ", ".join(
            f"{ATTACK_NAMES[a]} {_share_text(results, a, 'none', task)}" for a in ATTACKS if _has(results, a, "none")
        )
        parts.append(f"on {task_name(task)} {shares}")
    if parts:
        text = "Without a defense the copies recover, of the victim's margin over a random-init encoder, " + "; ".join(
            parts
        )
    else:
        text = "No task was judged, so no share of the victim's margin is reported"
    if _has(results, "contsteal", "none") and _has(results, "infonce", "none"):
        comps = []
        for task in results["tasks"]:
            diff, _ = paired_difference(
                accuracy(results, "contsteal", "none", task).values, accuracy(results, "infonce", "none", task).values
            )
            verdict = (
                "not separable" if not diff.excludes(0) else "separably higher" if diff.mean > 0 else "separably lower"
            )
            comps.append(
                f"{diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}] points on {task_name(task)} ({verdict})"
            )
        text += ". Cont-Steal against InfoNCE at the same queries: " + "; ".join(comps)
    return text + "."


def noise_sentence(results: Mapping[str, Any]) -> str:
    """What the Gaussian noise costs the legitimate user and each attacker (accuracy points)."""
    parts = []
    for task in results["tasks"]:
        legit = accuracy(results, LEGIT, "none", task) - accuracy(results, LEGIT, "noise", task)
        att = [
            f"{ATTACK_NAMES[a]} {_iv(accuracy(results, a, 'none', task) - accuracy(results, a, 'noise', task))}"
            for a in ATTACKS
            if _has(results, a, "noise")
        ]
        parts.append(
            f"on {task_name(task)} the legitimate user loses {_iv(legit)} points, the attackers " + ", ".join(att)
        )
    return f"Noise of {results['noise_std']:g} times the representation's std: " + "; ".join(parts) + "."


def b4b_sentence(results: Mapping[str, Any]) -> str:
    """What B4B costs the legitimate user and the best single-account attacker, task by task."""
    cells = b4b_cells(results)
    if cells.empty:
        return "No task was judged, so B4B's costs are not compared."
    parts = []
    for c in cells.itertuples():
        how = (
            "within a few points, and the attacker loses separably more"
            if c.holds
            else "more than a few points"
            if c.legit_high > FEW_POINTS
            else "within a few points, but the attacker does not lose separably more by more than a few points"
        )
        parts.append(
            f"on {task_name(c.task)} the legitimate user loses {c.legit:.1f} [{c.legit_low:.1f}, {c.legit_high:.1f}] "
            f"points and the best single-account attacker ({ATTACK_NAMES[c.attacker]}) {c.att:.1f} "
            f"[{c.att_low:.1f}, {c.att_high:.1f}]: {how}"
        )
    return "Through B4B, " + "; ".join(parts) + "."


def adaptive_sentence(results: Mapping[str, Any]) -> str:
    """The per-user transform's share of B4B's effect (naive vs standardised InfoNCE, one account)
    and what the sybils win back."""
    if not (_has(results, "standardized", "b4b") and _has(results, "infonce", "b4b")):
        return "The adaptive attackers were not run."
    parts = []
    for task in results["tasks"]:
        diff, _ = paired_difference(
            accuracy(results, "standardized", "b4b", task).values, accuracy(results, "infonce", "b4b", task).values
        )
        parts.append(f"{diff.mean:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}] points on {task_name(task)}")
    text = (
        "Standardising the answers (one account, same queries plus the overlap images) changes the InfoNCE "
        "attacker's accuracy through B4B by " + "; ".join(parts)
    )
    cells = sybil_cells(results)
    if not cells.empty:
        text += (
            ". With "
            + f"{results['sybil_accounts']} accounts, "
            + "; ".join(
                f"on {task_name(c.task)} the sybils win back {c.gain:.1f} [{c.gain_low:.1f}, {c.gain_high:.1f}] of the "
                f"{c.taken:.1f} [{c.taken_low:.1f}, {c.taken_high:.1f}] points B4B takes from one account ({c.outcome})"
                for c in cells.itertuples()
            )
        )
    if _has(results, "sybil", "b4b") and _has(results, "infonce", "none"):
        text += (
            ". Against the plain InfoNCE attacker on the undefended API, the sybils' copy through B4B differs by "
            + (
                "; ".join(
                    f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] points on {task_name(task)}"
                    for task in results["tasks"]
                    for d in [
                        paired_difference(
                            accuracy(results, "sybil", "b4b", task).values,
                            accuracy(results, "infonce", "none", task).values,
                        )[0]
                    ]
                )
            )
        )
    quality = _frame(results, "mapping")
    quality = quality[quality.attack == "sybil"]["quality"] if len(quality) else quality
    if len(quality):
        text += f". Their maps align the accounts' held-out answers with a mean cosine of {float(quality.mean()):.3f}"
    return text + "."


def sweep_sentence(results: Mapping[str, Any]) -> str:
    """StolenEncoder's lambda against lambda = 0, per judged task."""
    cells = lambda_cells(results)
    if cells.empty:
        if not (sweep_frame(results)["lambda"] == 0).any():
            return "No lambda = 0 run was measured, so the augmented term is not compared."
        return "No task was judged, so the augmented term is not compared."
    parts = [
        f"lambda {c.lam:g} on {task_name(c.task)}: {c.diff:+.1f} [{c.low:+.1f}, {c.high:+.1f}] "
        f"points against lambda 0 ({'separable' if c.separable else 'not separable'})"
        for c in cells.itertuples()
    ]
    return "At the same queries, " + "; ".join(parts) + "."


def inference_sentence(results: Mapping[str, Any]) -> str:
    """Dataset inference in words: the victim's own test, the rates, the same-data models."""
    rates = inference_rates(results)
    frame = inference_frame(results)
    level = results["di"]["alpha"]
    v = rates["victim"]
    text = (
        f"On the victim itself the members' mean log-likelihood minus the non-members' is {v['delta']:.2f} "
        f"(p = {v['p_value']:.2g}): it is {'flagged' if v['flagged'] else 'not flagged'} at p < {level:g}"
    )
    if rates["detection"] and rates["false_positive"]:
        text += (
            f". Stolen copies flagged: {_pct(rates['detection'])}; independent models flagged: "
            f"{_pct(rates['false_positive'])}"
        )
    same = frame[frame.group == SAME_DATA]
    if len(same):
        text += (
            f". SimCLR models trained on the victim's own images with other seeds, which a membership test should "
            f"flag: {int(same.flagged.sum())} of {len(same)} flagged"
        )
    return text + "."


def verdict_sentence(claim_id: str, verdict: Verdict) -> str:
    """One claim's verdict in the prose: the claim, the verdict in bold and the judge's evidence."""
    return f"**{claim_id}**, *{verdict.claim}* **{verdict.verdict.capitalize()}** at this scale: {verdict.evidence}."


def sentences(results: Mapping[str, Any]) -> dict[str, str]:
    """Every sentence the chapter glues (Markdown), keyed by its glue name."""
    out = {
        "later_margin_text": margin_sentence(results),
        "later_coverage_text": coverage_sentence(results),
        "later_grid_text": grid_sentence(results),
        "later_noise_text": noise_sentence(results),
        "later_b4b_text": b4b_sentence(results),
        "later_adaptive_text": adaptive_sentence(results),
        "later_sweep_text": sweep_sentence(results),
        "later_di_text": inference_sentence(results),
    }
    for cid, v in verdicts(results).items():
        out[f"later_verdict_{cid}"] = verdict_sentence(cid, v)
    return out


def numbers(results: Mapping[str, Any]) -> dict[str, float]:
    """Numbers the prose quotes (glued as ``later_<name>``)."""
    b4b = results["b4b"]
    return {
        "later_budget": results["budget"],
        "later_epochs": results["epochs"],
        "later_n_seeds": len(results["seeds"]),
        "later_ref_std": results["reference_std"],
        "later_noise_std": results["noise_std"],
        "later_lambda": results["stolenencoder_lambda"],
        "later_tables": b4b["n_tables"],
        "later_hyperplanes": b4b["n_hyperplanes"],
        "later_buckets": 2 ** b4b["n_hyperplanes"],
        "later_alpha": b4b["alpha"],
        "later_beta": b4b["beta"],
        "later_lam": b4b["lam"],
        "later_accounts": results["sybil_accounts"],
        "later_overlap": results["sybil_overlap"],
        "later_di_images": results["di"]["images"],
        "later_di_alpha": results["di"]["alpha"],
        "later_di_components": results["di"]["n_components"],
        "later_seconds": results["seconds"],
    }


# ---- figures -----------------------------------------------------------------------------------------


def _role(user: str) -> str:
    """A B4B user's role: its name without the account number (``sybil#2`` -> ``sybil``)."""
    return user.split("#", 1)[0]


def _role_label(role: str) -> str:
    if role.startswith(LEGIT):
        return f"legitimate user, {task_name(role[len(LEGIT) + 2 : -1])}"
    return {
        "attacker": "attacker (1 account)",
        "standardized": "standardised answers (1 account)",
        "sybil": "a sybil account",
    }.get(role, role)


def plot_coverage(results: Mapping[str, Any]) -> Figure:
    """Left: each user's B4B coverage (%) against its queries (one seed), with beta; right: the cost
    function sigma(coverage) (x the representation std, log scale) with each user's final coverage
    (mean over seeds). One colour per user."""
    b4b = results["b4b"]
    summary = coverage_summary(results)
    roles = list(dict.fromkeys([*(_role(c["user"]) for c in results["curves"]), *summary.index]))
    colour = {role: f"C{i}" for i, role in enumerate(roles)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for curve in results["curves"]:
        role = _role(curve["user"])
        left.plot(curve["queries"], curve["coverage"], marker=".", color=colour[role], label=_role_label(role))
    left.axhline(b4b["beta"], ls="--", color="grey", lw=1, label=f"beta = {b4b['beta']:g} %")
    left.set_xlabel("queries sent by the user")
    left.set_ylabel("B4B coverage (%)")
    left.legend(fontsize=7)
    c = np.linspace(0.0, 100.0, 401)
    sigma = b4b_sigma(c, b4b["alpha"], b4b["beta"], b4b["lam"])
    right.semilogy(c[1:], sigma[1:], color="black", lw=1, label="cost function")
    right.axvline(b4b["beta"], ls="--", color="grey", lw=1)
    for role, r in summary.iterrows():
        y = max(float(b4b_sigma(r.coverage, b4b["alpha"], b4b["beta"], b4b["lam"])), 1e-9)
        right.plot([r.coverage], [y], marker="o", ls="none", color=colour[role], label=_role_label(role))
    right.set_xlabel("coverage (%)")
    right.set_ylabel("noise std (x representation std)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_benchmark(results: Mapping[str, Any]) -> Figure:
    """Per task: accuracy (mean and 95 % interval over seeds) of the legitimate user and every
    attacker through each defense, with the victim's and the random-init encoders' accuracy and
    B4B's claim for the legitimate user (within a few points of undefended; no number published)."""
    frame = benchmark_frame(results)
    base = ch4.baseline_table(results)
    tasks = list(results["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.8), squeeze=False)
    users = _rows_of(results)
    users = [LEGIT] + [u for u in users if u != LEGIT]
    width = 0.8 / len(users)
    for ax, task in zip(axes[0], tasks):
        victim = float(base.loc[task, "victim"])
        b4b_x = DEFENSES.index("b4b")
        ax.fill_between(
            [b4b_x - 0.45, b4b_x + 0.45],
            victim - FEW_POINTS,
            victim,
            color="green",
            alpha=0.12,
            label="B4B's claim: user within a few points",
        )
        for i, user in enumerate(users):
            sub = frame[(frame.task == task) & (frame.user == user)]
            x = np.array([DEFENSES.index(d) for d in sub.defense]) - 0.4 + (i + 0.5) * width
            ax.errorbar(
                x,
                sub.accuracy,
                yerr=[sub.accuracy - sub.accuracy_low, sub.accuracy_high - sub.accuracy],
                fmt="s" if user == LEGIT else "o",
                ms=4,
                capsize=2,
                color="black" if user == LEGIT else f"C{i}",
                label=attack_name(user, results),
            )
        ax.axhline(victim, color="black", lw=1, ls=":", label="victim (undefended)")
        ax.axhline(float(base.loc[task, "random_init"]), color="grey", lw=1, ls="--", label="random-init encoder")
        ax.set_xticks(range(len(DEFENSES)), [DEFENSE_NAMES[d] for d in DEFENSES])
        ax.set_xlabel("defense")
        ax.set_ylabel(f"{task_name(task)} probe accuracy (%)")
        ax.set_title(task_name(task))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    return fig


def plot_inference(results: Mapping[str, Any]) -> Figure:
    """Dataset inference: each suspect's one-sided p-value (log scale) by group, with the level."""
    frame = inference_frame(results)
    frame["label"] = [_group_label(r) for r in frame.itertuples()]
    labels = list(dict.fromkeys(frame["label"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(labels) + 1.2))
    for i, label in enumerate(labels):
        p = frame[frame.label == label]["p_value"].clip(lower=1e-300)
        jitter = np.linspace(-0.15, 0.15, len(p)) if len(p) > 1 else np.zeros(1)
        ax.plot(p, i + jitter, "o", ms=4, color=f"C{i}")
    ax.axvline(results["di"]["alpha"], ls="--", color="grey", lw=1, label=f"level {results['di']['alpha']:g}")
    ax.set_xscale("log")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("one-sided p-value (members more likely than non-members)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def saved(results: Mapping[str, Any]) -> dict[str, Any]:
    """What the chapter saves: the per-seed results (what the judges read) and the verdicts they give."""
    return {**results, "verdicts": {cid: asdict(v) for cid, v in verdicts(results).items()}}
