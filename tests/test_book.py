"""The book: a smoke build renders every chapter with its table and figure, and a real browser
opens each page without a missing resource or an empty figure. Slow (minutes): marked ``book``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.book_support import ROOT, browser_check, chromium

pytestmark = pytest.mark.book
CHAPTERS = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9]*_*.ipynb"))
TABLES_ONLY = ("00_overview", "claims")
"""Pages whose results are tables only (the landing page and the claims page)."""


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """A smoke build in a copy of the book's sources (the repository's own build is untouched)."""
    root = tmp_path_factory.mktemp("book")
    subprocess.run(
        [sys.executable, "-m", "encsteal.book", "--profile", "smoke", "--root", str(root)], cwd=ROOT, check=True
    )
    return root / "_build" / "html"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_page_has_table_and_figure(smoke_book, chapter):
    page = smoke_book / "book" / "chapters" / f"{chapter}.html"
    html = page.read_text()
    assert "<table" in html, f"{chapter}: no table"
    if not chapter.endswith(TABLES_ONLY):
        assert "<img" in html and ".png" in html, f"{chapter}: no figure"
    assert "injected-parameters" not in html or "remove-cell" in html


def test_pages_open_in_a_real_browser(smoke_book, tmp_path):
    if chromium() is None:
        pytest.fail("Chromium is missing: `apt-get install chromium` (the CI script installs it).")
    """What a reader sees at 1280 px: every resource local and loaded, no empty figure, no NaN in
    any rendered table, no table or figure wider than the text column, every figure captioned,
    and the paper at a glance on the landing page."""
    pages = [f"book/chapters/{c}.html" for c in CHAPTERS]
    pages += ["book/paper_setup.html", "book/shipped.html", "book/conclusions.html", "book/bibliography.html"]
    report = browser_check(smoke_book, pages, tmp_path / "profile")
    assert set(report) == set(pages)
    for page, info in report.items():
        assert not info["failed"], f"{page}: resources failed to load: {info['failed']}"
        assert not info["external"], f"{page}: loads from outside the book (not offline): {info['external']}"
        assert not info["empty_images"], f"{page}: empty figures: {info['empty_images']}"
        assert not info["nan_cells"], f"{page}: missing values shown in tables: {info['nan_cells']}"
        assert not info["too_wide"], f"{page}: wider than the text column at 1280 px: {info['too_wide']}"
        assert not info["uncaptioned"], f"{page}: figures without a caption: {info['uncaptioned']}"
    for chapter in CHAPTERS:
        info = report[f"book/chapters/{chapter}.html"]
        assert info["tables"] >= 1 and (info["images"] >= 1 or chapter.endswith(TABLES_ONLY)), (chapter, info)
    landing = f"book/chapters/{CHAPTERS[0]}.html"
    assert "00_overview" in landing and report[landing]["glance"] >= 1, "no paper at a glance on the landing page"
    assert "00_overview.html" in (smoke_book / "index.html").read_text(), "the book does not open on the landing page"


BROKEN = """<!doctype html><html><head><title>broken</title></head><body>
<main><article class="bd-article" style="width: 700px">
<table><tr><th>loss</th><th>accuracy</th></tr><tr><td>mse</td><td>NaN</td></tr></table>
<table style="width: 1100px"><tr><td>a table wider than the text column</td></tr></table>
<img src="dot.png" style="width: 10px">
<figure><img src="dot.png" style="width: 10px"><figcaption>A captioned figure.</figcaption></figure>
</article></main></body></html>"""


def test_the_browser_check_catches_what_a_reader_would_see(tmp_path):
    """A deliberately broken page: a NaN cell, a table wider than the text column and a figure
    without a caption are each reported (the checker behind the page tests can fail)."""
    if chromium() is None:
        pytest.fail("Chromium is missing: `apt-get install chromium` (the CI script installs it).")
    import base64

    site = tmp_path / "site"
    site.mkdir()
    (site / "broken.html").write_text(BROKEN)
    (site / "dot.png").write_bytes(
        base64.b64decode(
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
        )
    )
    info = browser_check(site, ["broken.html"], tmp_path / "profile")["broken.html"]
    assert info["nan_cells"] == ["NaN"]
    assert info["too_wide"] == ["table:1100"]
    assert info["uncaptioned"] == ["dot.png"] and info["images"] == 2
    assert info["glance"] == 0 and not info["external"]
