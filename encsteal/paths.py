"""Where encsteal keeps data and cached results (overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$ENCSTEAL_DATA``, else ``~/.cache/encsteal/data``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("ENCSTEAL_DATA", Path.home() / ".cache" / "encsteal" / "data"))


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The result cache: ``root`` if given, else ``$ENCSTEAL_CACHE``, else ``~/.cache/encsteal/results``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("ENCSTEAL_CACHE", Path.home() / ".cache" / "encsteal" / "results"))
