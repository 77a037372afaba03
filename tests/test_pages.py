"""The built book in a real browser (Debian's chromium driven by Playwright): every page's
mathematics typeset by the MathJax served with the book, every image loaded, every file the
page asks the book for found, no console error or uncaught error, no script, stylesheet or
font from another host, and no code input, output or literal block wider than its box.
Needs `make html` first (make test does it); BOOK_HTML points the test at another build
(default: _build/html)."""
from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import socketserver
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM = shutil.which("chromium")
VIEWPORT = {"width": 1280, "height": 900}
RAW_TEX = re.compile(r"\$\$|\\(?:frac|mathbf|mathcal|begin|lVert|hat|sum|cos|rho|lambda|beta|epsilon)\b")
FOREIGN_KINDS = {"script", "stylesheet", "font"}

# Every <pre> in the article (cell inputs, cell outputs, literal blocks) whose content is wider
# than its box, as [kind, first 60 characters, scrollWidth, clientWidth, longest line]. Collapsed
# blocks (a hide-input cell's source) are measured opened, as a reader who opens them sees them.
OVERFLOWING_PRE = """() => {
    const closed = new Set(document.querySelectorAll('article details:not([open])'));
    closed.forEach(d => d.open = true);
    return Array.from(document.querySelectorAll('article pre'))
      .filter(p => p.scrollWidth > p.clientWidth + 1)
      .map(p => [(p.closest('.cell_input') ? 'input' : p.closest('.cell_output') ? 'output' : 'literal')
                 + (closed.has(p.closest('details')) ? ' (collapsed)' : ''),
                 p.innerText.trim().replace(/\\s+/g, ' ').slice(0, 60), p.scrollWidth, p.clientWidth,
                 p.innerText.split('\\n').reduce((a, b) => b.length > a.length ? b : a, '')]); }"""


def pages() -> list[str]:
    toc = (ROOT / "_toc.yml").read_text()
    return [f"{name}.html" for name in re.findall(r"(?:root|file): (\S+)", toc)]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@dataclass
class Watch:
    """What a page did while it loaded: console errors, uncaught errors, requests for
    scripts, stylesheets and fonts from other hosts, and the book's files it did not get."""

    base: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def attach(self, page):
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", self._request)
        page.on("response", lambda r: self.missing.append(r.url)
                if r.url.startswith(self.base) and r.status >= 400 else None)
        # nothing leaves the machine: other hosts are refused (and recorded above)
        page.route(lambda url: not url.startswith(self.base), lambda route: route.abort())
        return self

    def _request(self, request):
        if request.resource_type in FOREIGN_KINDS and not request.url.startswith((self.base, "data:", "blob:")):
            self.foreign.append(f"{request.resource_type} {request.url}")


@dataclass
class Visit:
    watch: Watch
    prose: str
    broken_images: list[str]
    overflowing: list[list]


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "index.html").exists():
        pytest.fail(f"no built book in {HTML}: run `make html` first")
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is missing: run `make browser`")
    from playwright.sync_api import sync_playwright

    server = socketserver.TCPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium, f"http://127.0.0.1:{server.server_address[1]}"
        chromium.close()
    server.shutdown()


@pytest.fixture(scope="module")
def visit(browser):
    """Each page loaded once, in a fresh tab, and everything the tests check recorded."""
    chromium, base = browser

    @functools.cache
    def load(name: str) -> Visit:
        page = chromium.new_page(viewport=VIEWPORT)
        watch = Watch(base).attach(page)
        page.goto(f"{base}/{name}", wait_until="load")
        if page.locator("script[src*='_static/mathjax/']").count():
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=30000)
            page.evaluate("() => MathJax.startup.promise")
        prose = page.evaluate("""() => {
            const article = (document.querySelector('article') || document.body).cloneNode(true);
            article.querySelectorAll('pre, code, script, style, mjx-container').forEach(e => e.remove());
            return article.innerText; }""")
        broken = page.evaluate("() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.getAttribute('src'))")
        overflowing = page.evaluate(OVERFLOWING_PRE)
        page.close()
        return Visit(watch, prose, broken, overflowing)

    return load


@pytest.mark.parametrize("name", pages())
def test_page_renders_offline(visit, name):
    seen = visit(name)
    assert not seen.watch.missing, f"files {name} asked the book for and did not get: {seen.watch.missing}"
    assert not RAW_TEX.findall(seen.prose), f"raw TeX on {name}: {RAW_TEX.findall(seen.prose)[:5]}"
    assert not seen.broken_images, f"images that did not load on {name}: {seen.broken_images}"


@pytest.mark.parametrize("name", pages())
def test_page_logs_no_error(visit, name):
    errors = visit(name).watch.errors
    assert not errors, f"{name} logged {len(errors)} error(s): {errors}"


@pytest.mark.parametrize("name", pages())
def test_page_loads_nothing_from_other_hosts(visit, name):
    foreign = visit(name).watch.foreign
    assert not foreign, f"{name} asked other hosts for: {foreign}"


def describe_overflow(name: str, overflowing: list[list]) -> str:
    return "\n".join([f"{len(overflowing)} block(s) on {name} wider than their box:"] + [
        f"  {kind} {text!r}: scrollWidth {wide} > clientWidth {box}; longest line ({len(line)} characters):"
        f" {line[:60]!r}" for kind, text, wide, box, line in overflowing])


@pytest.mark.parametrize("name", pages())
def test_code_blocks_fit_their_box(visit, name):
    overflowing = visit(name).overflowing
    assert not overflowing, describe_overflow(name, overflowing)


def test_the_raw_tex_check_can_fail():
    assert RAW_TEX.findall(r"where $$p = \frac{a}{b}$$") and not RAW_TEX.findall("H = 2BN/(B + N)")


def test_the_error_and_foreign_host_checks_can_fail(browser):
    chromium, base = browser
    page = chromium.new_page(viewport=VIEWPORT)
    watch = Watch(base).attach(page)
    page.set_content("""<link rel="stylesheet" href="https://cdn.example.org/x.css">
        <script src="https://cdn.example.org/x.js"></script>
        <script>console.error("boom"); const a = 1;</script><script>const a = 2;</script>""")
    page.close()
    assert any("boom" in e for e in watch.errors)
    assert any("uncaught" in e and "already been declared" in e for e in watch.errors)
    assert {kind.split()[0] for kind in watch.foreign} == {"script", "stylesheet"}


def test_the_overflow_check_can_fail(browser):
    chromium, _ = browser
    page = chromium.new_page(viewport=VIEWPORT)
    page.set_content(f"""<article style="width: 300px">
        <div class="cell_input"><pre>{"x = 1  # " + "long " * 60}</pre></div>
        <div class="cell_output"><pre>short</pre></div><pre style="white-space: pre-wrap">{"wraps " * 60}</pre>
        <details><summary>show</summary><pre>{"hidden " * 60}</pre></details></article>""")
    overflowing = page.evaluate(OVERFLOWING_PRE)
    page.close()
    assert [(kind, text[:9]) for kind, text, *_ in overflowing] == [("input", "x = 1 # l"),
                                                                     ("literal (collapsed)", "hidden hi")]
    assert "input 'x = 1 # long" in describe_overflow("page.html", overflowing)
