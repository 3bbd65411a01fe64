"""Build the book: papermill executes each chapter with a profile, then Jupyter Book renders.

``python -m encsteal.book --profile quick`` (what ``make book`` runs):

1. every ``notebooks/*.ipynb`` is executed by papermill with ``-p profile <profile>`` into
   ``book/chapters/``, its results JSON into ``book/chapters/results/``; a chapter is skipped when
   its notebook, the profile and the package source are unchanged since its last successful run
   and its results file is the one that run wrote (hashes stored in the executed copy);
2. the injected-parameters cell is tagged ``remove-cell`` and the parameters cell shows the
   values the build used;
3. ``jupyter-book build . -W --keep-going`` renders with execution off: a failing notebook or
   any warning fails the build (Jupyter Book alone would only warn).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from encsteal import params
from encsteal.notebook import package_source_hash

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks", "params")


def source_hash(notebook: Path, profile: str) -> str:
    """Hash of the notebook, the profile's values and every source file of the package."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(params.profile_overrides(profile), sort_keys=True).encode())
    digest.update(package_source_hash().encode())
    return digest.hexdigest()


def chapter_name(notebook: Path) -> str:
    """``notebooks/02_losses.ipynb`` -> ``losses``."""
    name = notebook.stem.split("_", 1)[-1]
    if name not in params.CHAPTERS:
        raise ValueError(f"{notebook} is not a known chapter; known: {', '.join(params.CHAPTERS)}.")
    return name


def prepare_for_rendering(path: Path, stamp: str, profile: str, effective: dict) -> None:
    """Show one parameters cell with the values this build used, hide the injected cell, and fold
    the other code cells (readers can expand them)."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags:
            tags.append("remove-cell")
        elif "parameters" in tags:
            lines = [f"# parameters of this build (profile {profile!r}; papermill -p name value changes one)"]
            lines += [f"{k} = {v!r}" for k, v in effective.items()]
            cell["source"] = "\n".join(lines)
        else:
            tags.append("hide-input")
    nb["metadata"]["encsteal_source_hash"] = stamp
    path.write_text(json.dumps(nb, indent=1))


def _results_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _reusable(target: Path, stamp: str, results: Path) -> bool:
    """An executed chapter is reused when its sources are unchanged and the results file beside it
    is the very one that run wrote (a chapter rerun by hand into this folder, or a run interrupted
    after writing its results, makes it stale)."""
    if not target.exists():
        return False
    meta = json.loads(target.read_text()).get("metadata", {})
    return meta.get("encsteal_source_hash") == stamp and meta.get("encsteal_results_sha256") == _results_digest(results)


def execute_chapters(profile: str, out_dir: Path, force: bool = False) -> list[Path]:
    """Execute every chapter with ``profile`` into ``out_dir`` (skipping unchanged ones).

    Each chapter writes its results into a staging folder; only when the whole notebook has run
    are the executed copy and its results moved into place, so an interrupted build (Ctrl-C) leaves
    the previous, consistent pair or nothing, and the next build resumes with that chapter.
    """
    import papermill

    results_dir = out_dir / "results"
    staging = results_dir / ".running"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the rendered pages
    resolved = params.resolve(profile)
    done, executed = [], False
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        chapter = chapter_name(notebook)
        target, results = out_dir / notebook.name, results_dir / f"{chapter}.json"
        stamp = source_hash(notebook, profile)
        upstream_changed = chapter == "claims" and executed  # the claims page reads the others' results
        if not force and not upstream_changed and _reusable(target, stamp, results):
            print(f"[book] {notebook.name}: unchanged, reusing the executed copy")
            done.append(target)
            continue
        if target.exists():
            print(f"[book] {notebook.name}: sources or results changed since its last run; executing it again")
        start = time.perf_counter()
        print(f"[book] executing {notebook.name} with profile {profile!r}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        tmp = target.with_suffix(".running.ipynb")
        run_dir = results_dir if chapter == "claims" else staging  # the claims page reads the others' results
        try:
            papermill.execute_notebook(
                str(notebook),
                str(tmp),
                parameters={"profile": profile, "results_dir": str(run_dir)},
                cwd=str(ROOT / "notebooks"),
                kernel_name="python3",
                progress_bar=False,
            )
        except BaseException:
            print(f"[book] {notebook.name} failed or was interrupted; the partial copy is {tmp}", file=sys.stderr)
            raise
        written = staging / f"{chapter}.json"
        if written.exists():
            written.replace(results)
        else:
            results.unlink(missing_ok=True)
        effective = {**resolved.for_chapter(chapter), "results_dir": str(results_dir.relative_to(ROOT))}
        prepare_for_rendering(tmp, stamp, profile, effective)
        nb = json.loads(tmp.read_text())
        nb["metadata"]["encsteal_results_sha256"] = _results_digest(results)
        tmp.write_text(json.dumps(nb, indent=1))
        tmp.replace(target)
        print(f"[book] {notebook.name}: {time.perf_counter() - start:.0f} s")
        done.append(target)
        executed = True
    shutil.rmtree(staging, ignore_errors=True)
    return done


def build_html() -> None:
    cmd = [sys.executable, "-m", "jupyter_book", "build", str(ROOT), "-W", "--keep-going"]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        cmd = [str(jb), "build", str(ROOT), "-W", "--keep-going"]
    subprocess.run(cmd, check=True, cwd=ROOT)


def copy_sources(target: Path) -> Path:
    """Copy the book's sources (config, pages, notebooks, profiles) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, target / name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("chapters"))
        else:
            shutil.copy2(src, target / name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=params.PROFILES)
    parser.add_argument("--force", action="store_true", help="re-execute every chapter")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="build in a copy of the book's sources under this folder (the repository is untouched)",
    )
    args = parser.parse_args(argv)
    global ROOT
    if args.root is not None:
        ROOT = copy_sources(args.root)
    start = time.perf_counter()
    execute_chapters(args.profile, ROOT / "book" / "chapters", args.force)
    build_html()
    print(f"[book] built {ROOT / '_build' / 'html' / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
