"""Batched augmentation: one draw per image, seeded, values stay in [0, 1]."""

import torch

from encsteal.augment import Augment


def test_each_image_gets_its_own_view_and_seed_repeats():
    x = torch.rand(1, 3, 32, 32).expand(8, -1, -1, -1).contiguous()
    a = Augment()
    v1 = a(x, torch.Generator().manual_seed(0))
    v2 = a(x, torch.Generator().manual_seed(0))
    assert torch.equal(v1, v2)
    assert v1.min() >= 0 and v1.max() <= 1
    diffs = [(v1[0] - v1[i]).abs().mean().item() for i in range(1, 8)]
    assert min(diffs) > 1e-3, "identical inputs must get different random views"


def test_identity_settings_keep_the_image():
    x = torch.rand(4, 1, 16, 16)
    a = Augment(min_scale=1.0, max_aspect=1.0, max_rotation=0.0, flip=False, jitter_p=0.0, grayscale_p=0.0)
    assert torch.allclose(a(x, torch.Generator().manual_seed(0)), x, atol=1e-5)
