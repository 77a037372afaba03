"""The chapters as a reader meets them in JupyterLab (`make lab`'s server, as tests/test_lab.py
starts it, in Debian's chromium driven by Playwright), where Markdown is CommonMark and HTML and
MyST is shown as typed: no MyST role, directive, option or label in any chapter's rendered
Markdown, every <details> (an exercise's answer) folded, with its summary, until the reader opens
it, no chapter marked modified as it opens, and chapter 1's live widget drawing again when its
dropdown changes after Run All. Nothing the browser does is saved: autosave is off and every
write to the server is refused, so Run All's outputs never reach book/."""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from test_lab import BOOK, lab  # noqa: F401  (lab: the fixture)
from test_pages import CHROMIUM, VIEWPORT

CHAPTERS = sorted(p.name for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
OPEN_S = 60  # bound on opening a chapter and rendering its Markdown
KERNEL_S = 180  # bound on the page starting the chapter's kernel and connecting to it (slow on a busy machine)
DIRTY_AFTER_S = 2  # JupyterLab writes the kernel's spec and language into the metadata within this of connecting
RUN_ALL_S = 300
SETTINGS = {  # plugin: its user settings, read by the server from the fixture's JUPYTER_CONFIG_DIR
    # every cell in the page, rendered (JupyterLab 4 otherwise renders cells as they scroll into view)
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
ANSWER = "<details>\\n<summary>Answer</summary>\\n\\n...\\n\\n</details>"
RAW_MYST = [  # what JupyterLab shows of a MyST construct, and its replacement
    (r"\{glue[:\w]*\}", 'write the number into the text: <data value="key:.1f">70.3</data>'),
    (r"\{numref\}", "link the figure: [Fig. 3.2](#fig-name)"),
    (r"\{eq\}", r"tag the equation in its TeX (\tag{3.1}) and write (3.1)"),
    (r"\{cite[:\w]*\}", "link the paper: [Zhou et al., 2022a](https://arxiv.org/abs/...)"),
    (r"\{doc\}", "link the chapter: [chapter 3](03_prograd.ipynb)"),
    (r"\{ref\}", "link the section: [section 3.2](#section-anchor)"),
    (r"(?m)^[ \t]*:::.*", f"an answer: {ANSWER}; another admonition: a quote, > **Pitfall.** ..."),
    (r"(?m)^[ \t]*```\{.*", "write the directive in Markdown or HTML"),
    (r"(?m)^[ \t]*:[a-z-]+:.*", "drop the directive's option with the directive"),
    (r"(?m)^[ \t]*\([\w-]+\)=", "drop the MyST target; link to the heading's anchor instead"),
    (r"\(eq-[\w-]+\)", r"drop the equation's MyST label; tag it in its TeX (\tag{3.1})"),
]

# "drawn" once a widget box's output shows a figure, or the first traceback a cell printed.
DRAWN_OR_RAISED = """() => {
    const raised = Array.from(document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
        .find(e => e.textContent.includes('Traceback (most recent call last)'));
    if (raised) return raised.textContent.slice(-600);
    return document.querySelector('.widget-vbox .widget-output img') ? 'drawn' : null; }"""

# Each rendered Markdown cell's text (a line break before every block, no typeset mathematics,
# no heading anchors), a code block's fence as typed for a fenced directive, which Markdown turns
# into a code block, and its <details> as [open, summary].
RENDERED = """() => Array.from(document.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown')).map(cell => {
    const copy = cell.cloneNode(true);
    copy.querySelectorAll('mjx-container, .jp-InternalAnchorLink').forEach(e => e.remove());
    copy.querySelectorAll('pre > code').forEach(c => c.parentElement.replaceWith(
        [...c.classList].some(k => k.startsWith('language-{')) ? '\\n```' + c.className.slice(9) : ''));
    copy.querySelectorAll('p, li, h1, h2, h3, h4, h5, h6, summary, div, blockquote, td, th')
        .forEach(e => e.prepend('\\n'));
    return [copy.textContent, Array.from(cell.querySelectorAll('details')).map(d =>
        [d.open, (d.querySelector(':scope > summary') || {textContent: ''}).textContent.trim()])]; })"""


@pytest.fixture(autouse=True)
def _reader_settings(tmp_path):
    """Autouse, so that it runs before the lab fixture starts the server on tmp_path/config.
    The checkpoint JupyterLab makes of a notebook it opens goes there too, not to book/."""
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "jupyter_server_config.json").write_text(json.dumps(
        {"FileCheckpoints": {"checkpoint_dir": str(tmp_path / "checkpoints")}}))
    for plugin, values in SETTINGS.items():
        path = tmp_path / "config" / "lab" / "user-settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is missing: run `make browser`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def menu(page, title: str, command: str):
    page.locator("li.lm-MenuBar-item", has_text=title).first.click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


def open_notebook(browser, server, path: Path):
    """A new tab with JupyterLab on the notebook (in the server's root folder), once its Markdown
    cells are rendered, and the bodies of the writes it tried (refused)."""
    page, writes = browser.new_page(viewport=VIEWPORT), []

    def refuse_writes(route):
        method, url = route.request.method, route.request.url
        if method == "GET" or method == "POST" and "/checkpoints?" in url:
            return route.continue_()
        writes.append(route.request.post_data or "")
        route.abort()

    page.route("**/api/contents/**", refuse_writes)
    # a workspace of its own, so that JupyterLab does not bring back the notebooks other tabs opened
    page.goto(f"http://{server.base}/lab/workspaces/{uuid.uuid4().hex}/tree/{path.name}?token={server.token}")
    markdown = sum(c["cell_type"] == "markdown" and bool("".join(c["source"]).strip())
                   for c in json.loads(path.read_text())["cells"])
    try:
        page.wait_for_function("n => Array.from(document.querySelectorAll('.jp-MarkdownCell .jp-RenderedMarkdown'))"
                               ".filter(e => e.childElementCount).length >= n", arg=markdown, timeout=OPEN_S * 1000)
    except PlaywrightTimeout:
        page.close()
        pytest.fail(f"{path.name}: its {markdown} Markdown cells not rendered in JupyterLab in {OPEN_S} s")
    return page, writes


def kernel_connected(server, name: str) -> bool:
    kernels = [s["kernel"] for s in server.api("GET", "sessions") if s["path"] == name]
    return bool(kernels) and kernels[0]["execution_state"] == "idle" and bool(kernels[0]["connections"])


def wait_for_kernel(server, name: str, page=None):
    """Until the page is connected to the notebook's kernel and it is idle: Run All before then runs
    nothing. Given the page, it also waits for the page's toolbar to name the kernel, and opens
    the chapter again once if it does not: now and then a freshly loaded JupyterLab leaves a
    notebook at "No Kernel | Initializing" for good."""
    for attempt in range(2 if page else 1):
        deadline = time.monotonic() + (KERNEL_S if attempt or not page else KERNEL_S / 3)
        while time.monotonic() < deadline:
            named = page is None or "Python 3" in page.locator(".jp-NotebookPanel-toolbar").inner_text()
            if named and kernel_connected(server, name):
                return page
            time.sleep(0.3)
        if page:
            page.reload()
    pytest.fail(f"{name}'s kernel not started and connected in {KERNEL_S} s:\n{server.output()[-3000:]}")


def reading_problems(name: str, source: str, rendered: list) -> list[str]:
    """One line per problem: the chapter, what the reader sees, and the fix."""
    problems = []
    for pattern, fix in RAW_MYST:
        seen = [(match.group().strip(), " ".join(text[max(0, match.start() - 25):match.end() + 25].split()))
                for text, _ in rendered for match in re.finditer(pattern, text)]
        if seen:
            problems.append(f"{name} shows raw MyST {seen[0][0]!r} {len(seen)} time(s), in "
                            f"{'; '.join(repr(context) for _, context in seen[:3])}: {fix}")
    details = [d for _, found in rendered for d in found]
    problems += [f"{name}: <details> {summary!r} is open before the reader opens it: drop its `open`"
                 for is_open, summary in details if is_open]
    problems += [f"{name}: a <details> has no summary: begin it with <summary>Answer</summary>"
                 for _, summary in details if not summary]
    typed = len(re.findall(r"<details\b", source))
    if len(details) != typed:
        problems.append(f"{name}: {typed} <details> in its Markdown, {len(details)} rendered: "
                        f"write each as {ANSWER}, with the blank lines")
    return problems


def markdown_source(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                     if c["cell_type"] == "markdown")


def modified_metadata(path: Path, writes: list[str]) -> str:
    """What JupyterLab changed in the notebook's metadata, as the save it tried carries it."""
    saved = json.loads(writes[-1])["content"]["metadata"] if writes else {}
    typed = json.loads(path.read_text())["metadata"]
    return ", ".join(f"{key}: {typed.get(key)!r} -> {saved.get(key)!r}"
                     for key in sorted(set(typed) | set(saved)) if typed.get(key) != saved.get(key))


def read_notebook(browser, server, path: Path) -> list[str]:
    page, writes = open_notebook(browser, server, path)
    try:
        problems = reading_problems(path.name, markdown_source(path), page.evaluate(RENDERED))
        wait_for_kernel(server, path.name, page)
        page.wait_for_timeout(DIRTY_AFTER_S * 1000)
        if page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count():
            menu(page, "File", "docmanager:save")  # refused, but its body names what changed
            page.wait_for_timeout(1000)
            problems.append(f"{path.name} opens modified (JupyterLab changed {modified_metadata(path, writes) or '?'}):"
                            " make the metadata what JupyterLab writes (kernelspec display_name"
                            " 'Python 3 (ipykernel)')")
    finally:
        page.close()
    return problems


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_reads_in_jupyterlab_as_on_the_site(browser, lab, name):  # noqa: F811
    problems = read_notebook(browser, lab, BOOK / name)
    assert not problems, "\n".join([f"{len(problems)} problem(s) reading {name} in JupyterLab:"] + problems)


def test_the_reading_checks_can_fail():
    raw = [("\n:::{admonition} Answer\n:class: dropdown\nYes.\n:::\n By {glue:text}wording_gain:.1f points"
            " ({numref}fig-wording), {eq}eq-clip {cite:p}zhou {doc}03_prograd {ref}sec-x"
            "\n(sec-ensemble)=\n (eq-clip)\n```{figure} images/clip.png", [[True, "Answer"], [False, ""]])]
    found = reading_problems("01_x.ipynb", "<details>", raw)
    assert [p.split("'")[1] for p in found[:10]] == [
        "{glue:text}", "{numref}", "{eq}", "{cite:p}", "{doc}", "{ref}", ":::{admonition} Answer",
        "```{figure} images/clip.png", ":class: dropdown", "(sec-ensemble)="]
    assert ":::{admonition} Answer' 2 time(s)" in found[6]
    assert all(p.startswith("01_x.ipynb") for p in found) and len(found) == 14
    assert reading_problems("01_x.ipynb", "<details>\n<details>", [
        ("\nrises to 70.3 points (Fig. 3.2, (3.1))", [[False, "Answer"], [False, "Answer"]])]) == []


def widget_problem(page, name: str) -> str | None:
    """Run All, then another option in the first dropdown of a widget box with an output: None
    when the output's figure is drawn and then drawn again, else what went wrong."""
    menu(page, "Run", "runmenu:run-all")
    start = time.monotonic()
    try:
        outcome = page.wait_for_function(DRAWN_OR_RAISED, timeout=RUN_ALL_S * 1000).json_value()
    except PlaywrightTimeout:
        return f"{name}: Run All drew no widget figure in {RUN_ALL_S} s"
    if outcome != "drawn":
        return f"{name}: Run All raised before the widget was drawn: {outcome}"
    print(f"Run All of {name} drew the widget in {time.monotonic() - start:.0f} s")
    box = page.locator(".widget-vbox:has(.widget-dropdown select):has(.widget-output img)").first
    select = box.locator(".widget-dropdown select").first
    options = select.locator("option").all_text_contents()
    if len(options) < 2:
        return f"{name}: the widget's dropdown offers only {options}"
    src = box.locator(".widget-output img").first.get_attribute("src")
    select.select_option(index=1)
    try:
        page.wait_for_function("([box, src]) => { const img = box.querySelector('.widget-output img');"
                               " return img && img.getAttribute('src') !== src; }",
                               arg=[box.element_handle(), src], timeout=OPEN_S * 1000)
    except PlaywrightTimeout:
        return f"{name}: choosing {options[1]!r} in the widget's dropdown did not redraw its figure in {OPEN_S} s"
    return None


def test_chapter_1_widget_redraws_when_its_dropdown_changes(browser, lab):  # noqa: F811
    page, writes = open_notebook(browser, lab, BOOK / "01_zero_shot.ipynb")
    try:
        wait_for_kernel(lab, "01_zero_shot.ipynb", page)
        problem = widget_problem(page, "01_zero_shot.ipynb")
        assert problem is None, problem
        assert not writes, "the page tried to save 01_zero_shot.ipynb"
    finally:
        page.close()
