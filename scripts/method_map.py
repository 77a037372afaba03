"""Draw the intro's method map (plots.method_map) into book/images/method_map.svg.

The SVG is byte-for-byte the same on every run: its element ids come from a fixed salt and it
carries no date, so re-running it leaves git clean.

    python scripts/method_map.py [--out PATH]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from gcscoop_lib import plots  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "images" / "method_map.svg"


def write(path: Path = OUT) -> Path:
    """Save the method map as a deterministic SVG at `path`."""
    with plt.rc_context({"svg.hashsalt": "method-map", "svg.fonttype": "path"}):
        fig = plots.method_map()
        fig.savefig(path, format="svg", metadata={"Date": None, "Creator": None,
                                                  "Title": "The methods of this book and what each changes"})
    plt.close(fig)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    print("wrote", write(parser.parse_args().out))
