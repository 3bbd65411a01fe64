"""Seeded, non-overlapping splits of a data set into the roles of a stealing experiment.

Roles: ``victim`` (the victim's training images), ``probe_train`` and ``probe_val`` (labelled
images for the downstream linear probe and its regularisation choice) and ``query`` (the
attacker's query images) are drawn without overlap from one seeded permutation of the ``train``
split, in that order: so the victim and probe images do not change with the query budget, and a
larger budget's queries contain a smaller budget's. ``probe_test`` comes from the ``test`` split. The paper keeps the
query images apart from the probe's test images in
the same way (book/paper_setup.md#setup-stealing-cifar: CIFAR10 queries come from the test set minus its last 1,000
images).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from encsteal.data.imageset import ImageSet
from encsteal.data.registry import load

TRAIN_ROLES: tuple[str, ...] = ("victim", "probe_train", "probe_val", "query")
ROLES: tuple[str, ...] = TRAIN_ROLES + ("probe_test",)


def draw_disjoint(n_total: int, sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
    """Disjoint random index sets of the given sizes from ``range(n_total)``, each sorted."""
    for role, size in sizes.items():
        if size < 0:
            raise ValueError(f"Split size for {role!r} must be >= 0, got {size}.")
    needed = sum(sizes.values())
    if needed > n_total:
        raise ValueError(
            f"The requested splits {dict(sizes)} need {needed} images but only {n_total} are available: ask for fewer."
        )
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for role, size in sizes.items():
        out[role] = torch.sort(order[start : start + size]).values
        start += size
    return out


def role_splits(
    name: str,
    sizes: Mapping[str, int],
    seed: int = 0,
    root: str | os.PathLike | None = None,
    download: bool = False,
) -> dict[str, ImageSet]:
    """Split data set ``name`` into roles; ``sizes`` maps role -> number of images.

    The same ``seed`` gives the same images in each role. ``probe_test`` is capped at the size of
    the test split; 0 means "the whole test split".
    """
    unknown = set(sizes) - set(ROLES)
    if unknown:
        raise ValueError(f"Unknown roles {sorted(unknown)}. Allowed roles: {', '.join(ROLES)}.")
    train = load(name, "train", root, download)
    train_sizes = {r: int(sizes[r]) for r in TRAIN_ROLES if r in sizes}
    picked = draw_disjoint(len(train), train_sizes, seed)
    out = {role: train.subset(idx) for role, idx in picked.items()}
    if "probe_test" in sizes:
        test = load(name, "test", root, download)
        n_test = min(int(sizes["probe_test"]) or len(test), len(test))
        idx = draw_disjoint(len(test), {"probe_test": n_test}, seed + 1)["probe_test"]
        out["probe_test"] = test.subset(idx)
    return out
