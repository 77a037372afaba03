"""The built book in a real browser (Debian's chromium driven by Playwright): every page's
mathematics typeset by the MathJax served with the book, every image loaded, and every file
the page asks the book for found. Needs `make html` first (make test does it)."""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import socketserver
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium")
RAW_TEX = re.compile(r"\$\$|\\(?:frac|mathbf|mathcal|begin|lVert|hat|sum|cos|rho|lambda|beta|epsilon)\b")


def pages() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return [f"{name}.html" for name in re.findall(r"(?:root|file): (\S+)", toc)]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser_page():
    if not (HTML / "index.html").exists():
        pytest.fail("no built book in _build/html: run `make html` first")
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is missing: run `make browser`")
    from playwright.sync_api import sync_playwright

    server = socketserver.TCPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page, f"http://127.0.0.1:{server.server_address[1]}"
        browser.close()
    server.shutdown()


@pytest.mark.parametrize("name", pages())
def test_page_renders_offline(browser_page, name):
    page, base = browser_page
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.url.startswith(base) and r.status >= 400 else None)
    page.goto(f"{base}/{name}", wait_until="load")
    assert not missing, f"files the page asked the book for and did not get: {missing}"
    if page.locator("script[src*='_static/mathjax/']").count():
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
        page.evaluate("() => MathJax.startup.promise")
    assert page.locator("script[src*='cdn.jsdelivr.net/npm/mathjax']").count() == 0, "MathJax comes from a CDN"
    prose = page.evaluate("""() => {
        const article = (document.querySelector('article') || document.body).cloneNode(true);
        article.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
        return article.innerText; }""")
    assert not RAW_TEX.findall(prose), f"raw TeX on {name}: {RAW_TEX.findall(prose)[:5]}"
    broken = page.evaluate("() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                           ".map(i => i.getAttribute('src'))")
    assert not broken, f"images that did not load on {name}: {broken}"


def test_the_raw_tex_check_can_fail():
    assert RAW_TEX.findall(r"where $$p = \frac{a}{b}$$") and not RAW_TEX.findall("H = 2BN/(B + N)")
