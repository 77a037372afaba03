"""Sweeps: many runs at once, skipping the finished ones, in this process or as local or
SLURM jobs through submitit (07_benchmark, 09_appendix_tiny_clip)."""
from __future__ import annotations

from pathlib import Path

from . import paper_data, settings
from .runs import Runner
from .training import TrainConfig, as_run

EXECUTORS = ("inline", "local", "slurm")


def run_configs(configs: list, results, device: str = "auto", records_file: str = "runs.jsonl") -> list[dict]:
    """One job of a sweep: run each config unless its record is current (module-level, so jobs can pickle it)."""
    runner = Runner(results, device, records_file)
    return [runner.run(c) for c in configs]


def sweep(configs: list[TrainConfig], results, executor: str = "inline", jobs: int = 1, device: str = "auto",
          records_file: str = "runs.jsonl", slurm: dict | None = None) -> list[dict]:
    """Run many configs, skipping finished ones; 'local' and 'slurm' go through submitit.

    Each run appends its own record in one write, so an interrupted sweep resumes where it
    stopped: re-running the same sweep only runs what has no current record yet.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {EXECUTORS}")
    results = Path(settings.pick(results, "results"))
    runs = [as_run(c) for c in configs]
    runner = Runner(results, device, records_file)
    todo = [r for r in runs if runner.current(r) is None]
    for name in sorted({r.config.dataset for r in todo} & set(paper_data.REGISTRY)):
        if paper_data.missing(name):   # fail here, in one line, rather than inside a job
            raise FileNotFoundError(f"{name} is not under {paper_data.data_root()}: run `python -m gcscoop_lib "
                                    f"prepare {name}` to see what to fetch (or --download it)")
    if todo and executor == "inline":
        run_configs(todo, results, device, records_file)
    elif todo:
        import submitit

        chunks = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
        ex = submitit.AutoExecutor(folder=results / "submitit", cluster="local" if executor == "local" else "slurm")
        ex.update_parameters(timeout_min=60, **(slurm or {}))
        for job in [ex.submit(run_configs, chunk, results, device, records_file) for chunk in chunks]:
            job.result()  # raises if the job failed
    runner = Runner(results, device, records_file)
    return [runner.current(r)[0] for r in runs]
