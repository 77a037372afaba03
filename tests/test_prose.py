"""The chapters' Markdown reads the same on the site, in JupyterLab and in Colab: no MyST role
or directive that only the site renders, answers folded in <details>, and every number, figure
number and equation tag written in by scripts/fill_prose.py from what the chapter computed."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import fill_prose  # noqa: E402

CHAPTERS = fill_prose.chapters()
SITE_ONLY = re.compile(r"\{[a-z]+(?::[a-z]+)?\}`|^(?::::*|```)\{|^:class:|^\([\w-]+\)=\s*$|\$\$ *\([\w-]+\)",
                       re.M)


def markdown(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_markup_that_only_the_site_renders(path):
    found = [m.group(0) for text in markdown(path) for m in SITE_ONLY.finditer(text)]
    assert not found, (f"{path.name} shows {found[:3]} raw in JupyterLab and Colab: write numbers as <data>, "
                       "figures as [Fig. N.k](#name), answers in <details> (scripts/fill_prose.py)")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_answers_are_folded(path):
    for text in markdown(path):
        assert text.count("<details>") == text.count("</details>") == text.count("<summary>"), path.name
        assert "<details open" not in text, f"{path.name}: an answer is unfolded"


def test_every_chapter_shows_what_it_computed():
    """The committed Markdown is what the filler writes from the committed outputs."""
    figures = fill_prose.figure_numbers(CHAPTERS)
    for path in CHAPTERS:
        filled, problems = fill_prose.fill(path, figures)
        assert not problems, problems
        assert filled == path.read_text(), f"{path.name}: run scripts/fill_prose.py"


def test_the_filler_writes_a_changed_value_and_refuses_an_unknown_one():
    notebook = {"cells": [
        {"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {
            "application/papermill.record/text/plain": "70.25"}, "metadata": {"scrapbook": {
                "name": "acc", "mime_prefix": "application/papermill.record/"}}}]},
        {"cell_type": "markdown", "source": ['At <data value="acc:.1f">99.9</data> (see [Fig. 1.9](#fig-a));'
                                             ' $$x\\tag{2.1}$$ <data value="gone">1</data>']},
    ], "metadata": {}}
    problems = []
    text = fill_prose.fill_markdown("".join(notebook["cells"][1]["source"]), fill_prose.glued(notebook),
                                    {"fig-a": "2.3"}, "here", problems)
    assert '<data value="acc:.1f">70.2</data>' in text and "[Fig. 2.3](#fig-a)" in text
    assert problems == ["here: no glued value 'gone' (glue it in a code cell above)"]


def test_a_glued_string_is_escaped_for_markdown():
    assert fill_prose.shown("'CoOp_aug <*>'", None) == "CoOp\\_aug &lt;\\*&gt;"


def test_the_intro_states_each_chapters_reading_minutes():
    import reading_minutes

    intro = (ROOT / "book" / "intro.md").read_text()
    stated = {name: int(m) for name, m in re.findall(r"\| \{doc\}`(\w+)` \|.*\| (\d+) \|", intro)}
    counted = {p.stem: reading_minutes.minutes(p) for p in CHAPTERS}
    assert stated == counted, "the intro's minutes are stale: copy them from scripts/reading_minutes.py"
