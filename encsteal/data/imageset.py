"""In-memory labelled image sets: the common currency of every encsteal module."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set held in memory.

    Attributes:
        name: registry name of the source data set (for example ``"fmnist"``).
        images: uint8 tensor of shape (N, C, H, W), values 0-255.
        labels: int64 tensor of shape (N,); -1 marks unlabelled images (STL10 unlabeled).
        classes: class names, index = label.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"ImageSet {self.name!r}: images must be a uint8 tensor (N, C, H, W), "
                f"got {self.images.dtype} with shape {tuple(self.images.shape)}"
            )
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise ValueError(
                f"ImageSet {self.name!r}: labels must be 1-D with one entry per image "
                f"({len(self.images)}), got shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at ``indices`` (a 1-D index tensor), in that order."""
        return ImageSet(self.name, self.images[indices], self.labels[indices], self.classes)

    def float(self) -> torch.Tensor:
        """Images as float32 in [0, 1]."""
        return self.images.float().div_(255.0)
