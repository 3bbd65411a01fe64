"""What every chapter notebook does around its experiment: resolve and check its parameters, glue
numbers for the prose, and write its results, stamped with the run that produced them.

A stamp identifies a run: the hash of the package's source, the profile and the parameters passed
on top of it. Chapters built together by ``make book`` share one stamp; the claims page reads only
results that carry its own stamp, so a chapter rerun by hand with other parameters or other code
can never feed it silently (:class:`StaleResults` names the chapter to rebuild).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from encsteal.cache import atomic_write_bytes, to_jsonable
from encsteal.params import CHAPTERS, Params, chapter_parameters, resolve, unknown_message
from encsteal.runtime import seed_everything

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent
NOT_STAMPED = ("results_dir", "threads")
"""Parameters that do not change a chapter's numbers, hence not part of its stamp."""
_NOT_PARAMETERS = frozenset({"In", "Out", "exit", "quit", "get_ipython", "open"})


class StaleResults(RuntimeError):
    """A chapter's saved results come from another run than the page reading them."""


def package_source_hash() -> str:
    """sha256 of every source file of the package (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_stamp(profile: str, overrides: Mapping[str, Any]) -> str:
    """The stamp of a run: package source + profile + the parameters passed on top of it."""
    passed = {k: v for k, v in overrides.items() if k not in NOT_STAMPED and k != "profile" and v is not None}
    blob = json.dumps(
        {"source": package_source_hash(), "profile": profile, "passed": to_jsonable(passed)}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def passed_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The plain values a notebook's namespace holds before any import: its parameters cell and
    papermill's injected cell (names starting with ``_`` and IPython's own are not parameters)."""
    plain = (type(None), bool, int, float, str, list, tuple, dict)
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_") and k not in _NOT_PARAMETERS and isinstance(v, plain)
    }


class Chapter:
    """A chapter's resolved parameters (``chapter.p``), stamp and results folder."""

    def __init__(self, name: str, p: Params, stamp: str, passed: Mapping[str, Any]):
        self.name, self.p, self.stamp, self.passed = name, p, stamp, dict(passed)

    @property
    def results_dir(self) -> Path:
        path = Path(self.p.results_dir)
        return path if path.is_absolute() else REPO / path

    def save_results(self, data: Mapping[str, Any]) -> Path:
        """Write this chapter's results (JSON, atomically) with the run's stamp."""
        record = {
            "chapter": self.name,
            "stamp": self.stamp,
            "profile": self.p.profile,
            "passed": self.passed,
            "results": to_jsonable(dict(data)),
        }
        path = self.results_dir / f"{self.name}.json"
        atomic_write_bytes(path, json.dumps(record, indent=2, sort_keys=True).encode())
        return path

    def load_results(self, chapter: str) -> dict[str, Any]:
        """Another chapter's results from the same folder; they must carry this run's stamp."""
        path = self.results_dir / f"{chapter}.json"
        if not path.exists():
            raise FileNotFoundError(
                f"No results for chapter {chapter!r} at {path}: run that chapter first (make book runs them in order)."
            )
        record = json.loads(path.read_text())
        if record.get("stamp") != self.stamp:
            raise StaleResults(
                f"The results of chapter {chapter!r} in {path} come from another run (profile "
                f"{record.get('profile')!r}, parameters {record.get('passed')}, stamp {record.get('stamp')}) than this "
                f"page (profile {self.p.profile!r}, parameters {self.passed}, stamp {self.stamp}). Rebuild chapter "
                f"{chapter!r} with the same profile and parameters (make book does), or rerun this page with theirs."
            )
        return record["results"]


def setup(chapter: str, namespace: Mapping[str, Any]) -> Chapter:
    """Resolve and check ``chapter``'s parameters from the notebook's namespace (``globals()``),
    set threads, seeds and the plotting style. An unknown name stops with the known ones."""
    if chapter not in CHAPTERS:
        raise ValueError(f"Unknown chapter {chapter!r}. Known chapters: {', '.join(CHAPTERS)}.")
    passed = passed_parameters(namespace)
    declared = set(chapter_parameters(chapter))
    for name in passed:
        if name not in declared:
            raise ValueError(unknown_message(name, chapter))
    given = {k: v for k, v in passed.items() if v is not None}
    p = resolve(given.get("profile", "smoke"), given, chapter)
    torch.set_num_threads(p.threads)
    seed_everything(p.seed)
    import matplotlib
    import seaborn as sns

    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight"})
    sns.set_theme(context="notebook", style="whitegrid")
    return Chapter(chapter, p, run_stamp(p.profile, given), given)


def glue_numbers(values: Mapping[str, float], display: bool = False) -> None:
    """Glue plain numbers for the prose (``{glue:text}`name:.1f```)."""
    from myst_nb import glue

    for name, value in values.items():
        glue(name, float(value), display=display)


def chapter_pages(folder: Path | None = None) -> dict[str, str]:
    """Each chapter's page name (its notebook's stem, e.g. ``{"losses": "02_losses"}``), for links
    between pages."""
    folder = folder if folder is not None else REPO / "notebooks"
    pages = {path.stem.split("_", 1)[-1]: path.stem for path in sorted(folder.glob("[0-9]*_*.ipynb"))}
    return {chapter: page for chapter, page in pages.items() if chapter in CHAPTERS}


def parameters_cell(chapter: str) -> str:
    """The source of ``chapter``'s papermill ``parameters`` cell: every parameter it declares, set
    to ``None`` (= the profile's value), the profile set to ``smoke`` (what the tests run)."""
    lines = [
        "# Parameters (papermill). None = the value of the profile (params/<profile>.yaml) or of the",
        "# schema (encsteal.params.Params). Book: make book; by hand: papermill -p profile quick -p seed 3 ...",
    ]
    for name in chapter_parameters(chapter):
        lines.append('profile = "smoke"' if name == "profile" else f"{name} = None")
    return "\n".join(lines)


def glue_text(values: Mapping[str, str]) -> None:
    """Glue sentences chosen by code from the results, as Markdown (``{glue:md}`name```)."""
    from IPython.display import Markdown
    from myst_nb import glue

    for name, text in values.items():
        if not isinstance(text, str):
            raise TypeError(f"glue_text takes sentences (str); {name!r} is {type(text).__name__}.")
        glue(name, Markdown(text), display=False)


def glue_table(name: str, table: Any, digits: int = 1) -> None:
    """Glue a table for a numbered, captioned ``{table}`` on the page (Markdown, formatted and
    checked by :func:`encsteal.tables.to_markdown`: no missing cell, no bare index, not wider than
    the text column). The page pastes it with::

        :::{table} Caption: what, units, seeds and intervals.
        :name: tbl-<chapter>-<what>
        ```{glue:md} <name>
        :format: myst
        ```
        :::
    """
    from IPython.display import Markdown
    from myst_nb import glue

    from encsteal.tables import to_markdown

    glue(name, Markdown(to_markdown(table, digits)), display=False)


def glue_figure(name: str, figure: Any) -> None:
    """Glue a Matplotlib figure (or seaborn grid) for a numbered, captioned ``{glue:figure}`` and
    close it, so that it appears only where the page places it::

        :::{glue:figure} <name>
        :name: fig-<chapter>-<what>

        Caption: what is plotted, seeds, what the bands are.
        :::
    """
    import matplotlib.pyplot as plt
    from myst_nb import glue

    fig = getattr(figure, "figure", figure)  # seaborn grids carry their figure
    glue(name, fig, display=False)
    plt.close(fig)
