"""Downstream evaluation of stolen encoders against a victim, with the victim's side computed once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from encsteal.data import role_splits
from encsteal.data.imageset import ImageSet
from encsteal.fidelity import linear_cka, mean_cosine_similarity
from encsteal.params import Params, probe_sizes
from encsteal.probe import DEFAULT_CS, FittedProbe, extract_features, few_label_indices, fit_probe, knn_accuracy
from encsteal.seeds import derive_seed

ROLES = ("probe_train", "probe_val", "probe_test")


@dataclass
class Downstream:
    """One downstream task: its probe splits, and the victim's features and fitted probe on it."""

    name: str
    splits: dict[str, ImageSet]
    victim_features: dict[str, torch.Tensor]
    victim_probe: FittedProbe
    per_class: int
    seed: int
    Cs: tuple[float, ...]


def prepare_downstream(
    name: str,
    victim: nn.Module,
    sizes: Mapping[str, int],
    per_class: int = 10,
    seed: int = 0,
    Cs: tuple[float, ...] = DEFAULT_CS,
) -> Downstream:
    """Split data set ``name`` into probe roles and compute the victim's features and probe once.

    ``sizes`` may also hold ``victim`` (and ``query``): pass the same sizes and seed as the
    experiment's own split of that data set, so the probe images are the same and never overlap
    the victim's training images or the queries.
    """
    splits = {r: s for r, s in role_splits(name, dict(sizes), seed=seed).items() if r in ROLES}
    feats = {r: extract_features(victim, splits[r]) for r in ROLES}
    probe = fit_probe(
        feats["probe_train"], splits["probe_train"].labels, feats["probe_val"], splits["probe_val"].labels, Cs
    )
    return Downstream(name, splits, feats, probe, per_class, seed, Cs)


def evaluate(encoder: nn.Module | None, task: Downstream, seed: int | None = None) -> dict[str, float]:
    """Accuracies (%) and fidelity of ``encoder`` on ``task`` (None = the victim itself).

    probe: linear probe with all probe labels; knn: 20-NN; few_label: probe with ``per_class``
    labels per class (the subset drawn with ``seed``'s own stream when given, else the task's
    seed); victim_head: the victim's own fitted probe applied to this encoder's
    features (how far the copy can replace the victim for a client who trained on the victim);
    cosine / cka: fidelity to the victim's representations of the test images.
    """
    s, y = task.splits, {r: task.splits[r].labels for r in ROLES}
    feats = task.victim_features if encoder is None else {r: extract_features(encoder, s[r]) for r in ROLES}
    probe = fit_probe(feats["probe_train"], y["probe_train"], feats["probe_val"], y["probe_val"], task.Cs)
    few_seed = task.seed if seed is None else derive_seed(seed, "few_label")
    idx = few_label_indices(y["probe_train"], task.per_class, few_seed)
    few = fit_probe(feats["probe_train"][idx], y["probe_train"][idx], feats["probe_val"], y["probe_val"], task.Cs)
    test_x, vict_x = feats["probe_test"], task.victim_features["probe_test"]
    same = test_x.shape[1] == vict_x.shape[1]
    return {
        "probe": 100 * probe.accuracy(test_x, y["probe_test"]),
        "knn": 100 * knn_accuracy(feats["probe_train"], y["probe_train"], test_x, y["probe_test"]),
        "few_label": 100 * few.accuracy(test_x, y["probe_test"]),
        "victim_head": 100 * task.victim_probe.accuracy(test_x, y["probe_test"]) if same else float("nan"),
        "cosine": mean_cosine_similarity(test_x, vict_x) if same else float("nan"),
        "cka": linear_cka(test_x, vict_x),
    }


def downstream_tasks(
    p: Params, victim: nn.Module, names: Sequence[str], own_dataset: str | None = None, victim_images: int = 0
) -> list[Downstream]:
    """The chapter's downstream tasks with the victim's side computed once. On ``own_dataset`` (the
    victim's training set) the probe splits are drawn after the victim's ``victim_images`` training
    images, so they never overlap them."""
    sizes = probe_sizes(p)
    return [
        prepare_downstream(
            name,
            victim,
            {"victim": victim_images, **sizes} if name == own_dataset else sizes,
            p.few_label_per_class,
            p.seed,
            tuple(p.probe_cs),
        )
        for name in names
    ]
