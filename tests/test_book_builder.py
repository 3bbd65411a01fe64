"""Fast tests of encsteal.book (the builder); the smoke build itself is in test_book.py."""

from __future__ import annotations

import json

import nbformat

from encsteal.book import prepare_for_rendering


def _notebook(path) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'smoke'")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("profile = 'quick'")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params, injected, nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)


def _tags(path) -> list[list[str]]:
    return [c.get("metadata", {}).get("tags", []) for c in json.loads(path.read_text())["cells"]]


def test_a_chapter_shows_the_build_parameters_and_folds_its_code(tmp_path) -> None:
    path = tmp_path / "01_x.ipynb"
    _notebook(path)
    prepare_for_rendering(path, "stamp", "quick", {"profile": "quick", "seed": 0}, "api_cost")
    cells = json.loads(path.read_text())["cells"]
    assert "seed = 0" in "".join(cells[1]["source"]) and "remove-cell" not in cells[1]["metadata"]["tags"]
    assert _tags(path)[2] == ["injected-parameters", "remove-cell"] and _tags(path)[3] == ["hide-input"]
    assert json.loads(path.read_text())["metadata"]["encsteal_source_hash"] == "stamp"


def test_the_landing_page_shows_no_code(tmp_path) -> None:
    path = tmp_path / "00_overview.ipynb"
    _notebook(path)
    prepare_for_rendering(path, "stamp", "quick", {"profile": "quick"}, "overview")
    assert [("remove-cell" in tags) for tags in _tags(path)] == [False, True, True, True]
