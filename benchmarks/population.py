"""What a population's step costs as it grows (book/10_about.md, results/population_cpu.md).

    python benchmarks/population.py

CoOp with the book's recipe, one thread, image features cached: the time of one training step
with M members (M = 1, 2, 5, 10, 20) on a task with 5 base classes (shapes) and one with 10
(coloured_shapes), in one run, and at M = 10 the share of the step spent in matrix products
(torch's profiler). A population saves the part of a step that does not grow with M; the part
that does is its matrix products, so the saving has a ceiling: a run alone costs a + b, M runs
together a + M b, and M runs alone cost M (a + b).

Writes results/population_cpu.json and results/population_cpu.md.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from pipeline import processor  # noqa: E402

TASKS = ("shapes", "coloured_shapes")
MEMBERS = (1, 2, 5, 10, 20)
EPOCHS = 10          # timed epochs per cell, after one untimed population of the same size
MATMULS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::linear", "aten::matmul")


def cell(runner, dataset: str, members: int, profile: bool = False) -> dict:
    from gcscoop_lib.training import TrainConfig, train_population

    tuned = json.loads((ROOT / "results" / "tuning.json").read_text())["recipe"]
    runs = [TrainConfig(method="coop", dataset=dataset, seed=seed, **dict(tuned, epochs=EPOCHS)).resolve()
            for seed in range(1, members + 1)]
    clip, tasks = runner.clip(runs[0].config), [runner.task(run.config) for run in runs]
    train_population(runs, clip, tasks)   # warm: allocations and lazy initialisation
    start = time.perf_counter()
    steps = len(train_population(runs, clip, tasks)[0].steps)
    out = {"ms_per_step": round(1000 * (time.perf_counter() - start) / steps, 2),
           "classes": len(tasks[0].base_names)}
    if profile:
        from torch.profiler import ProfilerActivity, profile as profiler

        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            train_population(runs, clip, tasks)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        out["matmul_share"] = round(100 * sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / total, 1)
    return out


def main() -> int:
    torch.set_num_threads(1)
    from gcscoop_lib.runs import Runner

    with tempfile.TemporaryDirectory() as folder:
        runner = Runner(folder, device="cpu")
        table = {d: {m: cell(runner, d, m, profile=m == 10) for m in MEMBERS} for d in TASKS}
    out = {"tasks": {}, "threads": 1, **processor(), "torch": torch.__version__}
    for dataset, cells in table.items():
        alone, ten, twenty = (cells[m]["ms_per_step"] for m in (1, 10, 20))
        per_member = (twenty - ten) / 10
        out["tasks"][dataset] = {
            "classes": cells[1]["classes"], "ms_per_step": {str(m): c["ms_per_step"] for m, c in cells.items()},
            "ms_per_further_member": round(per_member, 2), "matmul_share_at_10": cells[10]["matmul_share"],
            "speedup_at_10": round(10 * alone / ten, 2), "ceiling": round(alone / per_member, 2)}
    (ROOT / "results" / "population_cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    (ROOT / "results" / "population_cpu.md").write_text(report(out))
    print(report(out))
    return 0


SHOWN = (1, 10, 20)   # the report's columns (the JSON keeps every M)


def report(out: dict) -> str:
    rows = "\n".join(
        f"| {d} ({t['classes']}) | " + " | ".join(f"{t['ms_per_step'][str(m)]:.1f}" for m in SHOWN)
        + f" | {t['ms_per_further_member']:.1f} | {t['matmul_share_at_10']:.0f} % | {t['speedup_at_10']:.1f}x | "
        f"{t['ceiling']:.1f}x |" for d, t in out["tasks"].items())
    return (f"# A population's step as it grows ({out['processor']}, {out['vector']}, torch {out['torch']}, "
            f"1 thread)\n\nCoOp, the book's recipe, image features cached: milliseconds per training step of "
            f"one run and of populations of 10 and 20 members (results/population_cpu.json has 2 and 5 too); "
            f"what each further member adds (between 10 and 20 members); the share of the step in matrix "
            f"products at 10 members; ten runs together against ten alone; and the ceiling, one run's step "
            f"over a further member's cost.\n\n| task (base classes) | 1 run | 10 | 20 | +1 member | matrix "
            f"products | 10 together | ceiling |\n|---|---|---|---|---|---|---|---|\n{rows}\n")


if __name__ == "__main__":
    sys.exit(main())
