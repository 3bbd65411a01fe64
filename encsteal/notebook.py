"""Helpers the chapter notebooks share: set-up, glue and per-chapter result files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from encsteal.cache import atomic_write_bytes, to_jsonable
from encsteal.params import validate
from encsteal.runtime import seed_everything

RESULTS_DIR = Path(__file__).resolve().parent.parent / "book" / "chapters" / "results"


def setup(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a chapter's parameters, set threads and seeds, and a plotting style."""
    p = validate(params)
    torch.set_num_threads(int(p.get("threads", 2)))
    seed_everything(int(p.get("seed", 0)))
    import matplotlib
    import seaborn as sns

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    sns.set_theme(context="notebook", style="whitegrid")
    return p


def glue_numbers(values: Mapping[str, float], display: bool = False) -> None:
    """Glue plain numbers for the prose (``{glue:text}`name:.1f```)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, float(value), display=display)


def results_dir() -> Path:
    return Path(os.environ.get("ENCSTEAL_RESULTS", RESULTS_DIR))


def save_results(chapter: str, data: Mapping[str, Any]) -> Path:
    """Write a chapter's headline results (JSON) for the claims page."""
    path = results_dir() / f"{chapter}.json"
    atomic_write_bytes(path, json.dumps(to_jsonable(dict(data)), indent=2, sort_keys=True).encode())
    return path


def load_results(chapter: str) -> dict[str, Any]:
    path = results_dir() / f"{chapter}.json"
    if not path.exists():
        raise FileNotFoundError(f"No results for chapter {chapter!r} at {path}: build that chapter first "
                                "(make book runs them in order).")
    return json.loads(path.read_text())
