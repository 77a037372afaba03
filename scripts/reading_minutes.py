"""Minutes of reading per chapter, as the intro's table counts them: the prose at 200 words a
minute and the shown code at 30 lines a minute, rounded to 5 (book/intro.md).

    python scripts/reading_minutes.py
"""
from __future__ import annotations

import json
import re
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"
HIDDEN = {"remove-cell", "remove-input"}
MARKUP = re.compile(r"<[^>]+>|\]\([^)]*\)")   # HTML tags and link targets: not read


def minutes(path: Path) -> int:
    cells = json.loads(path.read_text())["cells"]
    words = sum(len(MARKUP.sub(" ", "".join(c["source"])).split()) for c in cells if c["cell_type"] == "markdown")
    lines = sum(len("".join(c["source"]).splitlines()) for c in cells
                if c["cell_type"] == "code" and not HIDDEN & set(c.get("metadata", {}).get("tags", [])))
    return max(5, 5 * round((words / 200 + lines / 30) / 5))


if __name__ == "__main__":
    found = {p.stem: minutes(p) for p in sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))}
    for name, value in found.items():
        print(f"{name}: {value}")
    print(f"all: {sum(found.values())}, chapters 1-5: {sum(v for n, v in found.items() if n < '06')}")
