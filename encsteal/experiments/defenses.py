"""Does a defense hurt the attacker more than a legitimate user? (the paper's claim; book/paper_setup.md#setup-defenses)

For each strength of a defense the same defended API serves two users:

* a legitimate user queries it with its own downstream data (``probe_train``, ``probe_val``,
  ``probe_test``) and fits a linear probe (:func:`encsteal.probe.linear_probe`) on the answers
  (the official ``legitimate.py`` trains a small head on defended outputs the same way);
* an attacker steals through it (:func:`encsteal.attack.steal`) and its stolen encoder is probed
  on the same downstream split, undefended (it owns the copy now).

Both users are served by one API, one freshly built defense per strength; a defense's randomness
is per user (``encsteal.defenses``), so neither user's answers depend on the other's traffic and
the attack's cache key (``repr`` of the defense, the user, its query count) stays exact.
For the duplicate detector the table also reports how often each user was flagged and the
detector's precision/recall/F1/ROC-AUC on a stream whose truth is known: the attacker's images as
two augmented views each (the second view is the duplicate), the stream an augmented-query
attack sends.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, steal
from encsteal.augment import Augment
from encsteal.cache import ResultCache
from encsteal.data.imageset import ImageSet
from encsteal.defenses import (
    DEFENSE_PARAMS,
    DEFENSES,
    STRENGTH_PARAM,
    DuplicateDetector,
    detection_metrics,
    make_defense,
    representation_std,
)
from encsteal.probe import evaluate_encoder, linear_probe
from encsteal.victims import Victim, victim_training_set

LEGIT_ROLES: tuple[str, ...] = ("probe_train", "probe_val", "probe_test")


def query_in_chunks(api: EncoderAPI, images: torch.Tensor, user: str, chunk: int = 1024) -> torch.Tensor:
    """Send ``images`` to ``api`` as ``user`` in calls of ``chunk`` images (as the attack does)."""
    return torch.cat([api.query(images[s : s + chunk], user) for s in range(0, len(images), chunk)])


def legitimate_user_accuracy(api: EncoderAPI, splits: Mapping[str, ImageSet], user: str = "legit") -> float:
    """A legitimate user's downstream accuracy: it queries ``api`` with its probe images (train,
    val, test, in that order) and fits the linear probe on the answers (like the legitimate user of
    book/paper_setup.md#setup-defenses)."""
    missing = [r for r in LEGIT_ROLES if r not in splits]
    if missing:
        raise ValueError(f"The legitimate user needs the splits {LEGIT_ROLES}; missing {missing}.")
    answers = {r: query_in_chunks(api, splits[r].images, user) for r in LEGIT_ROLES}
    res = linear_probe(
        answers["probe_train"],
        splits["probe_train"].labels,
        answers["probe_val"],
        splits["probe_val"].labels,
        answers["probe_test"],
        splits["probe_test"].labels,
    )
    return res.accuracy


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


def victim_output_std(victim: Victim, n: int = 2000, per_dimension: bool = False) -> float | torch.Tensor:
    """The per-dimension std of the victim's API outputs (representations) on ``n`` of its own
    training images: a scale the defender knows, used as the unit of relative noise so that one strength means the
    same for encoders whose outputs differ in scale (book/paper_setup.md#setup-book-choices)."""
    data = victim_training_set(victim.config)
    api = EncoderAPI(victim.encoder, victim.head)
    return representation_std(query_in_chunks(api, data.images[:n], "defender"), per_dimension)


def _num_images(config: StealConfig, num_queries: int) -> int:
    return num_queries // config.views if config.augment == "views" else num_queries


def tradeoff_table(
    victim: Victim,
    splits: Mapping[str, ImageSet],
    defense_name: str,
    strengths: Sequence[Any],
    steal_configs: Mapping[str, StealConfig],
    base_params: Mapping[str, Any] | None = None,
    strength_param: str | None = None,
    relative: bool = True,
    num_queries: int = 2000,
    query_role: str = "query",
    cache: ResultCache | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Legitimate-user and attacker accuracies (%) for each strength of ``defense_name``.

    Args:
        strengths: values of ``strength_param`` (default :data:`STRENGTH_PARAM`: noise ``std``,
            rounding ``step``, truncation ``k``, duplicates ``threshold``).
        steal_configs: the attacks, by name; each sends ``num_queries`` queries (an attack with
            ``augment="views"`` sends ``num_queries // views`` images in ``views`` copies).
        base_params: the defense's other parameters (e.g. ``{"mean": 0.0}`` for zero-mean noise).
        relative: for noise and rounding, give ``reference_std`` = the victim's per-dimension
            representation std (:func:`victim_output_std`), so strengths are multiples of it.

    Columns: ``strength``; ``legit`` (the legitimate user's probe accuracy); one
    ``attacker_<name>`` per attack (probe accuracy of its stolen encoder); ``seconds``; for the
    duplicate detector also ``legit_flagged`` / ``attacker_flagged`` (% of plain queries
    poisoned) and ``precision``/``recall``/``f1``/``roc_auc`` on :func:`augmented_pair_stream`.
    """
    if defense_name not in DEFENSES:
        raise ValueError(f"Unknown defense {defense_name!r}. Allowed: {', '.join(DEFENSES)}.")
    param = strength_param or STRENGTH_PARAM[defense_name]
    if param not in DEFENSE_PARAMS[defense_name]:
        raise ValueError(
            f"Unknown strength parameter {param!r} for {defense_name!r}. "
            f"Allowed: {', '.join(DEFENSE_PARAMS[defense_name])}."
        )
    if query_role not in splits:
        raise ValueError(f"No {query_role!r} split for the attacker's queries.")
    cache = cache if cache is not None else ResultCache()
    params = dict(base_params or {})
    if relative and "reference_std" in DEFENSE_PARAMS[defense_name] and "reference_std" not in params:
        params["reference_std"] = float(f"{float(victim_output_std(victim)):.6g}")  # stable repr
    queries = splits[query_role]
    rows = []
    for strength in strengths:
        start = time.perf_counter()
        defense = make_defense(defense_name, **{**params, param: strength})
        api = EncoderAPI(victim.encoder, victim.head, defenses=[defense])
        row: dict[str, Any] = {"strength": strength, "legit": 100 * legitimate_user_accuracy(api, splits)}
        for name, cfg in steal_configs.items():
            n = _num_images(cfg, num_queries)
            if n > len(queries):
                raise ValueError(
                    f"Attack {name!r} needs {n} query images; the {query_role!r} split has {len(queries)}."
                )
            res = steal(
                api, queries.subset(torch.arange(n)), cfg, user=f"attacker-{name}", cache=cache, progress=progress
            )
            row[f"attacker_{name}"] = 100 * evaluate_encoder(res.encoder, dict(splits)).accuracy
        if isinstance(defense, DuplicateDetector):
            row.update(_detector_columns(defense, victim, queries.images[:num_queries]))
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(
        {
            "defense": defense_name,
            "strength_param": param,
            "params": {k: v for k, v in params.items()},
            "num_queries": num_queries,
        }
    )
    return table


def _detector_columns(defense: DuplicateDetector, victim: Victim, query_images: torch.Tensor) -> dict[str, float]:
    """Flag rates of the legitimate user and of a plain-query attacker, and detection quality on
    an augmented-pair stream, each measured on a fresh copy of the detector."""
    _, legit_flags = defense.decisions("legit")
    out = {"legit_flagged": 100 * float(legit_flags.float().mean()) if len(legit_flags) else float("nan")}
    fresh = make_defense("duplicates", **defense.params())
    api = EncoderAPI(victim.encoder, victim.head, defenses=[fresh])
    query_in_chunks(api, query_images, "plain")
    _, flags = fresh.decisions("plain")
    out["attacker_flagged"] = 100 * float(flags.float().mean())
    stream, truth = augmented_pair_stream(query_images[: len(query_images) // 2], seed=defense.seed)
    query_in_chunks(api, stream, "pairs")
    scores, flags = fresh.decisions("pairs")
    m = detection_metrics(truth, flags, scores)
    out |= {k: 100 * m[k] if k != "roc_auc" else m[k] for k in ("precision", "recall", "f1", "roc_auc")}
    return out


def attacker_columns(table: pd.DataFrame) -> list[str]:
    """The ``attacker_<name>`` accuracy columns of a trade-off table (not the detector's flag rate)."""
    return [c for c in table.columns if c.startswith("attacker_") and c != "attacker_flagged"]


def plot_tradeoff(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Two panels: accuracy against defense strength (legitimate user and each attacker), and
    each attacker's accuracy against the legitimate user's (the trade-off curve; the diagonal is
    'hurts both equally').

    The figure is a pyplot figure, so a notebook renders it (``plt.show()``) and a script saves it
    (``savefig``, then ``plt.close(fig)``).
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    attackers = attacker_columns(table)
    x = list(range(len(table)))
    ax1.plot(x, table["legit"], marker="o", color="C0", label="legitimate user")
    for i, col in enumerate(attackers):
        ax1.plot(x, table[col], marker="s", color=f"C{i + 1}", label=col.replace("attacker_", "attacker, "))
    ax1.set_xticks(x, [str(s) for s in table["strength"]])
    param = table.attrs.get("strength_param", "strength")
    ax1.set_xlabel(f"defense strength ({table.attrs.get('defense', '')} {param})")
    ax1.set_ylabel("downstream probe accuracy (%)")
    ax1.legend(fontsize=8)
    for i, col in enumerate(attackers):
        ax2.plot(
            table["legit"], table[col], marker="s", color=f"C{i + 1}", label=col.replace("attacker_", "attacker, ")
        )
        for lx, ay, s in zip(table["legit"], table[col], table["strength"]):
            ax2.annotate(str(s), (lx, ay), fontsize=7, textcoords="offset points", xytext=(3, 3))
    lo = min(table["legit"].min(), *(table[c].min() for c in attackers)) if attackers else table["legit"].min()
    hi = max(table["legit"].max(), *(table[c].max() for c in attackers)) if attackers else table["legit"].max()
    ax2.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1, label="equal")
    ax2.set_xlabel("legitimate user's accuracy (%)")
    ax2.set_ylabel("stolen encoder's accuracy (%)")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def attack_configs(
    losses: Sequence[str],
    epochs: int,
    seed: int,
    views_loss: str | None = None,
    views: int = 2,
    loss_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, StealConfig]:
    """One plain attack per loss (with its ``loss_settings``, the profile's; default: the loss's own),
    keyed by the loss; with ``views_loss`` also ``<views_loss>_views``, which sends every image as
    ``views`` augmented views."""
    settings = loss_settings or {}
    attacks = {
        loss: StealConfig(loss=loss, loss_params=dict(settings.get(loss, {})), epochs=epochs, seed=seed)
        for loss in losses
    }
    if views_loss is not None:
        attacks[f"{views_loss}_views"] = StealConfig(
            loss=views_loss,
            loss_params=dict(settings.get(views_loss, {})),
            epochs=epochs,
            augment="views",
            views=views,
            seed=seed,
        )
    return attacks


def tradeoff_view(table: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The trade-off table as the chapter shows it: one row per strength, rounded."""
    return table.set_index("strength").round(decimals)


def headline(noise: pd.DataFrame, defense_losses: Sequence[str]) -> dict[str, float]:
    """The numbers the defense chapter's prose quotes, from a :func:`tradeoff_table` of a defense.

    ``legit_*`` is the legitimate user's accuracy and ``attacker_*`` the best of the attackers
    ``attacker_<loss>`` for ``loss`` in ``defense_losses``, each at the weakest strength (``clean``;
    0 is the undefended API) and at the strongest (``strong``, ``max_strength``). ``ref_std`` is
    the victim's representation std that relative strengths multiply (NaN for absolute strengths).
    """
    if noise.empty or not defense_losses:
        raise ValueError("The headline needs at least one strength and one attacker.")
    missing = [f"attacker_{loss}" for loss in defense_losses if f"attacker_{loss}" not in noise.columns]
    if missing:
        raise ValueError(f"No column {missing} in the trade-off table; it has {list(noise.columns)}.")
    clean = noise.loc[noise["strength"].idxmin()]
    strong = noise.loc[noise["strength"].idxmax()]
    return {
        "ref_std": float(noise.attrs.get("params", {}).get("reference_std", float("nan"))),
        "legit_clean": float(clean["legit"]),
        "legit_strong": float(strong["legit"]),
        "attacker_clean": max(float(clean[f"attacker_{loss}"]) for loss in defense_losses),
        "attacker_strong": max(float(strong[f"attacker_{loss}"]) for loss in defense_losses),
        "max_strength": float(strong["strength"]),
    }
