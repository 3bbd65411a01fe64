"""Adapt images between data sets and encoders: channels (grey <-> RGB) and size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from encsteal.data.imageset import ImageSet


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images become float32 in [0, 1]; float images pass through."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise TypeError(f"Images must be uint8 or floating point, got {images.dtype}.")
    return images


def adapt(images: torch.Tensor, channels: int, size: int | None) -> torch.Tensor:
    """Return float images in [0, 1] with ``channels`` channels and ``size`` x ``size`` pixels.

    Grey images are repeated to three channels; RGB images are turned grey with the ITU-R 601
    luma weights; resizing is bilinear with antialiasing. ``size=None`` keeps the size.
    """
    if images.ndim != 4:
        raise ValueError(f"Expected a batch of images (N, C, H, W), got shape {tuple(images.shape)}.")
    x = to_float(images)
    c = x.shape[1]
    if c != channels:
        if c == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif c == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
            x = (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        else:
            raise ValueError(f"Cannot adapt {c}-channel images to {channels} channels.")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.contiguous()


def adapt_imageset(data: ImageSet, channels: int, size: int | None) -> ImageSet:
    """An ImageSet with its images adapted (channels, size) and stored as uint8 again."""
    from encsteal.data.imageset import ImageSet

    x = (adapt(data.images, channels, size) * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return ImageSet(data.name, x, data.labels, data.classes)
