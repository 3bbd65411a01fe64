"""ResNet encoders: the paper's CIFAR ResNet-18/34 and torchvision's ImageNet ResNet-50.

Every encoder maps float images in [0, 1] of shape (N, in_channels, H, W) to a pooled
representation (N, rep_dim) and carries ``rep_dim``, ``in_channels`` and ``input_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (1x1 conv-BN shortcut when the shape changes)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem (64 channels), no max-pool, four stages
    (64/128/256/512), global average pool, no fc. Representation: 512-d.

    Module names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``shortcut``) follow the official
    code's ``models/resnet.py`` so its backbones' state dicts load (minus ``fc``).
    """

    def __init__(self, num_blocks: tuple[int, int, int, int], in_channels: int = 3, input_size: int = 32):
        super().__init__()
        self.in_channels = in_channels
        self.input_size = input_size
        self.rep_dim = 512
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        planes_in = 64
        stages = []
        for planes, blocks, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)):
            layers = []
            for s in [stride] + [1] * (blocks - 1):
                layers.append(BasicBlock(planes_in, planes, s))
                planes_in = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return out.mean(dim=(2, 3))


def cifar_resnet18(in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-18 ([2, 2, 2, 2] basic blocks), 512-d representation, 11.17 M parameters."""
    return CifarResNet((2, 2, 2, 2), in_channels)


def cifar_resnet34(in_channels: int = 3) -> CifarResNet:
    """CIFAR ResNet-34 ([3, 4, 6, 3] basic blocks), 512-d representation, 21.28 M parameters."""
    return CifarResNet((3, 4, 6, 3), in_channels)


class ImageNetResNet50(torchvision.models.ResNet):
    """torchvision ResNet-50 (random init) with ``fc = Identity``: 2048-d representation.

    ImageNet mean/std normalisation happens inside ``forward`` (inputs are [0, 1]); 1-channel
    images are repeated to 3 channels. The state dict has torchvision's key names (no ``fc``),
    the normalisation constants are non-persistent buffers.
    """

    def __init__(self, in_channels: int = 3, input_size: int = 224):
        super().__init__(Bottleneck, [3, 4, 6, 3])
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.fc = nn.Identity()
        self.in_channels = in_channels
        self.input_size = input_size
        self.rep_dim = 2048
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return super().forward((x - self.mean) / self.std)


def torchvision_resnet50(in_channels: int = 3) -> ImageNetResNet50:
    """ResNet-50 as ``torchvision.models.resnet50(weights=None)`` without fc, 2048-d, 23.5 M parameters."""
    return ImageNetResNet50(in_channels)


__all__ = ["BasicBlock", "CifarResNet", "ImageNetResNet50", "cifar_resnet18", "cifar_resnet34", "torchvision_resnet50"]
