"""Stealing losses: make a stolen encoder's outputs match a victim API's outputs.

Dziedzic et al., "On the Difficulty of Defending Self-Supervised Learning
against Model Extraction" (ICML 2022), train a stolen encoder ``f_s`` on
queries ``x`` so that ``f_s(x)`` matches the representation ``f_v(x)`` returned
by the victim API. The paper's loss table compares six losses for
this: MSE, InfoNCE, Soft Nearest Neighbours, SupCon, Wasserstein and Barlow
Twins. This module implements all six, plus ``barlow_official``, a
reconstruction of how the official code actually calls its Barlow Twins loss
(see :func:`barlow_twins_official_loss`).

Conventions shared by every loss
--------------------------------
* ``stolen`` has shape ``(N, D)`` and normally requires grad; ``victim`` has
  shape ``(N, D)``; row ``i`` of both is the same query image.
* ``victim`` is treated as a constant: it is detached inside every loss, so a
  backward pass never reaches the victim side (the attacker only sees the API's
  outputs).
* ``stolen`` and ``victim`` must have the same shape; otherwise a ``ValueError``
  naming both shapes is raised. An attacker whose architecture outputs another
  dimension has to add a projection head that maps to the victim's dimension.
* Every loss returns a scalar tensor in ``stolen``'s dtype.

Use :func:`get_loss` to obtain a configured callable
``loss(stolen, victim, labels=None)``; :data:`LOSSES` is the registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "StealingLoss",
    "LOSSES",
    "PAPER_LOSSES",
    "get_loss",
    "mse_loss",
    "infonce_loss",
    "nt_xent",
    "softnn_loss",
    "supcon_loss",
    "wasserstein_loss",
    "barlow_twins_loss",
    "barlow_twins_official_loss",
    "BARLOW_LAMBDA",
    "BATCHNORM_EPS",
]

#: Weight of the off-diagonal (redundancy-reduction) term of Barlow Twins,
#: as in Zbontar et al. (2021) and the paper's official code.
BARLOW_LAMBDA = 0.0051

#: Epsilon used when standardising along the batch for Barlow Twins. It is the
#: default of ``torch.nn.BatchNorm1d``, which the official code uses.
BATCHNORM_EPS = 1e-5


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------


def _check_pair(stolen: torch.Tensor, victim: torch.Tensor, loss: str) -> torch.Tensor:
    """Validate shapes and return the detached victim tensor."""
    if not isinstance(stolen, torch.Tensor) or not isinstance(victim, torch.Tensor):
        raise TypeError(f"{loss}: stolen and victim must be torch tensors")
    if stolen.dim() != 2 or victim.dim() != 2:
        raise ValueError(
            f"{loss}: expected 2-D (N, D) tensors, got stolen {tuple(stolen.shape)} and victim {tuple(victim.shape)}"
        )
    if stolen.shape != victim.shape:
        raise ValueError(
            f"{loss}: stolen shape {tuple(stolen.shape)} != victim shape "
            f"{tuple(victim.shape)}; the stolen encoder must output the victim's "
            "dimension (add a projection head otherwise) for the same images"
        )
    if stolen.shape[0] < 1:
        raise ValueError(f"{loss}: empty batch")
    return victim.detach().to(dtype=stolen.dtype, device=stolen.device)


def _check_temperature(temperature: Any, loss: str, allow_auto: bool = False) -> None:
    if allow_auto and isinstance(temperature, str):
        if temperature != "auto":
            raise ValueError(f"{loss}: temperature must be a positive number or 'auto', got {temperature!r}")
        return
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"{loss}: temperature must be a positive number, got {temperature!r}")
    if not temperature > 0 or temperature != temperature or temperature == float("inf"):
        raise ValueError(f"{loss}: temperature must be positive and finite, got {temperature!r}")


# --------------------------------------------------------------------------
# the losses
# --------------------------------------------------------------------------


def mse_loss(stolen: torch.Tensor, victim: torch.Tensor) -> torch.Tensor:
    """Mean squared error between stolen and victim representations.

    ``mean_{i,k} (stolen[i,k] - victim[i,k])**2`` over all ``N * D`` entries
    (``torch.nn.MSELoss()``, as in the official code). It is the paper's
    simplest stealing loss (Dziedzic et al., 2022).
    """
    victim = _check_pair(stolen, victim, "mse")
    return F.mse_loss(stolen, victim, reduction="mean")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""NT-Xent (SimCLR, Chen et al. 2020) over the 2N stacked, L2-normalised rows of z1 and z2.

    Every row is an anchor; its positive is the same image's row in the other half, and the
    other 2N-2 rows are negatives:
    :math:`\mathcal{L} = \frac{1}{2N}\sum_a -\log \frac{\exp(x_a^\top x_{p(a)}/T)}{\sum_{b\ne a}\exp(x_a^\top x_b/T)}`.
    SimCLR victims train with it on two augmented views; stealing uses it with the victim side
    detached (:func:`infonce_loss`).
    """
    n = z1.shape[0]
    x = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = x @ x.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=x.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(x.device)
    return F.cross_entropy(logits, targets)


