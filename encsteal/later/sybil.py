"""The adaptive sybil attacker against B4B (arXiv:2310.08571): several accounts, one stolen copy.

B4B's noise grows with each account's coverage, so the attacker splits its query images
between ``n_accounts`` accounts (each account's coverage, hence its noise, stays lower). B4B
also answers every account in its own secret coordinates, so before pooling, the attacker sends
``n_overlap`` extra images to *every* account (paid on each) and fits, for each account k >= 1, an
affine map from k's answer space into account 0's: least squares ``z_k W + b ~ z_0`` with the
bias unpenalised and an optional ridge penalty on W (:func:`fit_affine_map`). The official
end-to-end code trains a small MLP instead; B4B's transformations are affine (the padded
coordinates are constant), so a linear map with bias can invert them exactly on noiseless
answers given enough overlap images, and noise is all that limits it.

Design: :class:`SybilAPI` is a facade with the attributes :func:`encsteal.attack.steal` reads
from an API (``query``, ``queries``, ``remaining``, ``budget``, ``describe``, ``output_dim``,
``mode``, ``defenses``, ``price_per_1k``, ``device``, ``record_replayed_queries``). Each query
batch is split into contiguous near-equal parts, one per account, and the answers come back
mapped into account 0's space, so the one stealing loop trains the copy unchanged.
:func:`sybil_steal` runs the whole attack and reports every account's queries: the total is the
sum over accounts of stealing and overlap queries.

Standardised answers (``standardize=True``, an adaptive step of this package, not of the B4B
code): the facade also z-scores every coordinate of the (mapped) answers with the mean and std of
account 0's answers to the overlap images. B4B's per-coordinate transform (``"affine"``) is then
undone up to the sign of each coordinate, a map that preserves inner products, so losses that
compare directions (InfoNCE, Cont-Steal, StolenEncoder) see the victim's geometry again instead
of one dominated by the secret shift. With one account this is the whole adaptation (the overlap
images are then only spent on the statistics); a coordinate without spread is centred only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from encsteal.api import EncoderAPI
from encsteal.attack import StealConfig, StealResult, steal
from encsteal.cache import ResultCache, tensor_fingerprint
from encsteal.data.imageset import ImageSet
from encsteal.defenses import _check_number
from encsteal.fidelity import mean_cosine_similarity
from encsteal.later.b4b import answer_dim
from encsteal.runtime import RunOptions


@dataclass(frozen=True)
class AffineMap:
    """``x @ weight + bias`` (float64 parameters; float32 answers in and out)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"Expected answers (N, {self.weight.shape[0]}), got {tuple(x.shape)}.")
        return (x.double() @ self.weight + self.bias).float()


def fit_affine_map(source: torch.Tensor, target: torch.Tensor, ridge: float = 0.0) -> AffineMap:
    """Least-squares affine map from ``source`` (N, D_in) to ``target`` (N, D_out) rows.

    Solved in float64 on centred data with ``torch.linalg.lstsq`` (gelsd: minimum-norm, so
    constant or collinear source columns such as B4B's padding are harmless); the bias is the
    difference of the means. ``ridge`` > 0 adds ``ridge * ||W||^2`` (not on the bias). Without
    noise, N >= D_in + 1 rows in general position recover an affine relation exactly.
    """
    _check_number("ridge", ridge, 0.0)
    if source.ndim != 2 or target.ndim != 2 or len(source) != len(target):
        raise ValueError(
            f"source and target must be (N, D) with the same N, got {tuple(source.shape)}, {tuple(target.shape)}."
        )
    if len(source) == 0:
        raise ValueError("No pairs to fit the map on: pass at least one overlap image.")
    x, y = source.detach().cpu().double(), target.detach().cpu().double()
    mx, my = x.mean(dim=0), y.mean(dim=0)
    xc, yc = x - mx, y - my
    if ridge > 0:
        xc = torch.cat([xc, math.sqrt(ridge) * torch.eye(x.shape[1], dtype=torch.float64)])
        yc = torch.cat([yc, torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64)])
    weight = torch.linalg.lstsq(xc, yc, driver="gelsd").solution
    return AffineMap(weight, my - mx @ weight)


