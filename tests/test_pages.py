"""The built book in a real browser (Debian's chromium driven by Playwright): every page's
mathematics typeset by the MathJax served with the book, every image loaded, every file the
page asks the book for found, no console error or uncaught error, no script, stylesheet or
font from another host, no code input, output or literal block wider than its box, no output
of an exercise's cells shown before the reader opens it (an answer printed above its "Answer"
toggle), and no figure or image output that is not a numbered figure referred to from its page.
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

# Every cell output in an "Exercises" section that a reader sees before opening anything, as
# [the exercise (its heading, or its bold number), first 60 characters]: what an exercise's
# cell prints is its answer (or a check's verdict on the reader's code), so it stays in a
# closed toggle (the cell tagged hide-output) until the reader opens it or runs the cell.
EXERCISE_OUTPUTS_SHOWN = """() => {
    const shown = [];
    const hidden = e => !e.checkVisibility() || e.closest('details:not([open]), .toggle-hidden');
    const numbered = e => e.tagName === 'P' && e.firstElementChild && e.firstElementChild.tagName === 'STRONG'
        && !e.textContent.slice(0, e.textContent.indexOf(e.firstElementChild.textContent)).trim()
        && /^\\s*\\d+\\./.test(e.firstElementChild.textContent);
    const exercises = s => {
      const heading = s.querySelector(':scope > h1, :scope > h2, :scope > h3');
      return heading && /^\\s*(\\d+(\\.\\d+)*\\.?\\s+)?Exercises?\\b/i.test(heading.textContent) ? heading : null; };
    document.querySelectorAll('article section').forEach(section => {
      const heading = exercises(section);
      for (let up = section.parentElement.closest('section'); up; up = up.parentElement.closest('section'))
        if (exercises(up)) return;  // inside the exercises: its outputs are counted there
      if (!heading) return;
      let exercise = heading.textContent;
      section.querySelectorAll('h3, h4, p, .cell_output').forEach(e => {
        if (/^H[34]$/.test(e.tagName)) exercise = e.textContent;
        else if (numbered(e)) exercise = e.firstElementChild.textContent;
        else if (e.matches('.cell_output') && !hidden(e))
          shown.push([exercise.replace(/#$/, '').trim().slice(0, 60),
                      e.innerText.trim().replace(/\\s+/g, ' ').slice(0, 60)]);
      });
    });
    return shown; }"""

# Every figure of the article (a {figure} or a cell's figure metadata) and every image a cell
# printed, that is not a numbered, captioned figure with a name, or that no link on its page
# outside the figure itself refers to ({numref} or {ref}), as [problem, name or image, caption].
FIGURES_UNREFERRED = """() => {
    const article = document.querySelector('article') || document.body;
    const links = Array.from(article.querySelectorAll('a[href^="#"]'));
    const problems = [], figures = new Set();
    article.querySelectorAll('figure img, .cell_output img').forEach(img => {
      const figure = img.closest('figure');
      if (!figure) { problems.push(['image not in a numbered figure', img.getAttribute('src'), '']); return; }
      figures.add(figure); });
    figures.forEach(figure => {
      const caption = (figure.querySelector('figcaption') || {innerText: ''}).innerText.trim().slice(0, 60);
      if (!figure.id || !figure.querySelector('figcaption .caption-number'))
        problems.push(['figure without a name or a number', figure.id, caption]);
      else if (!links.some(a => a.getAttribute('href') === '#' + figure.id && !figure.contains(a)))
        problems.push(['never referred to', figure.id, caption]);
    });
    return problems; }"""


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
    exercise_outputs: list[list]
    figures: list[list]


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
        exercise_outputs = page.evaluate(EXERCISE_OUTPUTS_SHOWN)  # before OVERFLOWING_PRE opens every toggle
        figures = page.evaluate(FIGURES_UNREFERRED)
        overflowing = page.evaluate(OVERFLOWING_PRE)
        page.close()
        return Visit(watch, prose, broken, overflowing, exercise_outputs, figures)

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


@pytest.mark.parametrize("name", pages())
def test_exercise_outputs_stay_hidden_until_opened(visit, name):
    shown = visit(name).exercise_outputs
    assert not shown, "\n".join(
        [f"{len(shown)} exercise output(s) on {name} shown before the reader opens them (tag the cell hide-output):"]
        + [f"  {exercise!r}: {text!r}" for exercise, text in shown])


@pytest.mark.parametrize("name", pages())
def test_every_figure_is_numbered_and_referred_to(visit, name):
    problems = visit(name).figures
    assert not problems, "\n".join([f"{len(problems)} figure(s) on {name}:"] + [
        f"  {problem}: {label!r} {caption!r}" for problem, label, caption in problems])


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


# A small page as the book's build writes one (sections, myst-nb's cells, a hide-output cell's
# closed toggle, numbered figures and {numref} links), with one exercise output shown and one
# hidden, a figure referred to, one referred to only by its own caption's link, one never, and an
# image a cell printed outside any figure.
EXERCISES_AND_FIGURES = """<article><section id="results"><h2>Results</h2>
    <div class="cell"><div class="cell_output"><pre>outside the exercises: shown</pre></div></div>
    <figure id="fig-a"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><figcaption><p>
      <span class="caption-number">Fig. 1 </span><span class="caption-text">drawn</span>
      <a class="headerlink" href="#fig-a">#</a></p></figcaption></figure>
    <figure id="fig-b"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><figcaption><p>
      <span class="caption-number">Fig. 2 </span><span class="caption-text">only its own link</span>
      <a class="headerlink" href="#fig-b">#</a></p></figcaption></figure>
    <p><a class="reference internal" href="#fig-a">Fig. 1</a> shows it.</p>
    <div class="cell"><div class="cell_output"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></div></div>
    </section><section id="exercises"><h2><span class="section-number">4.7. </span>Exercises<a
      class="headerlink" href="#exercises">#</a></h2>
    <p><strong>1. Predict, then run.</strong> What does it print?</p>
    <div class="cell"><div class="cell_output"><pre>the answer, shown</pre></div></div>
    <div class="dropdown admonition"><p class="admonition-title">Answer</p><p>it.</p></div>
    <p><strong>2. Again.</strong></p>
    <div class="cell tag_hide-output"><details class="hide below-input"><summary>Show output</summary>
      <div class="cell_output"><pre>the answer, hidden</pre></div></details></div>
    <section id="exercise-3"><h3><span class="section-number">4.7.1. </span>Exercise 3 (implement)</h3>
    <div class="cell"><div class="cell_output"><pre>not yet: write it above</pre></div></div></section>
    </section></article>"""


def test_the_exercise_output_and_figure_checks_can_fail(browser):
    chromium, _ = browser
    page = chromium.new_page(viewport=VIEWPORT)
    page.set_content(EXERCISES_AND_FIGURES)
    shown, figures = page.evaluate(EXERCISE_OUTPUTS_SHOWN), page.evaluate(FIGURES_UNREFERRED)
    page.close()
    assert shown == [["1. Predict, then run.", "the answer, shown"],
                     ["4.7.1. Exercise 3 (implement)", "not yet: write it above"]]
    assert [problem[:2] for problem in figures] == [["image not in a numbered figure", figures[0][1]],
                                                    ["never referred to", "fig-b"]]
    assert figures[1][2].startswith("Fig. 2 only its own link")
