"""Runs, done once: a Runner trains (or evaluates) a config unless a current record of it is
stored, keeps the record and the trained solution beside it, and hands either back
(02_coop onwards).

Records are read from two folders: the reader's own (`GCSCOOP_RESULTS`, where every new run
is written) and the book's (`GCSCOOP_BOOK_RESULTS`, read only, unless it is the folder being
written, as when the book itself is built).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from . import evaluation, population, records, settings, splits, stamps
from .models import load_clip
from .records import StoredSolution
from .tasks import Task, prepare_task
from .training import Run, TrainConfig, as_run, build_model, train, train_population


@dataclass
class Solution:
    """A trained run: its record, its model with the learned parameters in place, its per-epoch
    history, its per-step log (for tracked runs), and whether it was trained now or loaded."""

    run: Run
    record: dict
    model: object
    steps: list[dict]
    history: list[dict]
    trained_now: bool
    folder: Path            # where its record and solution are stored


class Runner:
    """Runs configs once, sharing one loaded CLIP and cached tasks.

    A record is reused while its stamp (the code and weights that produce it,
    gcscoop_lib.records) is current; otherwise the run is done again. A current record of the
    same config in one of the `borrow_from` files (the tuning runs) is copied over instead of
    being run again.
    """

    def __init__(self, results=None, device="auto", records_file="runs.jsonl", progress=False,
                 borrow_from: tuple[str, ...] = ()):
        self.dir = Path(settings.pick(results, "results"))
        self.book = settings.current().book_results
        self.path = self.dir / records_file
        self.device, self.progress = device, progress
        self.stored = {r["key"]: r for r in records.read_records(self.path)}
        own = self.dir.resolve() == self.book.resolve()
        self.book_records = {} if own else {r["key"]: r for r in records.read_records(self.book / records_file)}
        self.lendable = {r["key"]: r for name in borrow_from for r in records.read_records(self.dir / name)}
        self.trained: list[str] = []      # keys of the runs done by this runner
        self._clips, self._tasks, self._stamps = {}, {}, {}

    def refresh(self) -> None:
        """Read the records file again (other processes, a sweep's jobs, have written to it)."""
        self.stored = {r["key"]: r for r in records.read_records(self.path)}

    def clip(self, config: TrainConfig):
        name = (config.model, config.pretrained)
        if name not in self._clips:
            self._clips[name] = load_clip(config.model, config.pretrained, self.device)
        return self._clips[name]

    def task(self, config: TrainConfig) -> Task:
        key = (config.model, config.pretrained, config.dataset, config.shots, config.seed, config.views,
               config.crop, config.partition)
        if key not in self._tasks:
            book = splits.split_path(self.book / "splits", config.dataset, config.shots, config.seed,
                                     config.partition)
            folder = book.parent if book.exists() else self.dir / "splits"   # the book's draw, else one's own
            self._tasks[key] = prepare_task(self.clip(config), config.dataset, config.shots, config.seed,
                                            config.views, folder, config.partition, config.crop)
        return self._tasks[key]

    def stamp(self, config: TrainConfig) -> dict:
        name = (config.method, config.model, config.pretrained)
        if name not in self._stamps:
            self._stamps[name] = stamps.run_stamp(config)
        return self._stamps[name]

    def is_current(self, record: dict) -> bool:
        return record.get("stamp") == self.stamp(TrainConfig(**record["config"]))

    def current(self, run: Run) -> tuple[dict, Path] | None:
        """The stored record of a run and the folder that holds it, if the code and weights
        that made it are current (the reader's folder first, then the book's)."""
        for stored, folder in ((self.stored, self.dir), (self.book_records, self.book)):
            old = stored.get(run.key)
            if old is not None and old.get("stamp") == self.stamp(run.config):
                return old, folder
        return None

    def run(self, config: "TrainConfig | Run", force: bool = False) -> dict:
        """Train (or just evaluate, for zero-shot) and record; a current record is loaded unless forced."""
        run = as_run(config)
        found = None if force else self.current(run)
        if found is not None:
            return found[0]
        lent = None if force else self.lendable.get(run.key)
        if lent is not None and self.is_current(lent):   # the same run, made by `tune`
            self._keep(lent)
            return lent
        return self._execute(run, track=False)[0]

    def solution(self, config: "TrainConfig | Run", track: bool = False, force: bool = False) -> Solution:
        """A trained run's solution: loaded when its record and solution are stored and current
        (and tracked, if track=True asks for per-epoch accuracies and drift), trained otherwise."""
        run = as_run(config)
        if not run.method.trains:
            raise ValueError(f"{run.method.label} is not trained and has no solution: use run() for its record")
        found = None if force else self.current(run)
        stored = None if found is None else self._stored_solution(run, found, track)
        if stored is not None:
            solution, where = stored
            task = self.task(run.config)
            model = build_model(self.clip(run.config), run, task.base_names, task.template)
            return Solution(run, found[0], model.load_learned(solution.learned), solution.steps, solution.history,
                            False, where)
        record, result = self._execute(run, track, keep_record=found is None)
        return Solution(run, record, result.model, result.steps if track else [], result.history, True, self.dir)

    def _stored_solution(self, run: Run, found: tuple[dict, Path], track: bool):
        """A current record's stored solution and its folder (a tracked one if track asks), or None."""
        record, folder = found
        for where in dict.fromkeys((folder, self.dir)):   # a book's run trained here keeps its solution here
            stored = records.load_solution(where, run.key, record["stamp"])
            if stored is not None and (stored.tracked == stamps.tracking_version() or not track):
                return stored, where
        return None

    def run_many(self, configs: list, track: bool = False) -> list[dict]:
        """Every config's record (07_benchmark): current ones loaded, the trained runs missing
        trained together as populations of at most `settings.population` members
        (gcscoop_lib.population), each member's record and solution stored as its run's alone
        would be. track=True also asks for tracked solutions (the stopping rules' curves)."""
        runs = list({r.key: r for r in map(as_run, configs)}.values())
        missing = [run for run in runs if run.method.trains and self.needs(run, track)]
        for group in population.populations(missing, settings.current().population):
            self._execute_population(group, track)
        return [self.run(config) for config in configs]

    def needs(self, run: Run, track: bool = False) -> bool:
        """Whether a run must be done: no current record (none to borrow either), or no tracked
        solution where track asks for one."""
        found = self.current(run)
        lent = self.lendable.get(run.key)
        if found is None and lent is not None and self.is_current(lent):   # the same run, made by `tune`
            self._keep(lent)
            found = (lent, self.dir)
        if found is None:
            return True
        return track and run.method.trains and self._stored_solution(run, found, track) is None

    def _execute_population(self, runs: list[Run], track: bool) -> None:
        clip = self.clip(runs[0].config)
        tasks = [self.task(run.config) for run in runs]
        for run, task, result in zip(runs, tasks, train_population(runs, clip, tasks, track, self.progress)):
            self._store(run, task, result, track, result.seconds, len(runs))

    def _execute(self, run: Run, track: bool, keep_record: bool = True):
        config = run.config
        clip, task = self.clip(config), self.task(config)
        if not run.method.trains:
            start = time.time()
            test = evaluation.evaluate_zero_shot(clip, task, split="test")
            val = evaluation.evaluate_zero_shot(clip, task, split="val")
            record = records.make_record(run, test, val, time.time() - start, clip.device)
            self._keep(record)
            self.trained.append(run.key)
            return record, None
        result = train(run, clip, task, track=track, progress=self.progress)
        return self._store(run, task, result, track, result.seconds, 1, keep_record), result

    def _store(self, run: Run, task, result, track: bool, seconds: float, members: int,
               keep_record: bool | None = None) -> dict:
        """Evaluate a trained run, store its solution and (unless a current one is kept) its record."""
        start = time.time()
        test = evaluation.evaluate_prompt(result.model, task, "test")
        val = evaluation.evaluate_prompt(result.model, task, "val")
        record = records.make_record(run, test, val, seconds + time.time() - start, result.model.clip.device,
                                     population=members)
        steps = result.steps if track else []   # the per-step log is kept for tracked runs
        kept = records.load_solution(self.dir, run.key, record["stamp"])
        if track or kept is None or kept.tracked != stamps.tracking_version():   # never lose a tracked one
            records.save_solution(self.dir, run.key, record["stamp"],
                                  StoredSolution(result.model.learned(), steps, result.history,
                                                 stamps.tracking_version() if track else None))
        if keep_record is None:
            keep_record = self.current(run) is None
        if keep_record:
            self._keep(record)
        else:
            record = self.current(run)[0]
        self.trained.append(run.key)
        return record

    def _keep(self, record: dict) -> None:
        records.append_record(self.path, record)
        self.stored[record["key"]] = record

    def prune(self) -> int:
        """Drop the records whose stamp is no longer current from the file; returns how many went."""
        kept = [r for r in records.read_records(self.path) if self.is_current(r)]
        dropped = len(records.read_records(self.path)) - len(kept)
        if dropped:
            records.rewrite_records(self.path, kept)
            self.stored = {r["key"]: r for r in kept}
        return dropped


def stale_solutions(folder) -> list[Path]:
    """The stored solutions in a results folder that no current record names (its own, or the
    book's), or whose stamp is not their record's."""
    folder = Path(folder)
    current = {}
    for path in folder.glob("*.jsonl"):
        runner = Runner(folder, records_file=path.name)
        mine = {**runner.book_records, **runner.stored}   # a book run's solution kept in one's own folder counts
        current.update({key: r["stamp"] for key, r in mine.items() if runner.is_current(r)})
    return [path for path in sorted((folder / "solutions").glob("*.safetensors"))
            if path.stem not in current or records.load_solution(folder, path.stem, current[path.stem]) is None]


def prune_solutions(folder) -> int:
    """Delete the stale solutions of a results folder; returns how many went."""
    stale = stale_solutions(folder)
    for path in stale:
        path.unlink()
    return len(stale)
