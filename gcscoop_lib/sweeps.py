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


# A step's cost that does not grow with a population's members, in members' worth. Chosen when
# one run's step took 7.4-7.7 ms and each further member added 1.2-2.4 ms; with the masked text
# encoder they are 3.3-4.1 ms and 0.8-2.2 ms (5 and 10 base classes, results/population_cpu.md),
# one to three members' worth. It also decides when share() halves a population, and regrouped
# runs round differently, so a new value waits for the next regeneration of the records.
STEP_COST_IN_MEMBERS = 4


def steps(config) -> int:
    """How many optimiser steps a run takes: its epochs times its batches (the embedded tasks'
    class counts are known without loading them; another dataset counts as one class)."""
    classes = population.class_count(config) or 1
    return config.epochs * max(1, config.shots * classes // config.batch_size)


def share(runs: list, jobs: int) -> list[list]:
    """The runs split among `jobs` jobs a population at a time, the largest first, each to the
    job with the least work so far (a population's work: its steps times its members plus a
    step's fixed cost; CoCoOp's batches of one image make its runs the longest). While halving
    the largest population lowers the busiest job's work (five populations on two jobs), it is
    halved."""
    def work(group):
        return steps(group[0].config) * (STEP_COST_IN_MEMBERS + len(group))

    def assign(groups):
        chunks, loads = [[] for _ in range(min(jobs, len(groups)))], [0] * min(jobs, len(groups))
        for group in sorted(groups, key=lambda g: -work(g)):
            lightest = loads.index(min(loads))
            chunks[lightest] += group
            loads[lightest] += work(group)
        return chunks, max(loads, default=0)

    groups = population.populations(runs, settings.current().population)
    chunks, busiest = assign(groups)
    while groups:
        largest = max(groups, key=work)
        if len(largest) < 2:
            break
        half = len(largest) // 2
        trial = [g for g in groups if g is not largest] + [largest[:half], largest[half:]]
        trial_chunks, trial_busiest = assign(trial)
        if trial_busiest >= busiest:
            break
        groups, chunks, busiest = trial, trial_chunks, trial_busiest
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