def mapping_quality(mapped: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine between mapped answers and the reference answers of the same images."""
    return mean_cosine_similarity(mapped, reference)


def split_sizes(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous near-equal shares of ``n`` items (the first ones larger)."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class SybilAPI:
    """``api`` seen through ``n_accounts`` accounts ``"{user}#k"``, answers in account 0's space.

    Call :meth:`calibrate` (the overlap images) before querying when ``n_accounts`` > 1 or
    ``standardize`` is set. ``budget`` and ``remaining`` are the sums over the accounts.
    """

    def __init__(
        self,
        api: EncoderAPI,
        n_accounts: int = 2,
        user: str = "attacker",
        ridge: float = 0.0,
        standardize: bool = False,
    ):
        _check_number("n_accounts", n_accounts, 1, integer=True)
        _check_number("ridge", ridge, 0.0)
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}.")
        if api.mode != "ssl":
            raise ValueError(f"The sybil attack needs an SSL API (mode 'ssl'), got mode {api.mode!r}.")
        if not isinstance(user, str) or not user:
            raise ValueError(f"user must be a non-empty string, got {user!r}.")
        self.api, self.n_accounts, self.user, self.ridge = api, int(n_accounts), user, float(ridge)
        self.standardize = standardize
        self.accounts = [f"{user}#{k}" for k in range(self.n_accounts)]
        ready = self.n_accounts == 1 and not standardize
        self.maps: list[AffineMap | None] | None = [None] if ready else None
        self.center: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.quality: dict[str, float] = {}
        self.overlap_queries = 0

    # ---- attributes steal() reads ------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self.api.mode

    @property
    def output(self) -> str:
        return self.api.output

    @property
    def device(self) -> torch.device:
        return self.api.device

    @property
    def defenses(self) -> list:
        return self.api.defenses

    @property
    def price_per_1k(self) -> float:
        return self.api.price_per_1k

    @property
    def output_dim(self) -> int:
        """Size of account 0's answers (B4B's padding included)."""
        return answer_dim(self.api)

    @property
    def budget(self) -> int | None:
        return None if self.api.budget is None else self.api.budget * self.n_accounts

    def _check_user(self, user: str) -> None:
        if user != self.user:
            raise ValueError(f"This sybil facade serves user {self.user!r}, got {user!r}.")

    def queries(self, user: str = "attacker") -> int:
        self._check_user(user)
        return sum(self.api.queries(a) for a in self.accounts)

    def spent(self, user: str = "attacker") -> float:
        return self.queries(user) * self.price_per_1k / 1000.0

    def remaining(self, user: str = "attacker") -> int | None:
        self._check_user(user)
        left = [self.api.remaining(a) for a in self.accounts]
        return None if left[0] is None else sum(left)  # type: ignore[arg-type]

    def account_queries(self) -> dict[str, int]:
        return {a: self.api.queries(a) for a in self.accounts}

    def describe(self) -> dict:
        """The API's terms plus the sybil set-up (accounts, their counts, the fitted maps)."""
        fitted = [t for m in (self.maps or []) if m is not None for t in (m.weight, m.bias)]
        stats = [t for t in (self.center, self.scale) if t is not None]
        return {
            **self.api.describe(),
            "output_dim": self.output_dim,
            "sybil": {
                "accounts": self.accounts,
                "ridge": self.ridge,
                "maps": tensor_fingerprint(*fitted) if fitted else None,
                "standardize": tensor_fingerprint(*stats) if stats else False,
                "account_queries": list(self.account_queries().values()),
            },
        }

    def record_replayed_queries(self, user: str, n: int) -> None:
        """Spread ``n`` replayed queries over the accounts as :meth:`query` would."""
        self._check_user(user)
        for account, share in zip(self.accounts, split_sizes(n, self.n_accounts)):
            self.api.record_replayed_queries(account, share)

    # ---- the attack --------------------------------------------------------------------------
    def _ask_all(self, images: torch.Tensor, account: str, chunk: int) -> torch.Tensor:
        return torch.cat([self.api.query(images[s : s + chunk], account) for s in range(0, len(images), chunk)])

    def calibrate(self, overlap: torch.Tensor, holdout: float = 0.2, chunk: int = 1024) -> dict[str, float]:
        """Send ``overlap`` images to every account, fit each account's map into account 0's
        space on the first ``(1 - holdout)`` share, and return the mapping quality (mean cosine
        with account 0's answers) on the held-out rest, per account k >= 1 (NaN with no holdout).
        Every overlap image costs one query on every account; with one account nothing is mapped.
        With ``standardize``, the mean and std of account 0's answers to all overlap images are
        kept for :meth:`query` (at least 2 overlap images)."""
        _check_number("holdout", holdout, 0.0, 1.0)
        _check_number("chunk", chunk, 1, integer=True)
        if not isinstance(overlap, torch.Tensor) or overlap.ndim != 4:
            raise ValueError("overlap must be a tensor of images (N, C, H, W).")
        n_hold = int(round(holdout * len(overlap)))
        n_fit = len(overlap) - n_hold
        if self.n_accounts > 1 and n_fit < 1:
            raise ValueError(
                f"{len(overlap)} overlap images with holdout={holdout} leave none to fit the maps; send more images."
            )
        if self.standardize and len(overlap) < 2:
            raise ValueError(
                f"standardize needs the answers to at least 2 overlap images for their statistics; got {len(overlap)}."
            )
        if len(overlap) == 0:
            self.maps, self.quality = [None], {}
            return {}
        answers = [self._ask_all(overlap, a, chunk) for a in self.accounts]
        self.overlap_queries += len(overlap) * self.n_accounts
        maps: list[AffineMap | None] = [None]
        quality: dict[str, float] = {}
        for account, z in zip(self.accounts[1:], answers[1:]):
            m = fit_affine_map(z[:n_fit], answers[0][:n_fit], self.ridge)
            maps.append(m)
            quality[account] = mapping_quality(m(z[n_fit:]), answers[0][n_fit:]) if n_hold else float("nan")
        if self.standardize:
            z0 = answers[0].double()
            spread = z0.std(dim=0, unbiased=False)
            self.center = z0.mean(dim=0)
            self.scale = torch.where(spread > 1e-12 * spread.max().clamp_min(1e-300), spread, torch.ones_like(spread))
        self.maps, self.quality = maps, quality
        return quality

    def query(self, images: torch.Tensor, user: str = "attacker") -> torch.Tensor:
        """Answer ``images`` by splitting them between the accounts; answers in account 0's space."""
        self._check_user(user)
        if self.maps is None:
            raise RuntimeError(
                "Call calibrate(overlap_images) before querying with several accounts or standardised answers."
            )
        out, start = [], 0
        for account, m, size in zip(self.accounts, self.maps, split_sizes(len(images), self.n_accounts)):
            if size:
                z = self.api.query(images[start : start + size], account)
                out.append(z if m is None else m(z))
            start += size
        answers = torch.cat(out) if out else torch.empty(0, self.output_dim)
        if self.center is not None and self.scale is not None:
            answers = ((answers.double() - self.center) / self.scale).float()
        return answers


