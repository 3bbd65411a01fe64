"""Support for the book tests: a smoke build, a local HTTP server and a headless-Chromium check."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

CHECK_PAGE = """<!doctype html><html><body><pre id="result">pending</pre><script>
const pages = %s;
const out = {};
function check(i) {
  if (i >= pages.length) { document.getElementById('result').textContent = JSON.stringify(out); return; }
  const frame = document.createElement('iframe');
  frame.style.width = '1280px'; frame.style.height = '900px';
  frame.onload = () => setTimeout(() => {
    const doc = frame.contentDocument, win = frame.contentWindow;
    const imgs = Array.from(doc.images);
    const failed = win.performance.getEntriesByType('resource').concat(win.performance.getEntriesByType('navigation'))
      .filter(e => e.responseStatus && e.responseStatus >= 400).map(e => e.name);
    const external = win.performance.getEntriesByType('resource')
      .filter(e => !e.name.startsWith(location.origin)).map(e => e.name);
    const article = doc.querySelector('article.bd-article') || doc.querySelector('main') || doc.body;
    const right = article.getBoundingClientRect().right + 1;
    const tables = Array.from(article.querySelectorAll('table'));
    const nanCells = tables.flatMap(t => Array.from(t.querySelectorAll('td, th')))
      .map(c => c.textContent.trim()).filter(t => /^(nan|NaN|<NA>|None|NaT)$/.test(t));
    const tooWide = tables.concat(Array.from(article.querySelectorAll('img')))
      .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > right; })
      .map(e => e.tagName.toLowerCase() + ':' + Math.round(e.getBoundingClientRect().width));
    const articleImgs = Array.from(article.querySelectorAll('img'));
    const uncaptioned = articleImgs.filter(im => { const f = im.closest('figure');
      return !(f && f.querySelector('figcaption') && f.querySelector('figcaption').textContent.trim()); })
      .map(im => im.src.split('/').pop());
    out[pages[i]] = {title: doc.title, images: imgs.length,
      empty_images: imgs.filter(im => !im.complete || im.naturalWidth === 0).map(im => im.src),
      failed: failed, external: external, tables: doc.querySelectorAll('table').length,
      nan_cells: nanCells, too_wide: tooWide, uncaptioned: uncaptioned,
      glance: doc.querySelectorAll('#paper-at-a-glance, .paper-at-a-glance').length};
    frame.remove(); check(i + 1);
  }, 500);
  frame.src = pages[i];
  document.body.appendChild(frame);
}
check(0);
</script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browser_check(html: Path, pages: list[str], profile_dir: Path) -> dict:
    """Open every page in headless Chromium; per page: images, empty images, failed and external
    resource loads, number of tables."""
    check = html / "__browser_check.html"
    check.write_text(CHECK_PAGE % json.dumps(pages))
    try:
        with serve(html) as base:
            proc = subprocess.run(
                [
                    chromium(),
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile_dir}",
                    "--virtual-time-budget=30000",
                    "--dump-dom",
                    f"{base}/{check.name}",
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
    finally:
        check.unlink(missing_ok=True)
    match = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"no result from Chromium: {proc.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(html: Path, page: str, out: Path, profile_dir: Path) -> Path:
    with serve(html) as base:
        subprocess.run(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile_dir}",
                "--window-size=1280,2200",
                f"--screenshot={out}",
                f"{base}/{page}",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return out