def infonce_loss(stolen: torch.Tensor, victim: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    r"""InfoNCE for stealing, in the official code's form: NT-Xent over the 2N stacked points.

    Rows are the stolen and the (detached) victim representations of the same N images; the
    positive of stolen row i is victim row i and vice versa, and all other 2N-2 rows of the batch
    (stolen and victim) are negatives (book/paper_setup.md#setup-losses; van den Oord et al. 2018; Chen et al. 2020).
    Victim rows act as anchors too, but carry no gradient to the victim.
    """
    _check_temperature(temperature, "infonce")
    victim = _check_pair(stolen, victim, "infonce")
    return nt_xent(stolen, victim, temperature)


def _pairwise_sq_dists(x: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distances (M, M) via differences (no cancellation)."""
    diff = x.unsqueeze(1) - x.unsqueeze(0)
    return (diff * diff).sum(-1)


def _auto_temperature(sq_dists: torch.Tensor) -> float:
    """0.1 x median of the squared distances over distinct pairs (no grad)."""
    m = sq_dists.shape[0]
    with torch.no_grad():
        iu = torch.triu_indices(m, m, offset=1, device=sq_dists.device)
        # quantile(0.5) interpolates (= numpy.median); Tensor.median would
        # return the lower middle value for an even number of pairs
        med = torch.quantile(sq_dists.detach()[iu[0], iu[1]], 0.5).item()
    return max(0.1 * med, torch.finfo(sq_dists.dtype).tiny)


def softnn_loss(
    stolen: torch.Tensor,
    victim: torch.Tensor,
    temperature: float | str = 100.0,
) -> torch.Tensor:
    r"""Soft nearest-neighbour loss (Frosst, Papernot & Hinton, ICML 2019) for stealing.

    The ``2N`` points ``x = cat([stolen, victim])`` are labelled by image index
    (stolen ``i`` and victim ``i`` share label ``i``). With squared Euclidean
    distances :math:`d_{ab} = \lVert x_a - x_b\rVert^2` and temperature :math:`T`:

    .. math::

        \mathcal{L} = -\frac{1}{2N}\sum_{a=1}^{2N}
            \log \frac{\sum_{b \ne a,\ y_b = y_a} \exp(-d_{ab}/T)}
                      {\sum_{k \ne a} \exp(-d_{ak}/T)}

    Each point's only same-label neighbour is the other copy of its image, so
    the loss pulls ``stolen_i`` towards ``victim_i`` relative to all other
    points in the batch. Computed with ``logsumexp`` (no ``eps`` inside the
    log, unlike the official code).

    ``temperature``: default ``100`` (the official code's ``--temperaturesn``
    default, Dziedzic et al., 2022). ``"auto"`` sets
    ``T = 0.1 * median_{a<b} d_ab`` of the current batch, computed without
    grad; on small, low-dimensional representations a fixed ``T=100`` makes all
    ``exp(-d/T)`` close to 1 and the loss nearly flat, and this calibration
    gave better gradients in our small-scale runs.
    """
    _check_temperature(temperature, "softnn", allow_auto=True)
    victim = _check_pair(stolen, victim, "softnn")
    n = stolen.shape[0]
    if n < 2:
        raise ValueError("softnn: needs a batch of at least 2 images")
    x = torch.cat([stolen, victim], dim=0)
    d = _pairwise_sq_dists(x)
    t = _auto_temperature(d) if temperature == "auto" else float(temperature)
    logits = -d / t
    m = 2 * n
    eye = torch.eye(m, dtype=torch.bool, device=x.device)
    idx = torch.arange(m, device=x.device)
    partner = (idx + n) % m  # the other copy of the same image
    pos_mask = torch.zeros_like(eye)
    pos_mask[idx, partner] = True
    neg_inf = torch.finfo(logits.dtype).min
    log_num = logits.masked_fill(~pos_mask, neg_inf).logsumexp(dim=1)
    log_den = logits.masked_fill(eye, neg_inf).logsumexp(dim=1)
    return (log_den - log_num).mean()


def supcon_loss(
    stolen: torch.Tensor,
    victim: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 0.07,
) -> torch.Tensor:
    r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020) for stealing.

    The ``2N`` L2-normalised points ``z = cat([stolen, victim])`` get the query
    images' class labels (both copies of image ``i`` get ``labels[i]``). With
    :math:`P(a) = \{p \ne a : y_p = y_a\}` (never empty: it holds the other copy
    of image ``a``) and :math:`A(a) = \{b \ne a\}`:

    .. math::

        \mathcal{L} = \frac{1}{2N}\sum_{a=1}^{2N} \frac{-1}{|P(a)|}
            \sum_{p \in P(a)} \log
            \frac{\exp(z_a^\top z_p / T)}{\sum_{b \in A(a)} \exp(z_a^\top z_b / T)}

    This is the :math:`\mathcal{L}^{sup}_{out}` form averaged over anchors, i.e.
    ``SupConLoss`` of the reference implementation with ``contrast_mode='all'``
    and ``base_temperature == temperature`` (the official code's default,
    0.07). It needs labels, so it is a stronger-attacker variant in the paper
    (Dziedzic et al., 2022). Raises ``ValueError`` if ``labels`` is None.
    """
    _check_temperature(temperature, "supcon")
    victim = _check_pair(stolen, victim, "supcon")
    n = stolen.shape[0]
    if labels is None:
        raise ValueError("supcon: needs the query images' class labels (labels=...)")
    labels = torch.as_tensor(labels, device=stolen.device).reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"supcon: got {labels.shape[0]} labels for a batch of {n} images")
    z = F.normalize(torch.cat([stolen, victim], dim=0), dim=1)
    y = torch.cat([labels, labels], dim=0)
    m = 2 * n
    logits = z @ z.T / temperature
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    pos_mask = (y.unsqueeze(0) == y.unsqueeze(1)) & ~eye
    neg_inf = torch.finfo(logits.dtype).min
    log_den = logits.masked_fill(eye, neg_inf).logsumexp(dim=1, keepdim=True)
    log_prob = logits - log_den
    pos = pos_mask.to(logits.dtype)
    mean_log_prob_pos = (log_prob * pos).sum(dim=1) / pos.sum(dim=1)
    return -mean_log_prob_pos.mean()


def wasserstein_loss(stolen: torch.Tensor, victim: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    r"""1-D Wasserstein-1 distance between each stolen/victim pair, batch mean.

    Each representation (a row of ``D`` numbers) is turned into a histogram on
    the support ``0, 1, ..., D-1``:

    .. math:: p = \frac{x - \min_k x_k}{\sum_k (x_k - \min_k x_k) + \varepsilon}

    then :math:`W_1(p, q) = \sum_{k=0}^{D-1} |\mathrm{CDF}_p(k) - \mathrm{CDF}_q(k)|`
    and the loss is the mean over the ``N`` rows (Dziedzic et al., 2022).

    Normalisation choice: the official code divides each row by its sum
    (plus 1e-14) without any shift, which is not a distribution when the row
    has negative entries (and explodes when the sum is near zero). We first
    subtract the per-row minimum (so entries are >= 0) and then divide by the
    sum plus ``eps``. Consequences: the loss is invariant to adding a constant
    to, or positively rescaling, a row; a constant row maps to all zeros.
    """
    victim = _check_pair(stolen, victim, "wasserstein")

    def to_hist(x: torch.Tensor) -> torch.Tensor:
        x = x - x.min(dim=1, keepdim=True).values
        return x / (x.sum(dim=1, keepdim=True) + eps)

    cdf_s = torch.cumsum(to_hist(stolen), dim=1)
    cdf_v = torch.cumsum(to_hist(victim), dim=1)
    return (cdf_s - cdf_v).abs().sum(dim=1).mean()


def _standardise(z: torch.Tensor, eps: float = BATCHNORM_EPS) -> torch.Tensor:
    """Per-dimension standardisation along the batch, like BatchNorm1d(affine=False)."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def _barlow(za: torch.Tensor, zb: torch.Tensor, lambd: float) -> torch.Tensor:
    n = za.shape[0]
    c = _standardise(za).T @ _standardise(zb) / n
    on = torch.diagonal(c)
    on_diag = (1.0 - on).pow(2).sum()
    off_diag = c.pow(2).sum() - on.pow(2).sum()
    return on_diag + lambd * off_diag


def _check_lambd(lambd: Any, loss: str) -> None:
    if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not lambd >= 0:
        raise ValueError(f"{loss}: lambd must be a non-negative number, got {lambd!r}")


def barlow_twins_loss(stolen: torch.Tensor, victim: torch.Tensor, lambd: float = BARLOW_LAMBDA) -> torch.Tensor:
    r"""Barlow Twins (Zbontar et al., ICML 2021) between stolen and victim outputs
    of the SAME images (the correct pairing for stealing).

    Both sides are standardised along the batch (per dimension: subtract the
    mean, divide by ``sqrt(biased variance + 1e-5)``, exactly what
    ``BatchNorm1d(affine=False)`` does in training mode, as in the official
    code); then :math:`C = z_s^\top z_v / N` and

    .. math:: \mathcal{L} = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2,
              \quad \lambda = 0.0051.

    Needs ``N >= 2`` (a batch statistic). Dziedzic et al. (2022) list Barlow
    Twins among their stealing losses; see :func:`barlow_twins_official_loss`
    for how their code pairs the inputs.
    """
    _check_lambd(lambd, "barlow")
    victim = _check_pair(stolen, victim, "barlow")
    if stolen.shape[0] < 2:
        raise ValueError("barlow: needs a batch of at least 2 images")
    return _barlow(stolen, victim, float(lambd))


def barlow_twins_official_loss(
    stolen: torch.Tensor, victim: torch.Tensor, lambd: float = BARLOW_LAMBDA
) -> torch.Tensor:
    r"""Reconstruction of the official code's Barlow Twins stealing loss.

    With one view per query (the default), the official ``steal`` loop splits
    the batch of images into halves, ``x1 = images[:N//2]`` and
    ``x2 = images[N//2:]``, and computes

    ``P1 = cat([f_s(x1), f_v(x1)])``, ``P2 = cat([f_s(x2), f_v(x2)])``,
    ``loss = barlow(P1, P2)``.

    Here, with ``h = N // 2`` (an odd last row is dropped):

    * ``view_a = cat([stolen[:h],   victim[:h]])``
    * ``view_b = cat([stolen[h:2h], victim[h:2h]])``
    * loss = the Barlow Twins formula of :func:`barlow_twins_loss` between
      ``view_a`` and ``view_b`` (batch of ``2h`` rows, gradient reaching the
      stolen rows of both views; victim rows detached).

    Why this is wrong for stealing: row ``r`` of ``view_a`` is paired with row
    ``r`` of ``view_b``, i.e. image ``r`` with image ``h + r`` -- different
    images -- and stolen rows are paired with stolen rows, victim rows with
    victim rows. ``stolen_i`` is never aligned with ``victim_i``; the victim
    affects the gradient (almost) only through the per-dimension batch
    statistics (mean/variance) of the mixed views. Kept under its own name so
    the difference from the correct pairing can be shown (Dziedzic et al., 2022;
    Zbontar et al., 2021).
    """
    _check_lambd(lambd, "barlow_official")
    victim = _check_pair(stolen, victim, "barlow_official")
    h = stolen.shape[0] // 2
    if h < 1:
        raise ValueError("barlow_official: needs a batch of at least 2 images")
    view_a = torch.cat([stolen[:h], victim[:h]], dim=0)
    view_b = torch.cat([stolen[h : 2 * h], victim[h : 2 * h]], dim=0)
    return _barlow(view_a, view_b, float(lambd))


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StealingLoss:
    """A registered stealing loss.

    ``fn`` is one of the functions above; ``needs_labels`` says whether it takes
    the query images' class labels. Calling the object calls ``fn`` with the
    default parameters overridden by ``**params``.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    needs_labels: bool
    description: str

    @property
    def params(self) -> dict[str, Any]:
        """Tunable parameters and their defaults."""
        sig = inspect.signature(self.fn)
        return {k: p.default for k, p in sig.parameters.items() if k not in ("stolen", "victim", "labels")}

    def __call__(
        self,
        stolen: torch.Tensor,
        victim: torch.Tensor,
        labels: torch.Tensor | None = None,
        **params: Any,
    ) -> torch.Tensor:
        return get_loss(self.name, **params)(stolen, victim, labels=labels)


LOSSES: dict[str, StealingLoss] = {
    loss.name: loss
    for loss in (
        StealingLoss("mse", mse_loss, False, "mean squared error"),
        StealingLoss(
            "infonce",
            infonce_loss,
            False,
            "InfoNCE: stolen_i vs victim_j cosine logits / T, positive j = i",
        ),
        StealingLoss(
            "softnn",
            softnn_loss,
            False,
            "soft nearest-neighbour loss over stacked stolen+victim, label = image",
        ),
        StealingLoss(
            "supcon",
            supcon_loss,
            True,
            "supervised contrastive loss over stacked stolen+victim, label = class",
        ),
        StealingLoss(
            "wasserstein",
            wasserstein_loss,
            False,
            "1-D Wasserstein-1 between min-shifted, sum-normalised representations",
        ),
        StealingLoss(
            "barlow",
            barlow_twins_loss,
            False,
            "Barlow Twins between stolen and victim outputs of the same images",
        ),
        StealingLoss(
            "barlow_official",
            barlow_twins_official_loss,
            False,
            "official code's Barlow pairing: first vs second half of the batch "
            "(different images; stolen never aligned with victim)",
        ),
    )
}

#: The six losses compared in the paper (``barlow`` with the correct pairing).
PAPER_LOSSES: tuple[str, ...] = ("mse", "infonce", "softnn", "supcon", "wasserstein", "barlow")


def get_loss(name: str, **params: Any) -> Callable[..., torch.Tensor]:
    """Return ``loss(stolen, victim, labels=None) -> scalar tensor`` for ``name``.

    ``params`` override the loss's defaults, e.g.
    ``get_loss("infonce", temperature=0.2)``. Raises ``ValueError`` for an
    unknown name (listing the known ones), ``TypeError`` for a parameter the
    loss does not accept (naming the accepted ones) and ``ValueError`` for an
    invalid value (e.g. ``temperature <= 0``). ``labels`` is ignored by losses
    that do not need it; ``supcon`` raises ``ValueError`` when it is None.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}")
    entry = LOSSES[name]
    accepted = entry.params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"loss {name!r} got unexpected parameter(s) {unknown}; accepted: {sorted(accepted) or 'none'}")
    if "temperature" in params:
        _check_temperature(params["temperature"], name, allow_auto=(name == "softnn"))
    if "lambd" in params:
        _check_lambd(params["lambd"], name)
    fn = entry.fn
    needs_labels = entry.needs_labels
    bound = dict(params)

    def loss(stolen: torch.Tensor, victim: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if needs_labels:
            return fn(stolen, victim, labels, **bound)
        return fn(stolen, victim, **bound)

    loss.__name__ = f"{name}_loss"
    loss.__qualname__ = loss.__name__
    loss.__doc__ = fn.__doc__
    loss.loss_name = name  # type: ignore[attr-defined]
    loss.params = {**accepted, **bound}  # type: ignore[attr-defined]
    loss.needs_labels = needs_labels  # type: ignore[attr-defined]
    return loss
