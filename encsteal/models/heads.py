"""Heads that sit on top of an encoder's representation (kept apart from the encoders)."""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """SimCLR projection head g: Linear-BN-ReLU-Linear (Chen et al. 2020; 512-512-128 in the paper's code)."""

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LinearClassifier(nn.Module):
    """A linear layer from the representation to class logits (the supervised victim's head)."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, num_classes)
        self.in_dim, self.out_dim = in_dim, num_classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(z)
