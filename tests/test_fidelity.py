"""Tests for encsteal.fidelity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encsteal.fidelity import linear_cka, mean_cosine_similarity


def _rand(n, d, seed):
    return np.random.default_rng(seed).standard_normal((n, d))


def test_cosine_identical_and_negated():
    x = _rand(10, 5, 0)
    assert mean_cosine_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    assert mean_cosine_similarity(x, -x) == pytest.approx(-1.0, abs=1e-12)
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    assert mean_cosine_similarity(t, 2.5 * t) == pytest.approx(1.0, abs=1e-6)
    assert isinstance(mean_cosine_similarity(t, t), float)


def test_cosine_is_rowwise_mean():
    a, b = _rand(4, 3, 1), _rand(4, 3, 2)
    want = np.mean([a[i] @ b[i] / np.sqrt((a[i] @ a[i]) * (b[i] @ b[i])) for i in range(4)])
    assert mean_cosine_similarity(a, b) == pytest.approx(want, abs=1e-12)


def test_cosine_shape_mismatch_raises():
    with pytest.raises(ValueError):
        mean_cosine_similarity(_rand(4, 3, 0), _rand(4, 5, 0))


def test_cka_orthogonal_and_scale_invariant():
    x = _rand(20, 6, 3)
    q, _ = np.linalg.qr(_rand(6, 6, 4))
    assert linear_cka(x, 3.7 * x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    # translation invariant (features are centred)
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0, abs=1e-10)


def test_cka_independent_random_is_small():
    x, y = _rand(500, 5, 5), _rand(500, 5, 6)
    assert linear_cka(x, y) < 0.05


def test_cka_different_dims_and_torch_input():
    x = _rand(30, 8, 7)
    w = _rand(8, 3, 8)
    got = linear_cka(torch.tensor(x, dtype=torch.float32), x @ w)
    assert 0.0 <= got <= 1.0 + 1e-12
    assert got == pytest.approx(linear_cka(x, x @ w), abs=1e-5)


def _hsic(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def test_cka_matches_hsic_formula():
    x, y = _rand(7, 3, 9), _rand(7, 5, 10)
    k, l = x @ x.T, y @ y.T
    want = _hsic(k, l) / np.sqrt(_hsic(k, k) * _hsic(l, l))
    assert linear_cka(x, y) == pytest.approx(want, abs=1e-10)


def test_cka_row_mismatch_raises():
    with pytest.raises(ValueError):
        linear_cka(_rand(4, 3, 0), _rand(5, 3, 0))
