"""Output defenses adapted to encoder APIs (book/paper_setup.md#setup-defenses): transforms of the API's answers.

Each defense is a callable ``(outputs, context) -> outputs`` for ``EncoderAPI(defenses=...)``
and is built by name with :func:`make_defense`:

* ``"noise"`` - additive Gaussian noise. The official code's defaults are mean 5, std 0.5
  (``--mu``/``--sigma``, book/paper_setup.md#setup-defenses); zero-mean noise is ``mean=0``. With ``reference_std``
  (the representations' per-dimension std, a number or one value per dimension) ``std`` is a
  multiple of it, so that one strength means the same for encoders whose outputs differ in scale
  (book/paper_setup.md#setup-book-choices).
* ``"rounding"`` - quantise every coordinate to the grid ``step * round(x / step)`` (``step``
  relative to ``reference_std`` when that is given).
* ``"truncation"`` - keep the ``k`` coordinates of largest magnitude, zero the rest.
* ``"duplicates"`` - detect augmented duplicate queries (book/paper_setup.md#setup-defenses): a query whose
  victim-side embedding (the projection-head output) has a rescaled cosine ``(cos + 1) / 2``
  above ``threshold`` (official: 0.8) with an earlier query of the same user gets a poisoned
  answer (official: N(1000, sigma^2) with sigma = ``--sigma`` = 0.5). The official code compares
  only within the current batch (``scope="batch"``); ``scope="history"`` (the default here) also
  compares with the user's earlier calls. Decisions are recorded for :func:`detection_metrics`.

Randomness: a defense is seeded at construction. It keeps one ``torch.Generator`` per user,
seeded from (seed, user), so a user's answers depend only on the seed and its own query
sequence, never on other users' traffic; this is what makes the attack's cache key (which holds
``repr(defense)``, the user and the user's query count) identify its answers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from encsteal.api import QueryContext
from encsteal.cache import tensor_fingerprint

POISONS: tuple[str, ...] = ("gaussian", "zeros")
SCOPES: tuple[str, ...] = ("history", "batch")


def _fmt(value: Any) -> str:
    """Deterministic text of a parameter value for ``repr`` (tensors by shape and hash)."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}#{tensor_fingerprint(value.float())}"
    if isinstance(value, float):
        return repr(float(value))
    return repr(value)


def _check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> None:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(float(value))):
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}. Allowed: {', '.join(allowed)}.")


def _check_reference_std(reference_std: Any) -> float | torch.Tensor | None:
    if reference_std is None:
        return None
    if isinstance(reference_std, torch.Tensor):
        ref = reference_std.detach().float().cpu()
        if ref.ndim > 1 or not torch.isfinite(ref).all() or (ref < 0).any():
            raise ValueError("reference_std must be a non-negative number or a 1-D tensor of per-dimension stds.")
        return ref if ref.ndim == 1 else float(ref)
    _check_number("reference_std", reference_std, 0.0, low_open=True)
    return float(reference_std)


class OutputDefense:
    """Base class: parameters for ``repr``/cache keys and per-user seeded generators."""

    name: str = ""

    def __init__(self, seed: int = 0):
        _check_number("seed", seed, 0, integer=True)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._generators: dict[str, torch.Generator] = {}

    def params(self) -> dict[str, Any]:
        """The constructor's parameters, in a fixed order."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def generator_for(self, user: str) -> torch.Generator:
        """This user's generator, seeded from (seed, user) on first use."""
        if user not in self._generators:
            digest = hashlib.sha256(f"{self.seed}:{user}".encode()).digest()
            self._generators[user] = torch.Generator().manual_seed(int.from_bytes(digest[:7], "big"))
        return self._generators[user]

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        raise NotImplementedError


def _scaled(value: float, reference: float | torch.Tensor | None, dim: int) -> float | torch.Tensor:
    if reference is None:
        return value
    if isinstance(reference, torch.Tensor):
        if len(reference) != dim:
            raise ValueError(f"reference_std has {len(reference)} values but the outputs have {dim} dimensions.")
        return value * reference
    return value * reference


class GaussianNoise(OutputDefense):
    """Add N(mean, std^2) noise to every returned coordinate (book/paper_setup.md#setup-defenses).

    Args:
        mean: noise mean, in output units (official default 5).
        std: noise std (official default 0.5); a multiple of ``reference_std`` when that is given.
        reference_std: the representations' per-dimension std (a number, or one per dimension).
        seed: seed of the defense's generators.
    """

    name = "noise"

    def __init__(
        self, mean: float = 5.0, std: float = 0.5, reference_std: float | torch.Tensor | None = None, seed: int = 0
    ):
        super().__init__(seed)
        _check_number("mean", mean)
        _check_number("std", std, 0.0)
        self.mean, self.std = float(mean), float(std)
        self.reference_std = _check_reference_std(reference_std)

    def params(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "reference_std": self.reference_std, "seed": self.seed}

    def effective_std(self, dim: int) -> float | torch.Tensor:
        """The noise std in output units."""
        return _scaled(self.std, self.reference_std, dim)

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        noise = torch.randn(outputs.shape, generator=self.generator_for(context.user))
        return outputs + self.mean + noise * self.effective_std(outputs.shape[1])


