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
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from encsteal import params
from encsteal.cache import atomic_write_bytes
from encsteal.notebook import package_source_hash, run_stamp

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


LANDING = "overview"
"""The landing page: its code cells (parameters included) are removed, so the page reads as prose."""


def prepare_for_rendering(path: Path, stamp: str, profile: str, effective: dict, chapter: str = "") -> None:
    """Show one parameters cell with the values this build used, hide the injected cell, and fold
    the other code cells (readers can expand them); on the landing page remove every code cell."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if chapter == LANDING or "injected-parameters" in tags:
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


def _reusable(target: Path, stamp: str, results: Path, run: str) -> bool:
    """An executed chapter is reused when its sources are unchanged, the results file beside it is
    the very one that run wrote (a chapter rerun by hand into this folder, or a run interrupted
    after writing its results, makes it stale) and carries this build's stamp ``run``."""
    if not target.exists():
        return False
    meta = json.loads(target.read_text()).get("metadata", {})
    if meta.get("encsteal_source_hash") != stamp or meta.get("encsteal_results_sha256") != _results_digest(results):
        return False
    return not results.exists() or json.loads(results.read_text()).get("stamp") == run


@dataclass(frozen=True)
class _Job:
    notebook: Path
    chapter: str
    target: Path
    results: Path
    stamp: str


def _execute(job: _Job, profile: str, results_dir: Path, threads: int | None, effective: dict, cwd: Path) -> float:
    """Run one chapter with papermill into a temporary copy; move it and its results into place
    only when the whole notebook ran (an interrupted run leaves the previous pair or nothing)."""
    import papermill

    start = time.perf_counter()
    staging = results_dir / ".running" / job.chapter
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tmp = job.target.with_suffix(".running.ipynb")
    run_dir = results_dir if job.chapter in LAST else staging  # the last pages read the others' results
    parameters = {"profile": profile, "results_dir": str(run_dir)} | ({"threads": threads} if threads else {})
    try:
        papermill.execute_notebook(
            str(job.notebook), str(tmp), parameters=parameters, cwd=str(cwd), kernel_name="python3", progress_bar=False
        )
    except BaseException:
        print(f"[book] {job.notebook.name} failed or was interrupted; the partial copy is {tmp}", file=sys.stderr)
        raise
    written = run_dir / f"{job.chapter}.json"
    if written.exists():
        written.replace(job.results)  # a no-op for the pages that write in place
    else:
        job.results.unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    prepare_for_rendering(tmp, job.stamp, profile, effective, job.chapter)
    nb = json.loads(tmp.read_text())
    nb["metadata"]["encsteal_results_sha256"] = _results_digest(job.results)
    nb["metadata"]["encsteal_seconds"] = time.perf_counter() - start
    tmp.write_text(json.dumps(nb, indent=1))
    tmp.replace(job.target)
    seconds = time.perf_counter() - start
    print(f"[book] {job.notebook.name}: {seconds:.0f} s", flush=True)
    return seconds


def _check_stamps(results_dir: Path, run: str) -> None:
    """Every chapter result this build will judge carries the build's stamp, else say which to rebuild."""
    stale = [
        p.stem
        for p in sorted(results_dir.glob("*.json"))
        if p.stem not in LAST and json.loads(p.read_text()).get("stamp") != run  # the last pages: judged by none
    ]
    if stale:
        raise RuntimeError(
            f"The results of {', '.join(stale)} in {results_dir} do not come from this build's code "
            "and profile (was the package edited during the build?): run make book again, which "
            "re-executes those chapters."
        )


def _record_times(plan: list[_Job], results_dir: Path, run: str, jobs: int, wall: float) -> None:
    """Write how long each chapter took to execute in the build that last ran it (for the
    performance appendix), stamped like a chapter's results."""
    seconds = {}
    for job in plan:
        if job.chapter not in LAST and job.target.exists():
            seconds[job.chapter] = json.loads(job.target.read_text())["metadata"].get("encsteal_seconds")
    record = {
        "chapter": "build_times",
        "stamp": run,
        "profile": None,
        "passed": {},
        "results": {"seconds": seconds, "jobs": jobs, "wall_seconds": wall},
    }
    atomic_write_bytes(results_dir / "build_times.json", json.dumps(record, indent=2).encode())


LAST = ("claims", "overview", "performance")
"""Chapters run after the others, one at a time and in this order: the claims page and the landing
page (the paper at a glance) read the others' results, and the performance appendix measures speed
on an otherwise idle machine."""


def execute_chapters(profile: str, out_dir: Path, force: bool = False, jobs: int = 1) -> list[Path]:
    """Execute every chapter with ``profile`` into ``out_dir`` (skipping unchanged ones), ``jobs``
    chapters at a time (one torch thread each when ``jobs`` > 1), then the claims page and the
    performance appendix alone."""
    results_dir = out_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the rendered pages
    resolved, run = params.resolve(profile), run_stamp(profile, {})
    notebooks = ROOT / "notebooks"
    plan = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        chapter = chapter_name(notebook)
        plan.append(
            _Job(
                notebook,
                chapter,
                out_dir / notebook.name,
                results_dir / f"{chapter}.json",
                source_hash(notebook, profile),
            )
        )

    def effective(job: _Job) -> dict:
        return {**resolved.for_chapter(job.chapter), "results_dir": str(results_dir.relative_to(ROOT))}

    def stale(job: _Job) -> bool:
        if force or not _reusable(job.target, job.stamp, job.results, run):
            if job.target.exists():
                print(f"[book] {job.notebook.name}: sources or results changed since its last run; executing it again")
            return True
        print(f"[book] {job.notebook.name}: unchanged, reusing the executed copy")
        return False

    first = [job for job in plan if job.chapter not in LAST and stale(job)]
    for job in first:
        print(f"[book] executing {job.notebook.name} with profile {profile!r}", flush=True)
    start = time.perf_counter()
    if jobs > 1 and len(first) > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_execute, job, profile, results_dir, 1, effective(job), notebooks) for job in first]
            for future in futures:
                future.result()
    else:
        for job in first:
            _execute(job, profile, results_dir, None, effective(job), notebooks)
    if first:
        _record_times(plan, results_dir, run, jobs if len(first) > 1 else 1, time.perf_counter() - start)
    for job in sorted((job for job in plan if job.chapter in LAST), key=lambda job: LAST.index(job.chapter)):
        if first or stale(job):
            _check_stamps(results_dir, run_stamp(profile, {}))
            print(f"[book] executing {job.notebook.name} with profile {profile!r}", flush=True)
            _execute(job, profile, results_dir, None, effective(job), notebooks)
    shutil.rmtree(results_dir / ".running", ignore_errors=True)
    return [job.target for job in plan]


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
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="chapters executed at once (one torch thread each); default: 2 on a machine with 2+ cores",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    global ROOT
    if args.root is not None:
        ROOT = copy_sources(args.root)
    start = time.perf_counter()
    execute_chapters(args.profile, ROOT / "book" / "chapters", args.force, args.jobs)
    build_html()
    print(f"[book] built {ROOT / '_build' / 'html' / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
