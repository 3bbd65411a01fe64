"""Model checkpoints: safetensors weights plus a JSON sidecar (config, seed, version, metrics, sha256)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from encsteal import __version__
from encsteal.cache import atomic_save_tensors, atomic_write_bytes, file_sha256, to_jsonable


def flat_state(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """One flat state dict ``"<module>.<param>"`` for several modules."""
    return {f"{name}.{k}": v for name, m in modules.items() for k, v in m.state_dict().items()}


def load_flat_state(modules: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor]) -> None:
    """Load a flat state dict into ``modules`` strictly: a missing or unexpected key is an error."""
    for name, module in modules.items():
        prefix = f"{name}."
        sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(sub, strict=True)
    known = tuple(f"{n}." for n in modules)
    extra = [k for k in tensors if not k.startswith(known)]
    if extra:
        raise KeyError(f"Checkpoint holds tensors for no module: {extra[:5]}...")


def save_checkpoint(stem: str | os.PathLike, modules: Mapping[str, nn.Module], meta: Mapping[str, Any]) -> Path:
    """Write ``stem.safetensors`` and ``stem.json`` (with the weights' sha256); return the weights path."""
    stem = Path(stem)
    weights = stem.with_suffix(".safetensors")
    atomic_save_tensors(weights, flat_state(modules))
    record = {"version": __version__, "sha256": file_sha256(weights), **to_jsonable(dict(meta))}
    atomic_write_bytes(stem.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True).encode())
    return weights


def load_checkpoint(stem: str | os.PathLike, modules: Mapping[str, nn.Module], verify: bool = True) -> dict[str, Any]:
    """Load weights into ``modules`` (strict) and return the sidecar; checks the sha256 if ``verify``."""
    stem = Path(stem)
    weights, sidecar = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not weights.exists() or not sidecar.exists():
        raise FileNotFoundError(f"No checkpoint at {weights} (+ {sidecar.name}).")
    meta = json.loads(sidecar.read_text())
    if verify and meta.get("sha256") != file_sha256(weights):
        raise ValueError(f"Checksum mismatch for {weights}: the file is not the one its sidecar describes.")
    load_flat_state(modules, load_file(str(weights)))
    return meta
