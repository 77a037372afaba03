"""Summarise `mutmut results --all true` (saved by `make mutation`) per file; writes results/mutation.md.

    python scripts/mutation_score.py results/mutation.txt
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def main(path: str) -> None:
    counts = Counter()
    for line in Path(path).read_text().splitlines():
        if ": " not in line:
            continue
        name, status = line.strip().rsplit(": ", 1)
        module = name.split(".")[1]
        counts[module, status] += 1
        counts["all", status] += 1
    lines = ["| file | mutants | killed | survived | score |", "|---|---|---|---|---|"]
    for module in sorted({m for m, _ in counts} - {"all"}) + ["all"]:
        total = sum(n for (m, _), n in counts.items() if m == module)
        killed = counts[module, "killed"]
        label = "all" if module == "all" else f"gcscoop_lib/{module}.py"
        lines.append(f"| {label} | {total} | {killed} | {counts[module, 'survived']} | {100 * killed / total:.1f} % |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(path).with_suffix(".md").write_text(report)


if __name__ == "__main__":
    main(sys.argv[1])
