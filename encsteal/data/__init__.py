"""Data sets, role splits and channel/size adaptation (see :func:`load`)."""

from encsteal.data.imageset import ImageSet
from encsteal.data.registry import DATASETS, QUICK_SETS, check_dataset, load
from encsteal.data.splits import ROLES, draw_disjoint, role_splits
from encsteal.data.transforms import adapt, to_float

__all__ = [
    "DATASETS",
    "QUICK_SETS",
    "ROLES",
    "ImageSet",
    "adapt",
    "check_dataset",
    "draw_disjoint",
    "load",
    "role_splits",
    "to_float",
]
