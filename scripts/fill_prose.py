"""Write into the chapters' Markdown what their prose shows: glued numbers and figure numbers.

    python scripts/fill_prose.py            # fill every chapter in place
    python scripts/fill_prose.py --check    # list what differs, exit 1 if anything does

A chapter's Markdown is plain Markdown with a little HTML, so that it reads the same on the
site, in JupyterLab and in Colab, none of which shares the site's MyST roles:

- a number computed by the chapter sits in `<data value="key:.1f">70.3</data>`; `key` is a
  value the chapter's code glued (`reports.glue_values`), `.1f` an optional format;
- a figure is referred to as `[Fig. 3.2](#fig-name)`, numbered as the site numbers it (the
  chapter, then the figure's place among the chapter's figure cells);
- an equation carries its number as `\\tag{3.1}`, numbered in order within its chapter.

scripts/run_book.py fills a chapter after executing it; tests/test_prose.py checks that every
committed chapter is filled.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from pathlib import Path

from myst_nb.core.variables import format_plain_text

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NUMBER = re.compile(r'<data value="([\w.-]+)(?::([^"]*))?">(.*?)</data>', re.S)
FIGURE_LINK = re.compile(r"\[Fig\. ([^\]]*)\]\(#([\w-]+)\)")
TAG = re.compile(r"\\tag\{([^}]*)\}")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]])")


def chapters() -> list[Path]:
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def glued(notebook: dict) -> dict[str, str]:
    """The text/plain of every value the notebook's code glued, by name."""
    values = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook", {})
            if "name" in record:
                values[record["name"]] = output["data"][record.get("mime_prefix", "") + "text/plain"]
    return values


def figure_numbers(paths: list[Path]) -> dict[str, str]:
    """Every figure's number as the site prints it, by name: "3.2" is chapter 3's second figure."""
    numbers = {}
    for path in paths:
        figures = [cell["metadata"]["mystnb"]["figure"]["name"]
                   for cell in json.loads(path.read_text())["cells"]
                   if "name" in cell.get("metadata", {}).get("mystnb", {}).get("figure", {})]
        numbers |= {name: f"{int(path.name[:2])}.{k}" for k, name in enumerate(figures, 1)}
    return numbers


def shown(value: str, fmt: str | None) -> str:
    """A glued value as the prose shows it, escaped so that Markdown prints it as it is."""
    text = format_plain_text(value, fmt or "")
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def fill_markdown(text: str, values: dict, figures: dict, where: str, problems: list) -> str:
    def number(m):
        key, fmt = m.group(1), m.group(2)
        if key not in values:
            problems.append(f"{where}: no glued value {key!r} (glue it in a code cell above)")
            return m.group(0)
        return f'<data value="{key}{":" + fmt if fmt else ""}">{shown(values[key], fmt)}</data>'

    def figure(m):
        name = m.group(2)
        if name not in figures:
            problems.append(f"{where}: no figure named {name!r} (a figure cell's mystnb.figure.name)")
            return m.group(0)
        return f"[Fig. {figures[name]}](#{name})"

    return FIGURE_LINK.sub(figure, NUMBER.sub(number, text))


def fill(path: Path, figures: dict) -> tuple[str, list[str]]:
    """The chapter's file with its Markdown filled, and what could not be filled."""
    raw = path.read_text()
    notebook = json.loads(raw)
    values, problems = glued(notebook), []
    tags = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        filled = fill_markdown(text, values, figures, f"{path.name}, cell {index}", problems)
        tags += TAG.findall(filled)
        if filled != text:
            cell["source"] = filled.splitlines(keepends=True)
    expected = [f"{int(path.name[:2])}.{k}" for k in range(1, len(tags) + 1)]
    if tags != expected:
        problems.append(f"{path.name}: equations tagged {tags}, expected {expected} (renumber the \\tag"
                        " and the references to them)")
    filled = json.dumps(notebook, indent=1, ensure_ascii=False) + ("\n" if raw.endswith("\n") else "")
    return filled, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; list what differs")
    parser.add_argument("--only", nargs="*", help="chapters whose names start with these")
    args = parser.parse_args(argv)
    every = chapters()
    figures = figure_numbers(every)
    failed = False
    for path in every:
        if args.only and not any(path.name.startswith(o) for o in args.only):
            continue
        filled, problems = fill(path, figures)
        for problem in problems:
            print(problem, file=sys.stderr)
        failed |= bool(problems)
        if filled != path.read_text():
            if args.check:
                print(f"{path.name}: its prose does not show its glued values: run scripts/fill_prose.py",
                      file=sys.stderr)
                failed = True
            else:
                path.write_text(filled)
                print(f"filled {path.name}")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
