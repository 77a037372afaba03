"""Sweeps: many runs at once, skipping the finished ones, in this process or as local or
SLURM jobs through submitit (07_benchmark, 09_appendix_tiny_clip)."""
from __future__ import annotations

from pathlib import Path

from . import paper_data, population, settings
from .runs import Runner
from .training import TrainConfig, as_run

EXECUTORS = ("inline", "local", "slurm")


def run_configs(configs: list, results, device: str = "auto", records_file: str = "runs.jsonl",
                track: bool = False) -> list[dict]:
    """One job of a sweep: run the configs whose records are not current, as populations
    (Runner.run_many; module-level, so jobs can pickle it)."""
    return Runner(results, device, records_file).run_many(configs, track)


def share(runs: list, jobs: int) -> list[list]:
    """The runs split among `jobs` jobs a population at a time, the largest first, each to the
    job with the least work so far (a population's work: its members times its epochs)."""
    groups = sorted(population.populations(runs, settings.current().population),
                    key=lambda g: -len(g) * g[0].config.epochs)
    chunks, work = [[] for _ in range(min(jobs, len(groups)))], [0] * min(jobs, len(groups))
    for group in groups:
        lightest = work.index(min(work))
        chunks[lightest] += group
        work[lightest] += len(group) * group[0].config.epochs
    return chunks


def sweep(configs: list[TrainConfig], results, executor: str = "inline", jobs: int = 1, device: str = "auto",
          records_file: str = "runs.jsonl", slurm: dict | None = None, track: bool = False) -> list[dict]:
    """Run many configs, skipping finished ones; 'local' and 'slurm' go through submitit.

    Runs that can train together do, as populations (gcscoop_lib.population), and a job gets
    whole populations. Each run appends its own record in one write, so an interrupted sweep
    resumes where it stopped: re-running the same sweep only runs what has no current record
    yet (track=True: or no tracked solution).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {EXECUTORS}")
    results = Path(settings.pick(results, "results"))
    runs = [as_run(c) for c in configs]
    runner = Runner(results, device, records_file)
    todo = [r for r in runs if runner.needs(r, track)]
    for name in sorted({r.config.dataset for r in todo} & set(paper_data.REGISTRY)):
        if paper_data.missing(name):   # fail here, in one line, rather than inside a job
            raise FileNotFoundError(f"{name} is not under {paper_data.data_root()}: run `python -m gcscoop_lib "
                                    f"prepare {name}` to see what to fetch (or --download it)")
    if todo and executor == "inline":
        run_configs(todo, results, device, records_file, track)
    elif todo:
        import submitit

        ex = submitit.AutoExecutor(folder=results / "submitit", cluster="local" if executor == "local" else "slurm")
        ex.update_parameters(timeout_min=60, **(slurm or {}))
        for job in [ex.submit(run_configs, chunk, results, device, records_file, track)
                    for chunk in share(todo, jobs)]:
            job.result()  # raises if the job failed
    runner = Runner(results, device, records_file)
    return [runner.current(r)[0] for r in runs]
