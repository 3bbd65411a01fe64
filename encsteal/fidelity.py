"""Fidelity between stolen and victim representations.

Dziedzic et al. (ICML 2022) judge a stolen encoder mainly by downstream
accuracy, but also by how close its representations are to the victim's on the
same images. Two measures are provided, both computed in float64 on torch
tensors or numpy arrays (any array-like of shape ``(N, D)``):

* :func:`mean_cosine_similarity` -- rowwise cosine similarity between the
  stolen and victim representations of the same images, averaged; needs equal
  dimensions.
* :func:`linear_cka` -- linear Centered Kernel Alignment (Kornblith et al.,
  ICML 2019); invariant to orthogonal transforms and isotropic scaling, and
  defined when the two dimensions differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["mean_cosine_similarity", "linear_cka", "as_float64"]


def as_float64(x: Any) -> np.ndarray:
    """Convert a torch tensor / numpy array / nested list to a 2-D float64 array."""
    try:  # torch is optional here
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", dtype=torch.float64).numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (N, D) array, got shape {arr.shape}")
    return arr


def mean_cosine_similarity(a: Any, b: Any, eps: float = 1e-12) -> float:
    """Mean over rows ``i`` of ``cos(a_i, b_i)`` (same images, same dimension).

    Returns a float in ``[-1, 1]``. A zero row has cosine 0 with anything
    (norms are clamped below by ``eps``).
    """
    a64, b64 = as_float64(a), as_float64(b)
    if a64.shape != b64.shape:
        raise ValueError(f"mean_cosine_similarity: shapes differ, {a64.shape} vs {b64.shape}")
    if a64.shape[0] == 0:
        raise ValueError("mean_cosine_similarity: empty input")
    num = np.sum(a64 * b64, axis=1)
    den = np.maximum(np.linalg.norm(a64, axis=1), eps) * np.maximum(np.linalg.norm(b64, axis=1), eps)
    return float(np.mean(num / den))


def linear_cka(a: Any, b: Any) -> float:
    r"""Linear CKA (Kornblith et al., 2019) between ``a`` (N, D1) and ``b`` (N, D2).

    With column-centred :math:`X, Y`:

    .. math:: \mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X\rVert_F^2}
              {\lVert X^\top X\rVert_F \, \lVert Y^\top Y\rVert_F}

    which equals ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for the linear
    kernels ``K = X X^T``, ``L = Y Y^T``. Rows must be the same images;
    the dimensions may differ. Returns a float in ``[0, 1]`` (0 if either side
    is constant).
    """
    x, y = as_float64(a), as_float64(b)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka: need the same number of rows (images), got {x.shape} and {y.shape}")
    if x.shape[0] < 2:
        raise ValueError("linear_cka: needs at least 2 rows")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(y.T @ x, ord="fro") ** 2
    norm_x = np.linalg.norm(x.T @ x, ord="fro")
    norm_y = np.linalg.norm(y.T @ y, ord="fro")
    if norm_x == 0.0 or norm_y == 0.0:
        return 0.0
    return float(cross / (norm_x * norm_y))
