"""The quick encoder, the heads and the architecture registry."""

import pytest
import torch

from encsteal.models import ARCHS, LinearClassifier, ProjectionHead, SmallConvNet, build_encoder


def test_small_convnet_shapes_and_size():
    enc = SmallConvNet(in_channels=3)
    assert enc(torch.rand(4, 3, 32, 32)).shape == (4, 256)
    assert enc.rep_dim == 256 and enc.in_channels == 3
    n_params = sum(p.numel() for p in SmallConvNet(1).parameters())
    # 3x3 convs without bias + BatchNorm (2 per channel): 1->32->64->128->256.
    expected = sum(9 * i * o + 2 * o for i, o in [(1, 32), (32, 64), (64, 128), (128, 256)])
    assert n_params == expected


def test_heads():
    head = ProjectionHead(256, 64, 32)
    assert head(torch.rand(5, 256)).shape == (5, 32)
    assert LinearClassifier(256, 10)(torch.rand(5, 256)).shape == (5, 10)


def test_registry_builds_and_rejects():
    enc = build_encoder("convnet", in_channels=1, input_size=28)
    assert enc.input_size == 28
    with pytest.raises(ValueError, match="Known: convnet"):
        build_encoder("vit")
    assert "resnet34" in ARCHS
