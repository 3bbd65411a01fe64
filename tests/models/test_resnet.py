"""CIFAR ResNet-18/34 and torchvision ResNet-50 encoders."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from encsteal.models.resnet import cifar_resnet18, cifar_resnet34, torchvision_resnet50

torch.set_num_threads(1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cifar_count_from_torchvision(tv: nn.Module, in_channels: int = 3) -> int:
    """torchvision's ImageNet ResNet minus its fc, with the 7x7 stem swapped for a 3x3 one.

    (Max-pool has no parameters; the block/shortcut layout is the same.)"""
    stem_7x7 = tv.conv1.weight.numel()  # 64 * 3 * 7 * 7
    return n_params(tv) - n_params(tv.fc) - stem_7x7 + 64 * in_channels * 3 * 3


@pytest.mark.parametrize(
    "builder, tv_builder, expected",
    [
        (cifar_resnet18, torchvision.models.resnet18, 11_168_832),
        (cifar_resnet34, torchvision.models.resnet34, 21_276_992),
    ],
)
def test_cifar_param_count(builder, tv_builder, expected):
    model, tv = builder(), tv_builder(weights=None)
    assert n_params(model) == cifar_count_from_torchvision(tv) == expected
    # 1-channel stem: 64 * 2 * 9 fewer weights.
    assert n_params(builder(in_channels=1)) == expected - 64 * 2 * 9


@pytest.mark.parametrize("builder", [cifar_resnet18, cifar_resnet34])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_cifar_shapes_and_attrs(builder, in_channels):
    model = builder(in_channels=in_channels).eval()
    assert (model.rep_dim, model.in_channels, model.input_size) == (512, in_channels, 32)
    with torch.no_grad():
        out = model(torch.rand(2, in_channels, 32, 32))
    assert out.shape == (2, 512)
    assert torch.isfinite(out).all()


def test_cifar_stem_and_no_maxpool():
    model = cifar_resnet18()
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.out_channels == 64
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # no fc
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert [len(s) for s in (cifar_resnet34().layer1, cifar_resnet34().layer4)] == [3, 3]
    # Feature map before pooling is 4x4 for 32x32 inputs (three stride-2 stages).
    with torch.no_grad():
        x = torch.relu(model.bn1(model.conv1(torch.rand(1, 3, 32, 32))))
        for s in stages:
            x = s(x)
    assert x.shape == (1, 512, 4, 4)


def test_cifar_gradients_flow():
    model = cifar_resnet18().train()
    model(torch.rand(2, 3, 32, 32)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert model.conv1.weight.grad.abs().sum() > 0


def test_resnet50_matches_torchvision():
    model, tv = torchvision_resnet50(), torchvision.models.resnet50(weights=None)
    assert (model.rep_dim, model.in_channels, model.input_size) == (2048, 3, 224)
    assert n_params(model) == n_params(tv) - n_params(tv.fc) == 23_508_032
    assert set(model.state_dict()) == set(tv.state_dict()) - {"fc.weight", "fc.bias"}
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_resnet50_forward_normalises_inside():
    model = torchvision_resnet50().eval()
    tv = torchvision.models.resnet50(weights=None)
    tv.fc = nn.Identity()
    tv.load_state_dict(model.state_dict())
    tv.eval()
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(x)
        ref = tv((x - mean) / std)
        grey = model(x[:, :1])
        grey_ref = model(x[:, :1].repeat(1, 3, 1, 1))
    assert out.shape == (2, 2048)
    torch.testing.assert_close(out, ref)
    assert grey.shape == (2, 2048)
    torch.testing.assert_close(grey, grey_ref)
    assert torchvision_resnet50(in_channels=1).in_channels == 1
