"""Build the book: papermill executes each chapter with a profile, then Jupyter Book renders.

``python -m encsteal.book --profile quick`` (what ``make book`` runs):

1. every ``notebooks/*.ipynb`` is executed by papermill with ``params/<profile>.yaml`` into
   ``book/chapters/``; a chapter is skipped when its notebook, the profile and the package source
   are unchanged since its last successful run (their hash is stored in the executed copy);
2. the injected-parameters cell is tagged ``remove-cell`` so it does not show in the pages;
3. ``jupyter-book build . -W --keep-going`` renders with execution off: a failing notebook or
   any warning fails the build (Jupyter Book alone would only warn, ANCHORS.md 3.1).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import shutil
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ROOT = REPO
PROFILES = ("smoke", "quick", "full")
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks", "params")


def source_hash(notebook: Path, params: dict) -> str:
    """Hash of the notebook, its parameters and every source file of the package."""
    digest = hashlib.sha256(notebook.read_bytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    for path in sorted((REPO / "encsteal").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_profile(profile: str) -> dict:
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Allowed: {', '.join(PROFILES)}.")
    path = ROOT / "params" / f"{profile}.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


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
            lines = [f"# parameters of this build (profile {profile!r}; change them with papermill -f/-p)"]
            lines += [f"{k} = {v!r}" for k, v in effective.items()]
            cell["source"] = "\n".join(lines)
        else:
            tags.append("hide-input")
    nb["metadata"]["encsteal_source_hash"] = stamp
    path.write_text(json.dumps(nb, indent=1))


def execute_chapters(profile: str, out_dir: Path, force: bool = False) -> list[Path]:
    import papermill

    params = load_profile(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the rendered pages
    done = []
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        target = out_dir / notebook.name
        stamp = source_hash(notebook, params)
        if not force and target.exists():
            meta = json.loads(target.read_text()).get("metadata", {})
            if meta.get("encsteal_source_hash") == stamp:
                print(f"[book] {notebook.name}: unchanged, reusing the executed copy")
                done.append(target)
                continue
        start = time.perf_counter()
        print(f"[book] executing {notebook.name} with profile {profile!r}")
        tmp = target.with_suffix(".running.ipynb")
        declared = papermill.inspect_notebook(str(notebook))
        chapter_params = {k: v for k, v in params.items() if k in declared}
        try:
            papermill.execute_notebook(str(notebook), str(tmp), parameters=chapter_params, cwd=str(ROOT / "notebooks"),
                                       kernel_name="python3", progress_bar=False)
        except Exception:
            print(f"[book] {notebook.name} failed; the partial copy is {tmp}", file=sys.stderr)
            raise
        tmp.replace(target)
        effective = {name: chapter_params.get(name, _literal(info["default"])) for name, info in declared.items()}
        prepare_for_rendering(target, stamp, profile, effective)
        print(f"[book] {notebook.name}: {time.perf_counter() - start:.0f} s")
        done.append(target)
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
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--force", action="store_true", help="re-execute every chapter")
    parser.add_argument("--root", type=Path, default=None,
                        help="build in a copy of the book's sources under this folder (the repository is untouched)")
    args = parser.parse_args(argv)
    global ROOT
    if args.root is not None:
        ROOT = copy_sources(args.root)
        os.environ["ENCSTEAL_RESULTS"] = str(ROOT / "book" / "chapters" / "results")
    start = time.perf_counter()
    execute_chapters(args.profile, ROOT / "book" / "chapters", args.force)
    build_html()
    print(f"[book] built {ROOT / '_build' / 'html' / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
