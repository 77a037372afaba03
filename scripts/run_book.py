"""Execute every chapter with papermill, writing outputs into the notebooks.

    python scripts/run_book.py                     # embedded default on CPU, in place
    python scripts/run_book.py --jobs 2            # two chapters at a time (make book)
    python scripts/run_book.py --device cuda --out book/_gpu -p profile tiny
    python scripts/run_book.py --only 02_coop      # one chapter

In-place runs keep outputs and execution counts: they are what the rendered book shows
and what nbval checks, and the runs they make are stored with the book's records
(results/); other runs store theirs where GCSCOOP_RESULTS says (default ~/gcscoop_runs).
The run's timestamps and the live widgets' state are stripped from the notebooks, so
re-executing an unchanged book changes no file; times go to _build/book_times.json. The
numbers the prose shows are then written into the chapter's Markdown (scripts/fill_prose.py). A
chapter that had to train runs it shows is executed a second time, loading them, so its
committed outputs are those every later execution reproduces. Runs with another device or
profile must name --out, so they never overwrite the committed CPU outputs.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import papermill
from traitlets.config import Config

import fill_prose

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
# The kernels' sockets CurveZMQ-encrypted, with keys from jupyter_client's kernel manager wherever the
# kernelspec declares support (ipykernel 7 does): otherwise each kernel logs "Kernel is running over TCP
# without encryption", once a chapter.
# A chapter's slowest cell trains for minutes when its records are missing; a cell that runs far
# longer has a kernel that stopped answering (seen, rarely, on chapter 1's widget cell).
CELL_TIMEOUT = 900
KERNELS = Config({"KernelManager": {"transport_encryption": "auto"}})


def patient_replies() -> None:
    """Wait for a kernel's reply in slices of at most a second. nbclient's async channel can
    miss the wake-up of a reply the kernel has already sent (jupyter/nbclient#311, #312): a
    widget cell then sat idle until CELL_TIMEOUT, in about one execution in ten; polled in
    slices, the reply is found at the next one."""
    from queue import Empty

    from jupyter_client.channels import AsyncZMQSocketChannel

    whole = AsyncZMQSocketChannel.get_msg
    if getattr(whole, "patient", False):   # once a process: a chapter after another, the tests
        return

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await whole(self, 1.0 if left is None else min(1.0, left))
            except Empty:
                if left is not None and left <= 1.0:
                    raise

    get_msg.patient = True
    AsyncZMQSocketChannel.get_msg = get_msg


def trained_now(path: Path) -> bool:
    """Whether an executed chapter trained runs it shows: its last words (Chapter.provenance)
    say so. Read from the chapter itself, not from the records files, which a chapter executed
    beside it may be writing to."""
    import nbformat

    cells = nbformat.read(str(path), as_version=4).cells
    return any("trained now" in output.get("text", "") for cell in cells if cell.cell_type == "code"
               for output in cell.outputs)


def chapters(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in BOOK.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) for o in only)]
    return found


def strip_timestamps(path: Path) -> None:
    """Drop what changes on every execution but says nothing about the outputs (papermill's
    and Jupyter's per-cell timings, papermill's run metadata, where the prints were cut into
    messages), and the live widgets' saved state and views: the page shows a drawn setting
    instead, a reader's Jupyter makes the widget anew, and a notebook that carries both its
    widget state and the widget's view made papermill's next execution of it stop answering
    at that cell."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            cell.outputs = merged_streams([o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})])
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    path.write_text(nbformat.writes(nb) + "\n")


def merged_streams(outputs: list) -> list:
    """Consecutive prints to one stream as one output: where the kernel cut them into messages
    depends on how busy the machine was, and would change the file from one execution to the next."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None and previous.output_type == "stream"
                and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def write_prose(path: Path) -> None:
    """Write the executed chapter's glued numbers and figure numbers into its Markdown."""
    filled, problems = fill_prose.fill(path, fill_prose.figure_numbers(fill_prose.chapters()))
    if problems:
        raise SystemExit("\n".join(problems))
    path.write_text(filled)


def execute(notebook: Path, out: Path, parameters: dict) -> float:
    """Execute one chapter (twice if it trained what it shows) and strip it; its seconds."""
    patient_replies()
    start = time.time()
    strip_timestamps(notebook)
    for attempt in range(3):   # a chapter that trained what it shows runs again, now loading it
        try:
            papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                                       cwd=str(BOOK), progress_bar=False, config=KERNELS,
                                       execution_timeout=CELL_TIMEOUT)
        except Exception as error:   # nbclient's CellTimeoutError: a kernel that stopped answering
            if "Timeout" not in type(error).__name__ or attempt == 2:
                raise
            print(f"  {notebook.name}: a cell did not finish in {CELL_TIMEOUT} s; executing it again", flush=True)
            continue
        if not trained_now(out):
            break
        print(f"  {notebook.name} trained runs it had no record of; executing it again", flush=True)
    strip_timestamps(out)
    seconds = round(time.time() - start, 1)
    print(f"  {notebook.name}: {seconds} s", flush=True)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="chapter name prefixes, e.g. 02_coop")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="folder for executed copies (required off the CPU default)")
    parser.add_argument("--jobs", type=int, default=1, help="chapters executed side by side (one kernel each)")
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
    record = ROOT / "_build" / ("book_times.json" if default else f"book_times_{args.device.split(':')[0]}.json")
    before = json.loads(record.read_text())["seconds"] if record.exists() else {}
    # the slowest first (as last timed), so that side by side the jobs end together
    notebooks = sorted(chapters(args.only), key=lambda p: -before.get(p.stem, 0))
    total = time.time()
    print(f"executing {', '.join(p.name for p in notebooks)} ({args.jobs} at a time) ...", flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {p.stem: pool.submit(execute, p, out_dir / p.name, {} if default else params) for p in notebooks}
        times = {stem: future.result() for stem, future in futures.items()}
    for notebook in notebooks:   # once every chapter is written: the figure numbers read them all
        write_prose(out_dir / notebook.name)
    times = {p.stem: times[p.stem] for p in chapters(args.only)}
    times["total"] = round(time.time() - total, 1)
    if not args.only:
        record.parent.mkdir(exist_ok=True)
        record.write_text(json.dumps({"device": args.device, "jobs": args.jobs, "seconds": times}, indent=2) + "\n")
    print(json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
