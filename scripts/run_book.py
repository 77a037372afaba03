"""Execute every chapter in order with papermill, writing outputs into the notebooks.

    python scripts/run_book.py                     # embedded default on CPU, in place
    python scripts/run_book.py --device cuda --out book/_gpu -p profile tiny
    python scripts/run_book.py --only 02_coop      # one chapter

In-place runs keep outputs and execution counts: they are what the rendered book shows
and what nbval checks. Runs with another device or profile must name --out, so they never
overwrite the committed CPU outputs. Times go to results/book_times.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def chapters(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) for o in only)]
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="chapter name prefixes, e.g. 02_coop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="folder for executed copies (required off the CPU default)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra parameter, e.g. -p profile paper")
    args = parser.parse_args(argv)
    params = {"device": args.device, **{k: v for k, v in args.p}}
    default = args.device == "cpu" and params.get("profile", "tiny") == "tiny"
    if not default and args.out is None:
        parser.error("a GPU or paper-profile run must write elsewhere: pass --out book/_gpu")
    out_dir = args.out or BOOK
    out_dir.mkdir(parents=True, exist_ok=True)
    times = {}
    total = time.time()
    for notebook in chapters(args.only):
        start = time.time()
        print(f"executing {notebook.name} ...", flush=True)
        papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters={} if default else params,
                                   kernel_name="python3", cwd=str(BOOK), progress_bar=False)
        times[notebook.stem] = round(time.time() - start, 1)
        print(f"  {notebook.name}: {times[notebook.stem]} s", flush=True)
    times["total"] = round(time.time() - total, 1)
    record = ROOT / "results" / ("book_times.json" if default else f"book_times_{args.device.split(':')[0]}.json")
    if not args.only:
        record.parent.mkdir(exist_ok=True)
        record.write_text(json.dumps({"device": args.device, "seconds": times}, indent=2) + "\n")
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