class Rounding(OutputDefense):
    """Quantise every coordinate to the grid ``step * round(x / step)`` (deterministic).

    Args:
        step: grid spacing (> 0); a multiple of ``reference_std`` when that is given.
        reference_std: the representations' per-dimension std (a number, or one per dimension).
    """

    name = "rounding"

    def __init__(self, step: float = 0.1, reference_std: float | torch.Tensor | None = None, seed: int = 0):
        super().__init__(seed)
        _check_number("step", step, 0.0, low_open=True)
        self.step = float(step)
        self.reference_std = _check_reference_std(reference_std)

    def params(self) -> dict[str, Any]:
        return {"step": self.step, "reference_std": self.reference_std}

    def grid(self, dim: int) -> float | torch.Tensor:
        """The grid spacing in output units."""
        return _scaled(self.step, self.reference_std, dim)

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        step = self.grid(outputs.shape[1])
        if isinstance(step, torch.Tensor) and (step <= 0).any():
            raise ValueError("Rounding with a per-dimension reference_std needs every std > 0.")
        return torch.round(outputs / step) * step


class Truncation(OutputDefense):
    """Keep the ``k`` coordinates of largest magnitude of each output, zero the others."""

    name = "truncation"

    def __init__(self, k: int = 32, seed: int = 0):
        super().__init__(seed)
        _check_number("k", k, 1, integer=True)
        self.k = int(k)

    def params(self) -> dict[str, Any]:
        return {"k": self.k}

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        if self.k > outputs.shape[1]:
            raise ValueError(
                f"Truncation k={self.k} exceeds the output size {outputs.shape[1]}; "
                f"allowed: 1 <= k <= {outputs.shape[1]}."
            )
        idx = outputs.abs().topk(self.k, dim=1).indices
        return torch.zeros_like(outputs).scatter_(1, idx, outputs.gather(1, idx))


@dataclass(frozen=True)
class DetectionRecord:
    """The detector's decisions for one call: max rescaled similarity and the flag per query."""

    user: str
    scores: torch.Tensor
    flags: torch.Tensor


def max_earlier_similarity(
    embeddings: torch.Tensor, history: torch.Tensor | None = None, chunk: int = 1024
) -> torch.Tensor:
    """For each row, the largest rescaled cosine ``(cos + 1) / 2`` with an earlier row of the batch
    or any row of ``history``; 0 when there is nothing earlier (the official score,
    book/paper_setup.md#setup-defenses)."""
    z = F.normalize(embeddings.float(), dim=1)
    past = F.normalize(history.float(), dim=1) if history is not None and len(history) else None
    out = torch.zeros(len(z))
    for s in range(0, len(z), chunk):
        block = z[s : s + chunk]
        best = torch.full((len(block),), -math.inf)
        if past is not None:
            best = torch.maximum(best, (block @ past.T).max(dim=1).values)
        if s > 0:
            best = torch.maximum(best, (block @ z[:s].T).max(dim=1).values)
        within = block @ block.T
        within = within.masked_fill(~torch.ones_like(within, dtype=torch.bool).tril(-1), -math.inf)
        best = torch.maximum(best, within.max(dim=1).values)
        out[s : s + chunk] = torch.where(torch.isinf(best), torch.zeros_like(best), ((best + 1) / 2).clamp(0, 1))
    return out


