"""B4B, "Bucks for Buckets" (Dubinski et al., NeurIPS 2023, arXiv:2310.08571): an active defense.

The API estimates how much of the representation space each user has covered so far and
answers with Gaussian noise whose std grows exponentially with that coverage; every user also
gets its own secret transformation of the answers, so that answers from several accounts
(sybils) cannot simply be pooled. Three parts, as in the official code:

* **Coverage** (:class:`LSHCoverage`): ``n_tables`` locality-sensitive hash tables, each of
  ``n_hyperplanes`` random Gaussian hyperplanes through the origin; a representation's bucket in
  a table is its sign pattern (bit k = [z . p_k > 0]), so a table has 2^n_hyperplanes buckets
  (12 -> 4,096). A user's coverage is the mean over tables of the share of buckets hit by all
  its answers so far, in percent; it is cumulative and updated at every call.
* **Cost** (:func:`b4b_sigma`): sigma(c) = lam * (exp(ln(alpha / lam) * c / beta) - 1), clipped
  at 0, so sigma(0) = 0 and sigma(beta) = alpha - lam (about alpha). Defaults are those of every
  released end-to-end script (alpha = 1, beta = 80, lam = 1e-7); the scripts' argparse defaults
  are 0.8 / 80 / 1e-6. The official sigma is in the victim's raw units; with ``reference_std``
  (the representations' per-dimension std, as in :class:`encsteal.defenses.GaussianNoise`) it is
  a multiple of that std instead, so alpha = 1 means "noise as large as the signal's spread at
  coverage beta" whatever the encoder's scale. Parameters whose sigma at 100% coverage would
  overflow float32 answers (:data:`MAX_STD`) are refused at construction.
* **Per-user transformations** (:data:`TRANSFORMS`): ``"affine"`` (per-coordinate scale and
  shift, U(-1, 1)), ``"affine_pad_shuffle"`` (affine, then ``pad_dim`` constant N(0, 1)
  coordinates appended, then a permutation of all coordinates), ``"dense_affine"`` (z A + B with
  A, B ~ U(-1, 1), the official end-to-end sybil run) or ``"none"``; drawn once per user from
  (seed, user) and secret.

Choices (documented because a reader of the chapter needs them):

* What is hashed: the answer as it reaches B4B, before any noise or transformation
  (``hash_source="outputs"``). With B4B first in ``EncoderAPI(defenses=[...])`` this is the
  representation the API returns (or the head output for ``output="head"``), which is what the
  official code hashes (the victim's returned features). ``hash_source="embeddings"`` hashes
  the API's victim-side embeddings instead (:class:`encsteal.api.QueryContext`: the projection
  head's outputs when the victim has a head).
* Order: noise is added to the raw answer, then the user's transformation is applied, as in the
  official end-to-end code (noised victim features, then z A + B); padded coordinates carry no
  noise.
* Which coverage sets the noise of a call: the user's coverage once this call's answers are
  counted. The official code precomputes coverage over its unshuffled query stream and looks it
  up with a small lag; here each call is answered with its own, current coverage.

Like every history-based defense here, B4B only sees queries actually answered: an attack
replayed from the cache counts its queries (:meth:`encsteal.api.EncoderAPI.record_replayed_queries`)
but does not add to the user's coverage.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from encsteal.api import EncoderAPI, QueryContext
from encsteal.defenses import OutputDefense, _check_choice, _check_number, _check_reference_std, _scaled

TRANSFORMS: tuple[str, ...] = ("none", "affine", "affine_pad_shuffle", "dense_affine")
HASH_SOURCES: tuple[str, ...] = ("outputs", "embeddings")
MAX_HYPERPLANES = 20
"""At most 2^20 buckets per table (a user's hit mask is kept as one bool per bucket and table)."""
MAX_STD = 1e30
"""Largest noise std allowed at 100% coverage: answers are float32 (max ~3.4e38)."""


def _seeded(*parts: Any) -> torch.Generator:
    """A torch Generator seeded from the text of ``parts`` (sha256), independent of other streams."""
    digest = hashlib.sha256(":".join(str(p) for p in ("b4b", *parts)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:7], "big"))


# ---- cost function -----------------------------------------------------------------------------


def _check_cost(alpha: float, beta: float, lam: float) -> None:
    _check_number("alpha", alpha, 0.0, low_open=True)
    _check_number("beta", beta, 0.0, low_open=True)
    _check_number("lam", lam, 0.0, low_open=True)
    if not lam < alpha:
        raise ValueError(f"lam must be < alpha (the noise would never grow), got lam={lam!r}, alpha={alpha!r}.")
    if math.log(alpha / lam) * 100.0 / beta > 700:  # exp() beyond float64 before 100% coverage
        raise ValueError(
            f"alpha={alpha!r}, beta={beta!r}, lam={lam!r} overflow the noise std at 100% coverage; raise beta."
        )