@dataclass
class SybilResult:
    """A sybil attack: the stolen copy and every query it cost."""

    steal: StealResult
    account_queries: dict[str, int]
    stealing_queries: int
    overlap_queries: int
    mapping_quality: dict[str, float]

    @property
    def total_queries(self) -> int:
        return self.stealing_queries + self.overlap_queries


def sybil_steal(
    api: EncoderAPI,
    queries: ImageSet | torch.Tensor,
    overlap: torch.Tensor,
    config: StealConfig,
    n_accounts: int = 2,
    ridge: float = 0.0,
    holdout: float = 0.2,
    user: str = "attacker",
    standardize: bool = False,
    query_labels: torch.Tensor | None = None,
    input_size: int | None = None,
    cache: ResultCache | None = None,
    device: str = "auto",
    progress: bool = True,
    options: RunOptions | None = None,
) -> SybilResult:
    """Steal through ``n_accounts`` accounts: calibrate the maps on ``overlap`` (sent to every
    account), then run :func:`encsteal.attack.steal` through a :class:`SybilAPI` on ``queries``
    (answers z-scored with ``standardize``, see the module docstring)."""
    facade = SybilAPI(api, n_accounts, user, ridge, standardize)
    before = facade.account_queries()
    quality = facade.calibrate(overlap, holdout)
    result = steal(
        facade,  # type: ignore[arg-type]
        queries,
        config,
        query_labels=query_labels,
        input_size=input_size,
        user=user,
        cache=cache,
        device=device,
        progress=progress,
        options=options,
    )
    after = facade.account_queries()
    spent = {a: after[a] - before[a] for a in facade.accounts}
    return SybilResult(result, spent, result.queries, facade.overlap_queries, quality)


__all__ = [
    "AffineMap",
    "SybilAPI",
    "SybilResult",
    "fit_affine_map",
    "mapping_quality",
    "split_sizes",
    "sybil_steal",
]
