"""What a regeneration moved: each method's stored accuracies now against those of a git
revision, record by record (the README's "What the last regeneration moved").

    python scripts/records_moved.py 7fbcc51      # the revision before the regeneration

For every record (results/*.jsonl) present at both, the base, new and H values are compared:
per method, the share that came out bit for bit as before, and the median and largest change
in points.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("runs.jsonl", "tuning_runs.jsonl", "sensitivity.jsonl")
METRICS = ("base", "new", "H")


def records(text: str) -> dict:
    return {r["key"]: r for r in (json.loads(line) for line in text.splitlines() if line.strip())}


def changes(before: str) -> dict[str, list[float]]:
    """Per method, |now - then| of every base, new and H value that both have."""
    out = defaultdict(list)
    for name in FILES:
        shown = subprocess.run(["git", "show", f"{before}:results/{name}"], cwd=ROOT, capture_output=True,
                               text=True)
        if shown.returncode:
            raise SystemExit(f"no results/{name} at {before}: name a revision that has the records "
                             f"({shown.stderr.strip()})")
        then, now = records(shown.stdout), records((ROOT / "results" / name).read_text())
        for key in then.keys() & now.keys():
            for metric in METRICS:
                a, b = then[key].get(metric), now[key].get(metric)
                if a is not None and b is not None:
                    out[now[key]["method"]].append(abs(b - a))
    return out


def main(before: str) -> None:
    lines = ["| method | values | unchanged | median change | largest change |", "|---|---|---|---|---|"]
    for method, moved in sorted(changes(before).items()):
        same = sum(d == 0 for d in moved) / len(moved)
        lines.append(f"| {method} | {len(moved)} | {100 * same:.1f} % | {statistics.median(moved):.2f} | "
                     f"{max(moved):.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/records_moved.py REVISION (the commit before the regeneration)")
    main(sys.argv[1])
