"""Encoders (representation = pooled features) and heads, selectable by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from encsteal.models.convnet import SmallConvNet
from encsteal.models.heads import LinearClassifier, ProjectionHead

ARCHS: tuple[str, ...] = ("convnet", "resnet18", "resnet34", "resnet50", "efficientnet_lite0")


def build_encoder(arch: str, in_channels: int = 3, input_size: int | None = None) -> nn.Module:
    """Build an encoder by name. Every encoder maps [0, 1] images to a (N, rep_dim) representation
    and carries ``rep_dim``, ``in_channels`` and ``input_size`` attributes."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "convnet": lambda: SmallConvNet(in_channels, input_size=input_size or 28),
        "resnet18": lambda: _resnet().cifar_resnet18(in_channels),
        "resnet34": lambda: _resnet().cifar_resnet34(in_channels),
        "resnet50": lambda: _resnet().torchvision_resnet50(in_channels),
        "efficientnet_lite0": lambda: _efficientnet().efficientnet_lite0(pretrained=True),
    }
    if arch not in builders:
        raise ValueError(f"Unknown architecture {arch!r}. Known: {', '.join(ARCHS)}.")
    model = builders[arch]()
    if input_size is not None:
        model.input_size = input_size
    return model


def _resnet():  # imported lazily: keeps `import encsteal.models` light
    from encsteal.models import resnet

    return resnet


def _efficientnet():
    from encsteal.models import efficientnet_lite

    return efficientnet_lite


__all__ = ["ARCHS", "LinearClassifier", "ProjectionHead", "SmallConvNet", "build_encoder"]