def b4b_sigma(coverage: float | np.ndarray, alpha: float = 1.0, beta: float = 80.0, lam: float = 1e-7):
    """The B4B cost function: noise std for a coverage in percent (arXiv:2310.08571),
    ``lam * (exp(ln(alpha / lam) * coverage / beta) - 1)``, clipped at 0 (a float for a number,
    an array for an array). It is 0 at 0% and alpha - lam at ``beta`` percent."""
    _check_cost(alpha, beta, lam)
    c = np.asarray(coverage, dtype=np.float64)
    sigma = np.maximum(lam * (np.exp(np.log(alpha / lam) * c / beta) - 1.0), 0.0)
    return float(sigma) if sigma.ndim == 0 else sigma


# ---- coverage ----------------------------------------------------------------------------------


def lsh_projections(dim: int, n_tables: int, n_hyperplanes: int, seed: int) -> torch.Tensor:
    """The hash tables' hyperplane normals, (n_tables, dim, n_hyperplanes) float64 N(0, 1),
    a function of (dim, n_tables, n_hyperplanes, seed) only."""
    gen = _seeded("lsh", seed, dim, n_tables, n_hyperplanes)
    return torch.randn((n_tables, dim, n_hyperplanes), generator=gen, dtype=torch.float64)


def bucket_ids(z: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Bucket of each row of ``z`` (N, D) in each table: (N, n_tables) int64, sum_k 2^k [z . p_k > 0]."""
    if z.ndim != 2 or z.shape[1] != projections.shape[1]:
        raise ValueError(f"Expected representations (N, {projections.shape[1]}), got {tuple(z.shape)}.")
    bits = torch.einsum("nd,tdr->ntr", z.detach().cpu().double(), projections) > 0
    weights = 2 ** torch.arange(projections.shape[2], dtype=torch.int64)
    return (bits.long() * weights).sum(dim=2)


class LSHCoverage:
    """Cumulative LSH coverage per user (percent of buckets hit, mean over tables)."""

    def __init__(self, n_tables: int = 20, n_hyperplanes: int = 12, seed: int = 0):
        _check_number("n_tables", n_tables, 1, integer=True)
        _check_number("n_hyperplanes", n_hyperplanes, 1, MAX_HYPERPLANES, integer=True)
        _check_number("seed", seed, 0, integer=True)
        self.n_tables, self.n_hyperplanes, self.seed = int(n_tables), int(n_hyperplanes), int(seed)
        self._projections: dict[int, torch.Tensor] = {}
        self._hits: dict[str, torch.Tensor] = {}

    @property
    def n_buckets(self) -> int:
        return 2**self.n_hyperplanes

    def projections(self, dim: int) -> torch.Tensor:
        if dim not in self._projections:
            self._projections[dim] = lsh_projections(dim, self.n_tables, self.n_hyperplanes, self.seed)
        return self._projections[dim]

    def update(self, user: str, z: torch.Tensor) -> float:
        """Count the buckets of ``z`` (N, D) for ``user``; returns its coverage afterwards."""
        hits = self._hits.setdefault(user, torch.zeros(self.n_tables, self.n_buckets, dtype=torch.bool))
        if len(z):
            ids = bucket_ids(z, self.projections(z.shape[1]))
            hits[torch.arange(self.n_tables).expand_as(ids), ids] = True
        return self.coverage(user)

    def coverage(self, user: str) -> float:
        """The user's coverage in percent (0 for a user never seen)."""
        if user not in self._hits:
            return 0.0
        return float(self._hits[user].sum(dim=1).double().mean()) * 100.0 / self.n_buckets


# ---- per-user transformations ------------------------------------------------------------------


@dataclass(frozen=True)
class UserTransform:
    """One user's secret map of its answers: ``z * scale + shift`` (or ``z @ matrix + shift``),
    then ``pad`` appended and the columns reordered by ``perm`` (all optional)."""

    kind: str
    scale: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    pad: torch.Tensor | None = None
    perm: torch.Tensor | None = None

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        out = z
        if self.matrix is not None:
            out = out @ self.matrix
        if self.scale is not None:
            out = out * self.scale
        if self.shift is not None:
            out = out + self.shift
        if self.pad is not None:
            out = torch.cat([out, self.pad.expand(len(out), -1)], dim=1)
        if self.perm is not None:
            out = out[:, self.perm]
        return out


def draw_transform(kind: str, dim: int, pad_dim: int, generator: torch.Generator) -> UserTransform:
    """Draw a transformation of ``kind`` (:data:`TRANSFORMS`) for ``dim``-d answers."""
    _check_choice("transform", kind, TRANSFORMS)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator) * 2.0 - 1.0

    if kind == "none":
        return UserTransform(kind)
    if kind == "dense_affine":
        matrix = uniform(dim, dim)
        return UserTransform(kind, matrix=matrix, shift=uniform(dim))
    scale, shift = uniform(dim), uniform(dim)
    if kind == "affine":
        return UserTransform(kind, scale=scale, shift=shift)
    pad = torch.randn((1, pad_dim), generator=generator)
    perm = torch.randperm(dim + pad_dim, generator=generator)
    return UserTransform(kind, scale=scale, shift=shift, pad=pad, perm=perm)


