"""StolenEncoder (arXiv:2201.05889) and Cont-Steal (arXiv:2201.07513) as configurations of the one
stealing loop, :func:`encsteal.attack.steal`, so they share its API, query accounting and training.

* StolenEncoder (:func:`stolenencoder_config`): each query image is sent ONCE, plain; the stolen
  encoder is trained on the image and on k fresh augmentations of it per epoch, all pulled
  towards the one cached answer with the ``stolenencoder`` distance
  (``augment="plain_and_augmented"``, lambda = ``augment_weight``, k = ``views``). Queries: the
  number of distinct images.
* Cont-Steal (:func:`contsteal_config`): the victim answers one augmented view of each image and
  the stolen encoder sees an independent view, under the ``contsteal`` contrastive loss
  (``augment="independent_views"``). Queries: the number of images (one augmented view each,
  answered once; the stolen side gets a fresh view every epoch), or images x epochs with
  ``requery_every_epoch=True`` (the victim answers a fresh view every epoch).

The presets fix what defines each attack (loss, augmentation mode and their parameters) and
leave the training scale (epochs, batch size, optimiser, learning rate) to the caller, so that
attacks are compared under one training budget. The settings of the released code are kept in
:data:`STOLENENCODER_CODE_SETTINGS` and :data:`CONTSTEAL_CODE_SETTINGS` for those who want them,
e.g. ``stolenencoder_config(**STOLENENCODER_CODE_SETTINGS)``.

Differences from the released code worth knowing: the augmentation is
:class:`encsteal.augment.Augment` (crop, flip, rotation, jitter) for both attacks, whereas the
StolenEncoder code uses flip, colour jitter and grayscale without crop, and the Cont-Steal code
RandAugment with crop and flip.
"""

from __future__ import annotations

from typing import Any

from encsteal.attack import StealConfig

__all__ = [
    "STOLENENCODER_CODE_SETTINGS",
    "CONTSTEAL_CODE_SETTINGS",
    "stolenencoder_config",
    "contsteal_config",
]

#: Training settings of the StolenEncoder code's runners (SGD with momentum 0.9, lr 1e-3,
#: weight decay 5e-4, batch 64, 100 epochs); arXiv:2201.05889.
STOLENENCODER_CODE_SETTINGS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 1e-3,
    "weight_decay": 5e-4,
    "batch_size": 64,
    "epochs": 100,
}

#: Training settings of the third-party Cont-Steal re-implementation whose loss form
#: :func:`encsteal.later.losses.contsteal_loss` follows (Adam, lr 1e-3, weight decay 1e-4,
#: batch 100, 100 epochs); arXiv:2201.07513.
CONTSTEAL_CODE_SETTINGS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "batch_size": 100,
    "epochs": 100,
}


def stolenencoder_config(
    augment_weight: float = 20.0, views: int = 1, distance: str = "l2", **overrides: Any
) -> StealConfig:
    """StolenEncoder's attack as a :class:`~encsteal.attack.StealConfig`.

    ``augment_weight`` is lambda and ``views`` is k (default 20 and 1, as the code's evaluation
    runners use; lambda = 0 is the no-augmentation baseline), ``distance`` that of
    :func:`~encsteal.later.losses.stolenencoder_loss` (``"l2"`` or ``"cosine"``). ``overrides`` set
    any other field (epochs, batch_size, optimizer, lr, seed, ...); the loss and the augmentation
    mode are what make it StolenEncoder and cannot be overridden.
    """
    _refuse(overrides, ("loss", "loss_params", "augment"), "stolenencoder_config")
    return StealConfig(
        loss="stolenencoder",
        loss_params={"distance": distance},
        augment="plain_and_augmented",
        augment_weight=augment_weight,
        views=views,
        **overrides,
    )


def contsteal_config(temperature: float = 0.07, requery_every_epoch: bool = False, **overrides: Any) -> StealConfig:
    """Cont-Steal's attack as a :class:`~encsteal.attack.StealConfig`.

    ``temperature`` is that of :func:`~encsteal.later.losses.contsteal_loss` (0.07 as in the
    re-implementation; the official code's form is ``infonce`` with 0.5, used through
    :class:`~encsteal.attack.StealConfig` directly). ``requery_every_epoch=True`` has the victim
    answer a fresh augmented view every epoch (queries = images x epochs) instead of one view per
    image (queries = images). ``overrides`` set any other field; the loss and the augmentation
    mode cannot be overridden.
    """
    _refuse(overrides, ("loss", "loss_params", "augment"), "contsteal_config")
    return StealConfig(
        loss="contsteal",
        loss_params={"temperature": temperature},
        augment="independent_views",
        requery_every_epoch=requery_every_epoch,
        **overrides,
    )


def _refuse(overrides: dict[str, Any], fixed: tuple[str, ...], preset: str) -> None:
    clash = sorted(set(overrides) & set(fixed))
    if clash:
        raise ValueError(
            f"{preset} fixes {', '.join(fixed)}; got {', '.join(clash)}. "
            "Build a StealConfig directly for another choice."
        )
