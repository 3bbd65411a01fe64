"""Role splits: seeded, disjoint, nested in the query budget."""

import pytest
import torch

from encsteal.data import adapt, draw_disjoint, role_splits


def test_draw_disjoint_is_disjoint_and_seeded():
    a = draw_disjoint(100, {"victim": 30, "query": 20, "probe_train": 10}, seed=3)
    all_idx = torch.cat(list(a.values()))
    assert len(torch.unique(all_idx)) == 60
    b = draw_disjoint(100, {"victim": 30, "query": 20, "probe_train": 10}, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = draw_disjoint(100, {"victim": 30, "query": 20, "probe_train": 10}, seed=4)
    assert not torch.equal(a["victim"], c["victim"])


def test_too_small_and_negative_sizes_raise():
    with pytest.raises(ValueError, match="need 120 images but only 100"):
        draw_disjoint(100, {"victim": 100, "query": 20}, seed=0)
    with pytest.raises(ValueError, match=">= 0"):
        draw_disjoint(100, {"query": -1}, seed=0)


def test_role_splits_disjoint_and_query_budget_nested():
    small = role_splits(
        "mnist5k", {"victim": 1000, "probe_train": 500, "probe_val": 100, "query": 200, "probe_test": 300}, seed=1
    )
    big = role_splits("mnist5k", {"victim": 1000, "probe_train": 500, "probe_val": 100, "query": 800}, seed=1)
    key = lambda s: {bytes(i.numpy()) for i in s.images}  # noqa: E731
    assert not key(small["victim"]) & key(small["query"])
    assert not key(small["probe_train"]) & key(small["query"])
    assert torch.equal(small["victim"].images, big["victim"].images)
    assert torch.equal(small["probe_train"].images, big["probe_train"].images)
    assert key(small["query"]) <= key(big["query"])
    assert len(small["probe_test"]) == 300


def test_unknown_role_raises():
    with pytest.raises(ValueError, match="Allowed roles"):
        role_splits("mnist5k", {"attacker": 10})


def test_adapt_channels_and_size():
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb = adapt(grey, 3, 32)
    assert rgb.shape == (2, 3, 32, 32) and rgb.dtype == torch.float32
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    back = adapt(adapt(grey, 3, None), 1, None)
    assert torch.allclose(back, grey.float() / 255, atol=1e-6)
    with pytest.raises(ValueError, match="Cannot adapt 2-channel"):
        adapt(torch.zeros(1, 2, 4, 4), 3, None)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        adapt(torch.zeros(3, 4, 4), 3, None)