# ---- the defense -------------------------------------------------------------------------------


@dataclass
class UserRecord:
    """What B4B did for one user, per call: queries answered, coverage after the call (percent)
    and the cost-function value sigma(coverage) (relative to ``reference_std`` when given)."""

    calls: list[int] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)
    sigma: list[float] = field(default_factory=list)


class B4B(OutputDefense):
    """The B4B defense (arXiv:2310.08571) for ``EncoderAPI(defenses=[B4B(...), ...])``; put it
    first so that it hashes the raw answers.

    Args:
        n_tables: LSH tables (official 20).
        n_hyperplanes: hyperplanes per table, 1..20 (official 12 -> 4,096 buckets).
        alpha, beta, lam: the cost function (:func:`b4b_sigma`); 0 < lam < alpha, beta > 0.
        reference_std: the representations' per-dimension std (a number, or one per dimension):
            sigma is then a multiple of it; None: sigma in output units, as the official code.
        transform: per-user transformation, one of :data:`TRANSFORMS`.
        pad_dim: constant coordinates appended by ``"affine_pad_shuffle"`` (default: as many
            as the answer has, the official DINO set-up); only for that transform.
        hash_source: ``"outputs"`` (the answers, before noise and transformation) or
            ``"embeddings"`` (the API's victim-side embeddings).
        seed: seeds the hash tables, each user's transformation and each user's noise.
    """

    name = "b4b"

    def __init__(
        self,
        n_tables: int = 20,
        n_hyperplanes: int = 12,
        alpha: float = 1.0,
        beta: float = 80.0,
        lam: float = 1e-7,
        reference_std: float | torch.Tensor | None = None,
        transform: str = "affine",
        pad_dim: int | None = None,
        hash_source: str = "outputs",
        seed: int = 0,
    ):
        super().__init__(seed)
        self.lsh = LSHCoverage(n_tables, n_hyperplanes, seed)
        _check_cost(alpha, beta, lam)
        _check_choice("transform", transform, TRANSFORMS)
        _check_choice("hash_source", hash_source, HASH_SOURCES)
        if pad_dim is not None:
            if transform != "affine_pad_shuffle":
                raise ValueError(f"pad_dim applies only to transform='affine_pad_shuffle', not {transform!r}.")
            _check_number("pad_dim", pad_dim, 0, integer=True)
        self.n_tables, self.n_hyperplanes = self.lsh.n_tables, self.lsh.n_hyperplanes
        self.alpha, self.beta, self.lam = float(alpha), float(beta), float(lam)
        self.reference_std = _check_reference_std(reference_std)
        ref = self.reference_std.max().item() if isinstance(self.reference_std, torch.Tensor) else self.reference_std
        top = b4b_sigma(100.0, alpha, beta, lam) * (1.0 if ref is None else ref)
        if not top < MAX_STD:
            raise ValueError(
                f"The noise std at 100% coverage would be {top:.3g}, beyond float32 answers (max {MAX_STD:g}); "
                "raise beta or lam, or lower alpha."
            )
        self.transform = transform
        self.pad_dim = None if pad_dim is None else int(pad_dim)
        self.hash_source = hash_source
        self._transforms: dict[tuple[str, int], UserTransform] = {}
        self.records: dict[str, UserRecord] = {}

    def params(self) -> dict[str, Any]:
        return {
            "n_tables": self.n_tables,
            "n_hyperplanes": self.n_hyperplanes,
            "alpha": self.alpha,
            "beta": self.beta,
            "lam": self.lam,
            "reference_std": self.reference_std,
            "transform": self.transform,
            "pad_dim": self.pad_dim,
            "hash_source": self.hash_source,
            "seed": self.seed,
        }

    # ---- pieces ------------------------------------------------------------------------------
    def sigma(self, coverage: float) -> float:
        """The cost function at ``coverage`` (percent), relative to ``reference_std`` if given."""
        return b4b_sigma(coverage, self.alpha, self.beta, self.lam)

    def noise_std(self, coverage: float, dim: int) -> float | torch.Tensor:
        """The noise std in output units (one value, or one per dimension)."""
        return _scaled(self.sigma(coverage), self.reference_std, dim)

    def padding(self, dim: int) -> int:
        """Constant coordinates appended to ``dim``-d answers."""
        if self.transform != "affine_pad_shuffle":
            return 0
        return dim if self.pad_dim is None else self.pad_dim

    def answer_dim(self, dim: int) -> int:
        """Size of the answers B4B returns for ``dim``-d inputs."""
        return dim + self.padding(dim)

    def transform_for(self, user: str, dim: int) -> UserTransform:
        """``user``'s secret transformation of ``dim``-d answers (a function of seed, user, dim)."""
        key = (user, dim)
        if key not in self._transforms:
            gen = _seeded("transform", self.seed, user, dim)
            self._transforms[key] = draw_transform(self.transform, dim, self.padding(dim), gen)
        return self._transforms[key]

    # ---- the defense itself ------------------------------------------------------------------
    def __call__(self, outputs: torch.Tensor, context: QueryContext) -> torch.Tensor:
        if outputs.ndim != 2:
            raise ValueError(f"B4B needs answers (N, D), got {tuple(outputs.shape)}.")
        hashed = outputs if self.hash_source == "outputs" else context.embeddings
        coverage = self.lsh.update(context.user, hashed)
        sigma = self.sigma(coverage)
        record = self.records.setdefault(context.user, UserRecord())
        record.calls.append(len(outputs))
        record.coverage.append(coverage)
        record.sigma.append(sigma)
        dim = outputs.shape[1]
        noise = torch.randn(outputs.shape, generator=self.generator_for(context.user))
        noisy = outputs.float() + noise * _scaled(sigma, self.reference_std, dim)
        return self.transform_for(context.user, dim)(noisy)

    # ---- what the chapter reads ---------------------------------------------------------------
    def coverage(self, user: str) -> float:
        """``user``'s current coverage in percent."""
        return self.lsh.coverage(user)

    def coverage_history(self, user: str) -> tuple[list[int], list[float]]:
        """(queries answered so far, coverage in percent) after each of ``user``'s calls."""
        record = self.records.get(user, UserRecord())
        return np.cumsum(record.calls, dtype=np.int64).tolist(), list(record.coverage)

    def sigma_history(self, user: str) -> list[float]:
        """sigma(coverage) of each of ``user``'s calls (relative to ``reference_std`` if given)."""
        return list(self.records.get(user, UserRecord()).sigma)


