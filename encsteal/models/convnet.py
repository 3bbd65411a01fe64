"""The quick profile's small encoder."""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Four 3x3 stride-2 conv layers (BatchNorm + ReLU), global average pool.

    The quick profile's stand-in for the paper's ResNet-18/34, which train at only ~20-25
    images/s on a 2-core CPU. With the default widths (32, 64, 128, 256) it has about 0.39 M
    parameters and a 256-d representation; ``bench/bench_victim.py`` prints its measured speed.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256), input_size: int = 28):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.features = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.input_size = input_size
        self.rep_dim = prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))
