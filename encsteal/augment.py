"""Batched SimCLR-style augmentation, one random draw per image.

torchvision's transforms draw one set of random parameters per call, so a batch tensor gets the
same crop for every image, and calling them image by image is slow (about 840 views/s on a
2-core CPU, competing with training for the same cores). This module draws per-image parameters and applies them to
the whole batch at once
with one ``affine_grid``/``grid_sample`` (random resized crop, flip, small rotation) and vectorised
colour jitter. Chen et al. (2020) and the paper's victims (book/paper_setup.md#setup-victim-cifar) use crop + flip +
colour
jitter (p=0.8) + grayscale (p=0.2); brightness/contrast jitter stays on because without it a small SimCLR
encoder can match crops of one image by their overall brightness and learns little else
(book/paper_setup.md#setup-book-choices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Random views of a batch of float images in [0, 1] (N, C, H, W)."""

    min_scale: float = 0.3
    max_aspect: float = 4 / 3
    max_rotation: float = 15.0
    flip: bool = True
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    grayscale_p: float = 0.2

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = x.shape[0]
        dev = x.device

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator).to(dev)

        area = self.min_scale + (1 - self.min_scale) * rand(n)
        log_ratio = (rand(n) * 2 - 1) * math.log(self.max_aspect)
        ratio = torch.exp(log_ratio)
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (rand(n) * 2 - 1) * (1 - w)
        ty = (rand(n) * 2 - 1) * (1 - h)
        angle = (rand(n) * 2 - 1) * math.radians(self.max_rotation)
        sign = torch.where(rand(n) < 0.5, -1.0, 1.0) if self.flip else torch.ones(n, device=dev)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [
                torch.stack([w * cos * sign, -h * sin, tx], dim=1),
                torch.stack([w * sin * sign, h * cos, ty], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = self._jitter(out, rand)
        return out.clamp_(0.0, 1.0)

    def _jitter(self, x: torch.Tensor, rand) -> torch.Tensor:
        n, c = x.shape[:2]
        apply = (rand(n) < self.jitter_p).float().view(n, 1, 1, 1)
        b = 1 + (rand(n) * 2 - 1).view(n, 1, 1, 1) * self.brightness
        ct = 1 + (rand(n) * 2 - 1).view(n, 1, 1, 1) * self.contrast
        jittered = x * b
        mean = jittered.mean(dim=(1, 2, 3), keepdim=True)
        jittered = (jittered - mean) * ct + mean
        if c == 3:
            s = 1 + (rand(n) * 2 - 1).view(n, 1, 1, 1) * self.saturation
            grey = jittered.mean(dim=1, keepdim=True)
            jittered = (jittered - grey) * s + grey
        x = apply * jittered + (1 - apply) * x
        if c == 3 and self.grayscale_p > 0:
            to_grey = (rand(n) < self.grayscale_p).float().view(n, 1, 1, 1)
            x = to_grey * x.mean(dim=1, keepdim=True).expand_as(x) + (1 - to_grey) * x
        return x


NO_AUGMENT_JITTER = Augment(min_scale=0.6, max_rotation=10.0, jitter_p=0.0, grayscale_p=0.0)
"""Mild crop/flip/rotation only: the supervised victim's training augmentation."""
