"""Linear probe and k-NN: they find structure that exists and none where there is none."""

import pytest
import torch

from encsteal.probe import few_label_indices, knn_accuracy, linear_probe


def _blobs(n, d, classes, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=torch.Generator().manual_seed(99)) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, d, generator=g), y


def test_probe_separates_separable_data():
    (xtr, ytr), (xva, yva), (xte, yte) = (_blobs(300, 8, 4, 1.0, s) for s in (0, 1, 2))
    r = linear_probe(xtr, ytr, xva, yva, xte, yte, Cs=(0.1, 1.0))
    assert r.accuracy > 0.95 and r.knn_accuracy > 0.95 and r.C in (0.1, 1.0)


def test_probe_is_at_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(900, 8, generator=g)
    y = torch.randint(0, 4, (900,), generator=g)
    r = linear_probe(x[:300], y[:300], x[300:600], y[300:600], x[600:], y[600:], Cs=(1.0,))
    assert r.accuracy < 0.4


def test_knn_matches_hand_computed_case():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train_y = torch.tensor([0, 0, 1])
    assert knn_accuracy(train_x, train_y, torch.tensor([[0.1, 1.0]]), torch.tensor([1]), k=1) == 1.0


def test_few_label_indices():
    y = torch.arange(10).repeat(20)
    idx = few_label_indices(y, 3, seed=0)
    assert len(idx) == 30 and torch.bincount(y[idx]).tolist() == [3] * 10
    with pytest.raises(ValueError, match="only 20 images"):
        few_label_indices(y, 21)
    with pytest.raises(ValueError, match="at least one"):
        linear_probe(
            torch.zeros(0, 2),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(1, 2),
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, 2),
            torch.zeros(1, dtype=torch.long),
        )


def test_torch_probe_learns_separable_data_and_repeats():
    from encsteal.probe import linear_probe_torch
    from encsteal.runtime import RunOptions

    (xtr, ytr), (xte, yte) = (_blobs(300, 8, 4, 1.0, s) for s in (0, 2))
    settings = {"epochs": 10, "batch_size": 64, "lr": 1e-2}
    a = linear_probe_torch(xtr, ytr, xte, yte, 4, settings, RunOptions(device="cpu"), seed=0)
    b = linear_probe_torch(xtr, ytr, xte, yte, 4, settings, RunOptions(device="cpu"), seed=0)
    assert a["accuracy"] > 0.95 and a["knn_accuracy"] > 0.95 and (a["n_train"], a["n_test"]) == (300, 300)
    assert a["accuracy"] == b["accuracy"]
