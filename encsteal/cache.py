"""A result cache keyed by a hash of the full configuration and the package version.

Entries are safetensors files (tensors) with a JSON sidecar (configuration and metadata), both
written atomically (temporary file, then rename); the sidecar is written last, so an entry without
one is incomplete and ignored. Nothing is pickled, so a cache folder from elsewhere cannot run
code when read (joblib.Memory would pickle results, hence this small module).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from encsteal import __version__
from encsteal.paths import cache_root


def to_jsonable(config: Any) -> Any:
    """Dataclasses, tuples and paths become JSON-friendly values."""
    if is_dataclass(config) and not isinstance(config, type):
        return to_jsonable(asdict(config))
    if isinstance(config, Mapping):
        return {str(k): to_jsonable(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_jsonable(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if isinstance(config, np.generic):
        return config.item()
    return config


def config_key(kind: str, config: Any) -> str:
    """A stable 20-hex-digit hash of ``kind``, the configuration and the package version."""
    blob = json.dumps({"kind": kind, "config": to_jsonable(config), "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 (20 hex digits) of tensors' shapes, dtypes and bytes: identifies data in cache keys."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy())
    return digest.hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Save tensors as safetensors through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultCache:
    """Tensors + metadata stored under ``root/<kind>/<key>.{safetensors,json}``.

    Args:
        root: cache folder (default ``$ENCSTEAL_CACHE`` or ``~/.cache/encsteal/results``).
        enabled: ``False`` bypasses the cache: nothing is read or written.
        shipped: read-only folders searched after ``root`` (default: the repository's
            ``shipped/`` folder, which holds the quick profile's pre-trained victims). Their
            entries are verified against the sha256 in their sidecar before use.
    """

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True,
                 shipped: tuple[str | os.PathLike, ...] | None = None):
        self.root = cache_root(root)
        self.enabled = enabled
        self.shipped = tuple(Path(p) for p in (shipped if shipped is not None else (SHIPPED_DIR,)))

    def paths(self, kind: str, config: Any, root: Path | None = None) -> tuple[Path, Path]:
        key = config_key(kind, config)
        folder = (root or self.root) / kind
        return folder / f"{key}.safetensors", folder / f"{key}.json"

    def get(self, kind: str, config: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The stored tensors and metadata, or None when absent, incomplete or disabled."""
        if not self.enabled:
            return None
        for root in (self.root, *self.shipped):
            tensor_path, meta_path = self.paths(kind, config, root)
            if tensor_path.exists() and meta_path.exists():
                meta = json.loads(meta_path.read_text())
                if root != self.root and meta.get("sha256") != file_sha256(tensor_path):
                    raise ValueError(f"Shipped entry {tensor_path} does not match its recorded sha256; "
                                     "regenerate it with `python -m encsteal.ship`.")
                return load_file(str(tensor_path)), meta
        return None

    def put(self, kind: str, config: Any, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        tensor_path, meta_path = self.paths(kind, config)
        atomic_save_tensors(tensor_path, tensors)
        record = {"kind": kind, "config": to_jsonable(config), "version": __version__,
                  "sha256": file_sha256(tensor_path), **to_jsonable(dict(meta))}
        atomic_write_bytes(meta_path, json.dumps(record, indent=2, sort_keys=True).encode())

    def get_or_compute(
        self,
        kind: str,
        config: Any,
        compute: Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Load the entry for ``config`` or compute, store and return it."""
        hit = self.get(kind, config)
        if hit is not None:
            return hit
        tensors, meta = compute()
        self.put(kind, config, tensors, meta)
        return dict(tensors), {"kind": kind, "config": to_jsonable(config), "version": __version__,
                               **to_jsonable(dict(meta))}