class DuplicateDetector(OutputDefense):
    """Answer suspected augmented duplicates with poison (book/paper_setup.md#setup-defenses).

    Args:
        threshold: rescaled-cosine threshold in [0, 1] (official 0.8); a query is flagged when
            its score is strictly above it (so 1.0 never flags).
        scope: ``"history"`` (earlier queries of this call and the user's earlier calls) or
            ``"batch"`` (this call only, as the official code).
        poison: ``"gaussian"`` (N(poison_mean, poison_std^2), official N(1000, 0.5^2)) or
            ``"zeros"``.
        poison_mean, poison_std: parameters of the Gaussian poison.
        record: keep every decision in :attr:`records` (for :func:`detection_metrics`).
    """

    name = "duplicates"

    def __init__(
        self,
        threshold: float = 0.8,
        scope: str = "history",
        poison: str = "gaussian",
        poison_mean: float = 1000.0,
        poison_std: float = 0.5,
        seed: int = 0,
        record: bool = True,
    ):
        super().__init__(seed)
        _check_number("threshold", threshold, 0.0, 1.0)
        _check_choice("scope", scope, SCOPES)
        _check_choice("poison", poison, POISONS)
        _check_number("poison_mean", poison_mean)
        _check_number("poison_std", poison_std, 0.0)
        self.threshold, self.scope, self.poison = float(threshold), scope, poison
        self.poison_mean, self.poison_std = float(poison_mean), float(poison_std)
        self.record = bool(record)
        self.records: list[DetectionRecord] = []

    def params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "scope": self.scope,
            "poison": self.poison,
            "poison_mean": self.poison_mean,
            "poison_std": self.poison_std,
            "seed": self.seed,
        }

    def score(self, context: QueryContext) -> torch.Tensor:
        history = context.history.past_embeddings() if self.scope == "history" else None
        return max_earlier_similarity(context.embeddings, history)

    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        scores = self.score(context)
        flags = scores > self.threshold
        if self.record:
            self.records.append(DetectionRecord(context.user, scores, flags))
        if not flags.any():
            return outputs
        out = outputs.clone()
        n, d = int(flags.sum()), outputs.shape[1]
        if self.poison == "gaussian":
            noise = torch.randn((n, d), generator=self.generator_for(context.user))
            out[flags] = self.poison_mean + self.poison_std * noise
        else:
            out[flags] = 0.0
        return out

    def decisions(self, user: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, flags) of all recorded queries (of ``user`` if given), in query order."""
        recs = [r for r in self.records if user is None or r.user == user]
        if not recs:
            return torch.empty(0), torch.empty(0, dtype=torch.bool)
        return torch.cat([r.scores for r in recs]), torch.cat([r.flags for r in recs])

    def reset(self) -> None:
        """Forget the recorded decisions (not the generators)."""
        self.records.clear()


DEFENSES: dict[str, type[OutputDefense]] = {
    cls.name: cls for cls in (GaussianNoise, Rounding, Truncation, DuplicateDetector)
}
DEFENSE_PARAMS: dict[str, tuple[str, ...]] = {
    "noise": ("mean", "std", "reference_std", "seed"),
    "rounding": ("step", "reference_std", "seed"),
    "truncation": ("k", "seed"),
    "duplicates": ("threshold", "scope", "poison", "poison_mean", "poison_std", "seed", "record"),
}
STRENGTH_PARAM: dict[str, str] = {"noise": "std", "rounding": "step", "truncation": "k", "duplicates": "threshold"}
"""The parameter a trade-off sweep varies for each defense."""


def make_defense(name: str, **params: Any) -> OutputDefense:
    """Build the defense ``name`` (one of :data:`DEFENSES`) with ``params``; errors list the allowed values."""
    if name not in DEFENSES:
        raise ValueError(f"Unknown defense {name!r}. Allowed: {', '.join(DEFENSES)}.")
    unknown = sorted(set(params) - set(DEFENSE_PARAMS[name]))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for defense {name!r}. Allowed: {', '.join(DEFENSE_PARAMS[name])}."
        )
    return DEFENSES[name](**params)


def representation_std(outputs: torch.Tensor, per_dimension: bool = False) -> float | torch.Tensor:
    """The per-dimension std of API outputs (N, D): the mean over dimensions (one number,
    the unit of relative noise) or, with ``per_dimension``, one value per dimension."""
    std = outputs.float().std(dim=0)
    return std if per_dimension else float(std.mean())


def detection_metrics(
    truth: Sequence[bool] | torch.Tensor | np.ndarray,
    flags: Sequence[bool] | torch.Tensor | np.ndarray,
    scores: Sequence[float] | torch.Tensor | np.ndarray | None = None,
) -> dict[str, float]:
    """Precision, recall, F1 (of ``flags``) and ROC-AUC (of ``scores``, else of the flags) of a
    duplicate detector against the ``truth`` (True = the query is an augmentation of an earlier
    one), with ``sklearn.metrics`` as the official code meant to (book/paper_setup.md#setup-defenses). AUC is NaN
    when the truth holds one class only. Also returns counts and the flag rate."""
    t = np.asarray(truth, dtype=bool).ravel()
    f = np.asarray(flags, dtype=bool).ravel()
    s = f.astype(float) if scores is None else np.asarray(scores, dtype=float).ravel()
    if not (len(t) == len(f) == len(s)):
        raise ValueError(f"truth, flags and scores must have one entry per query; got {len(t)}, {len(f)}, {len(s)}.")
    if len(t) == 0:
        raise ValueError("No decisions to evaluate.")
    auc = float(roc_auc_score(t, s)) if 0 < t.sum() < len(t) else float("nan")
    return {
        "precision": float(precision_score(t, f, zero_division=0)),
        "recall": float(recall_score(t, f, zero_division=0)),
        "f1": float(f1_score(t, f, zero_division=0)),
        "roc_auc": auc,
        "flag_rate": float(f.mean()),
        "n": int(len(t)),
        "positives": int(t.sum()),
        "flagged": int(f.sum()),
    }


__all__ = [
    "DEFENSES",
    "DEFENSE_PARAMS",
    "STRENGTH_PARAM",
    "POISONS",
    "SCOPES",
    "OutputDefense",
    "GaussianNoise",
    "Rounding",
    "Truncation",
    "DuplicateDetector",
    "DetectionRecord",
    "make_defense",
    "max_earlier_similarity",
    "representation_std",
    "detection_metrics",
]