def find_b4b(api: EncoderAPI) -> B4B:
    """The (single) B4B defense of ``api``."""
    found = [d for d in api.defenses if isinstance(d, B4B)]
    if len(found) != 1:
        raise ValueError(f"The API must have exactly one B4B defense, it has {len(found)}.")
    return found[0]


def query_coverage(
    api: EncoderAPI, images: torch.Tensor, user: str, batch_size: int = 256
) -> tuple[list[int], list[float]]:
    """Send ``images`` to ``api`` as ``user`` in batches of ``batch_size`` (these are real,
    counted queries) and return (queries so far, coverage in percent) after each batch."""
    _check_number("batch_size", batch_size, 1, integer=True)
    b4b = find_b4b(api)
    sent, curve = [], []
    for s in range(0, len(images), batch_size):
        api.query(images[s : s + batch_size], user)
        sent.append(api.queries(user))
        curve.append(b4b.coverage(user))
    return sent, curve


def answer_dim(api: EncoderAPI) -> int:
    """Size of the answers ``api`` returns: its output size through every defense that resizes
    answers (B4B with padding)."""
    dim = api.output_dim
    for defense in api.defenses:
        resize = getattr(defense, "answer_dim", None)
        dim = resize(dim) if callable(resize) else dim
    return dim


__all__ = [
    "B4B",
    "HASH_SOURCES",
    "LSHCoverage",
    "TRANSFORMS",
    "UserRecord",
    "UserTransform",
    "answer_dim",
    "b4b_sigma",
    "bucket_ids",
    "draw_transform",
    "find_b4b",
    "lsh_projections",
    "query_coverage",
]
