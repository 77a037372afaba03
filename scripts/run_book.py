"""Execute every chapter in order with papermill, writing outputs into the notebooks.

    python scripts/run_book.py                     # embedded default on CPU, in place
    python scripts/run_book.py --device cuda --out book/_gpu -p profile tiny
    python scripts/run_book.py --only 02_coop      # one chapter

In-place runs keep outputs and execution counts: they are what the rendered book shows
and what nbval checks, and the runs they make are stored with the book's records
(results/); other runs store theirs where GCSCOOP_RESULTS says (default ~/gcscoop_runs). Runs with another device or profile must name --out, so they never
overwrite the committed CPU outputs. The run's timestamps are stripped from the notebooks,
so re-executing an unchanged book changes no file; times go to _build/book_times.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import papermill
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
# The kernels' sockets CurveZMQ-encrypted, with keys from jupyter_client's kernel manager wherever the
# kernelspec declares support (ipykernel 7 does): otherwise each kernel logs "Kernel is running over TCP
# without encryption", once a chapter.
KERNELS = Config({"KernelManager": {"transport_encryption": "auto"}})


def chapters(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) for o in only)]
    return found


def strip_timestamps(path: Path) -> None:
    """Drop what changes on every execution but says nothing about the outputs: papermill's
    and Jupyter's per-cell timings, papermill's run metadata, and the random ids of widget
    models (renumbered in the order the widgets were made)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    text = nbformat.writes(nb)
    for number, model_id in enumerate(widget_ids_in_view_order(nb)):
        text = text.replace(model_id, f"{number + 1:032x}")
    nb = nbformat.reads(text, as_version=4)
    widgets = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if widgets:
        widgets["state"] = dict(sorted(widgets["state"].items()))
    path.write_text(nbformat.writes(nb))


def widget_ids_in_view_order(nb) -> list[str]:
    """Widget model ids in an order fixed by the notebook's content: depth first from each
    displayed widget through the models its state refers to, then any left over."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    order: list[str] = []

    def visit(model_id):
        if model_id in state and model_id not in order:
            order.append(model_id)
            for child in re.findall(r"IPY_MODEL_([0-9a-f]{32})", json.dumps(state[model_id], sort_keys=True)):
                visit(child)

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                visit(view["model_id"])
    rest = sorted((m for m in state if m not in order), key=lambda m: json.dumps(state[m], sort_keys=True))
    return order + rest


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
    if default:   # the book's own build: what its chapters run is kept with the book's records
        os.environ["GCSCOOP_RESULTS"] = str(ROOT / "results")
    times = {}
    total = time.time()
    for notebook in chapters(args.only):
        start = time.time()
        print(f"executing {notebook.name} ...", flush=True)
        papermill.execute_notebook(str(notebook), str(out_dir / notebook.name), parameters={} if default else params,
                                   kernel_name="python3", cwd=str(BOOK), progress_bar=False, config=KERNELS)
        strip_timestamps(out_dir / notebook.name)
        times[notebook.stem] = round(time.time() - start, 1)
        print(f"  {notebook.name}: {times[notebook.stem]} s", flush=True)
    times["total"] = round(time.time() - total, 1)
    record = ROOT / "_build" / ("book_times.json" if default else f"book_times_{args.device.split(':')[0]}.json")
    if not args.only:
        record.parent.mkdir(exist_ok=True)
        record.write_text(json.dumps({"device": args.device, "seconds": times}, indent=2) + "\n")
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
