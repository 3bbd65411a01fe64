"""Losses of two later encoder-stealing attacks: StolenEncoder (arXiv:2201.05889) and Cont-Steal
(arXiv:2201.07513).

They follow the conventions of :mod:`encsteal.losses`: ``loss(stolen, victim, labels=None)`` on
``(N, D)`` tensors whose row ``i`` is the same query image, the victim side detached, a scalar in
``stolen``'s dtype, and a ``ValueError`` naming both shapes when they differ. Neither uses labels.

* ``stolenencoder``: both sides L2-normalised, then the plain (unsquared) Euclidean distance
  between each stolen row and its victim row, averaged over the batch (``distance="l2"``, the
  default of the StolenEncoder code), or the negative mean cosine similarity (``"cosine"``).
  For unit vectors ``|a - b| = sqrt(2 - 2 cos(a, b))``: both rank pairs alike but weight the
  gradients differently. The augmented term of StolenEncoder (``lambda / k`` times the same
  distance on ``k`` local augmentations) is a training mode, not a loss: see
  ``StealConfig(augment="plain_and_augmented")`` in :mod:`encsteal.attack`, which works with any loss.
* ``contsteal``: a contrastive loss between the stolen embedding ``s_i`` of one augmented view
  and the victim's answer ``t_i`` for another view of the same image, in the form of a widely used
  third-party re-implementation: temperature 0.07, positive ``(s_i, t_i)``, negatives
  ``s_i . t_j`` and ``s_i . s_j`` for ``j != i``, stolen rows as the only anchors. The official
  Cont-Steal code instead uses NT-Xent over the 2N stacked rows with temperature 0.5; that is
  exactly ``infonce`` of :mod:`encsteal.losses` with ``temperature=0.5``.

Use :func:`get_later_loss` for a configured callable; :data:`LATER_LOSSES` is the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from encsteal.losses import StealingLoss, _check_pair, _check_temperature

__all__ = [
    "DISTANCES",
    "LaterLoss",
    "LATER_LOSSES",
    "get_later_loss",
    "stolenencoder_loss",
    "contsteal_loss",
]

#: The distances of :func:`stolenencoder_loss`.
DISTANCES: tuple[str, ...] = ("l2", "cosine")


def _check_distance(distance: Any) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"stolenencoder: unknown distance {distance!r}; allowed: {', '.join(DISTANCES)}")


def stolenencoder_loss(stolen: torch.Tensor, victim: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    r"""StolenEncoder's distance (Liu et al., CCS 2022, arXiv:2201.05889) between stolen and victim rows.

    With :math:`\hat a = a / \lVert a\rVert_2` for every row,

    * ``distance="l2"``: :math:`\frac{1}{N}\sum_i \lVert \hat s_i - \hat v_i\rVert_2` (the norm,
      not its square; 0 when every stolen row points where its victim row does, at most 2);
    * ``distance="cosine"``: :math:`-\frac{1}{N}\sum_i \hat s_i^\top \hat v_i` (-1 at best).

    The gradient of the norm at a zero distance is taken as 0 (PyTorch's convention).
    """
    _check_distance(distance)
    victim = _check_pair(stolen, victim, "stolenencoder")
    s, v = F.normalize(stolen, dim=1), F.normalize(victim, dim=1)
    if distance == "l2":
        return torch.linalg.vector_norm(s - v, dim=1).mean()
    return -(s * v).sum(dim=1).mean()


def contsteal_loss(stolen: torch.Tensor, victim: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    r"""Cont-Steal's contrastive stealing loss (Sha et al., CVPR 2023, arXiv:2201.07513).

    ``stolen`` row ``i`` is the stolen encoder's embedding ``s_i`` of one view of image ``i``,
    ``victim`` row ``i`` the victim's answer ``t_i`` for another view of the same image. Both are
    L2-normalised; with :math:`T` the temperature,

    .. math::

        \mathcal{L} = \frac{1}{N}\sum_{i=1}^{N} \Big[ -\frac{s_i^\top t_i}{T}
            + \log\Big(\sum_{j \ne i} e^{s_i^\top t_j / T} + \sum_{j \ne i} e^{s_i^\top s_j / T}\Big)\Big].

    The positive is left OUT of the denominator, as in the third-party re-implementation whose
    form and temperature (0.07) are followed here (a decoupled contrastive loss): the pull
    towards ``t_i`` does not fade once ``t_i`` dominates the other candidates, and the loss is
    not bounded below by 0 (it is negative once the positive beats the negatives). A standard
    InfoNCE puts the positive in the denominator; the official code's 2N-row NT-Xent with
    temperature 0.5 (positive included, victim rows anchors too) is ``infonce`` of
    :mod:`encsteal.losses` with ``temperature=0.5``. Needs ``N >= 2`` (there are no negatives
    otherwise).
    """
    _check_temperature(temperature, "contsteal")
    victim = _check_pair(stolen, victim, "contsteal")
    n = stolen.shape[0]
    if n < 2:
        raise ValueError("contsteal: needs a batch of at least 2 images (the other images are the negatives)")
    s, t = F.normalize(stolen, dim=1), F.normalize(victim, dim=1)
    positive = (s * t).sum(dim=1) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    neg_inf = torch.finfo(s.dtype).min
    negatives = torch.cat([(s @ t.T).masked_fill(eye, neg_inf), (s @ s.T).masked_fill(eye, neg_inf)], dim=1)
    return (torch.logsumexp(negatives / temperature, dim=1) - positive).mean()


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LaterLoss(StealingLoss):
    """A registered loss of a later attack: :class:`~encsteal.losses.StealingLoss` whose call
    goes through :func:`get_later_loss` (so its parameters are validated the same way)."""

    def __call__(
        self,
        stolen: torch.Tensor,
        victim: torch.Tensor,
        labels: torch.Tensor | None = None,
        **params: Any,
    ) -> torch.Tensor:
        return get_later_loss(self.name, **params)(stolen, victim, labels=labels)


LATER_LOSSES: dict[str, LaterLoss] = {
    loss.name: loss
    for loss in (
        LaterLoss(
            "stolenencoder",
            stolenencoder_loss,
            False,
            "StolenEncoder: mean L2 distance (or negative cosine) between L2-normalised stolen and victim rows",
        ),
        LaterLoss(
            "contsteal",
            contsteal_loss,
            False,
            "Cont-Steal: s_i vs t_i positive, s_i.t_j and s_i.s_j (j != i) negatives, positive not in the denominator",
        ),
    )
}


def get_later_loss(name: str, **params: Any) -> Callable[..., torch.Tensor]:
    """Return ``loss(stolen, victim, labels=None) -> scalar tensor`` for the later attack's loss ``name``.

    ``params`` override the defaults (``distance`` of ``stolenencoder``, ``temperature`` of
    ``contsteal``). Raises ``ValueError`` for an unknown name (listing the known ones) or an invalid
    value, and ``TypeError`` for a parameter the loss does not accept (naming the accepted ones),
    all before any tensor is seen. ``labels`` is ignored.
    """
    if name not in LATER_LOSSES:
        raise ValueError(f"unknown later loss {name!r}; known: {', '.join(LATER_LOSSES)}")
    entry = LATER_LOSSES[name]
    accepted = entry.params
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"loss {name!r} got unexpected parameter(s) {unknown}; accepted: {sorted(accepted)}")
    if "temperature" in params:
        _check_temperature(params["temperature"], name)
    if "distance" in params:
        _check_distance(params["distance"])
    fn, bound = entry.fn, dict(params)

    def loss(stolen: torch.Tensor, victim: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return fn(stolen, victim, **bound)

    loss.__name__ = f"{name}_loss"
    loss.__qualname__ = loss.__name__
    loss.__doc__ = fn.__doc__
    loss.loss_name = name  # type: ignore[attr-defined]
    loss.params = {**accepted, **bound}  # type: ignore[attr-defined]
    loss.needs_labels = False  # type: ignore[attr-defined]
    return loss
