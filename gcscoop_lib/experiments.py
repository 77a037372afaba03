"""Runs and their records, the recipe and knob selection, the embedded benchmark and sweeps
(06_benchmark). Every table in the book and README is generated from these records."""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from . import __version__, data, evaluation, methods, paper_data, records, reports, settings
from .models import load_clip
from .training import TrainConfig, prepare_task, train


def results_dir(path=None) -> Path:
    return Path(settings.pick(path, "results"))


def versions() -> dict:
    import open_clip

    return {"gcscoop_lib": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


# GCSCoOp's public recipe (ViT-B/16, M = 4 "a photo of a", 16 shots): the recipe of every model but the tiny one.
PAPER_RECIPE = {"lr": 0.002, "epochs": 200, "batch_size": 128}


def profile_settings(profile: str) -> dict:
    """Model of a book profile: 'tiny' (offline default) or 'paper' (ViT-B/16 'openai', or the
    CLIP that GCSCOOP_PAPER_MODEL / GCSCOOP_PAPER_PRETRAINED name)."""
    if profile == "tiny":
        return {"model": "tiny", "pretrained": None}
    if profile == "paper":
        config = settings.current()
        return {"model": config.paper_model, "pretrained": config.paper_pretrained}
    raise ValueError(f"unknown profile {profile!r}: choose one of ['paper', 'tiny']")


def open_profile(profile: str, results="../results", paper_datasets=("oxford_pets",)) -> dict:
    """What a chapter needs for a profile: model settings, datasets, recipe and where records go.

    'tiny': the embedded tasks with the recipe tuned in results/tuning.json.
    'paper': the given papers' datasets with GCSCoOp's recipe and each method's default knob;
    records go to results/paper/.
    """
    model = profile_settings(profile)
    results = Path(results)
    if profile == "tiny":
        return {"settings": model, "datasets": data.dataset_names(), "results": results,
                "tuning": load_tuning(results / "tuning.json")}
    for name in paper_datasets:
        if name not in paper_data.REGISTRY:
            raise ValueError(f"unknown paper dataset {name!r}: choose from {sorted(paper_data.REGISTRY)}")
    return {"settings": model, "datasets": list(paper_datasets), "results": results / "paper",
            "tuning": {"recipe": dict(PAPER_RECIPE), "hparams": {}}}


class Chapter(NamedTuple):
    settings: dict       # model and pretrained tag
    tuning: dict         # recipe and knobs
    datasets: list
    clip: object
    runner: "Runner"


def open_chapter(profile: str, paper_datasets=("oxford_pets",), device="auto", results="../results") -> Chapter:
    """What every chapter starts from (01_zero_shot onwards): its profile's model settings,
    recipe and datasets, the loaded CLIP and a Runner over the profile's records."""
    prof = open_profile(profile, results, paper_datasets)
    clip = load_clip(prof["settings"]["model"], prof["settings"]["pretrained"], device)
    slow = cpu_warning(clip.name, clip.device)
    if slow:
        warnings.warn(slow, stacklevel=2)
    return Chapter(prof["settings"], prof["tuning"], prof["datasets"], clip, Runner(prof["results"], device))


def cpu_warning(model: str, device) -> str | None:
    """A warning for a real-size CLIP on a CPU, where encoding a dataset's images takes hours."""
    if model == "tiny" or torch.device(device).type != "cpu":
        return None
    return (f"{model} on a CPU: encoding the datasets' images (once, then cached) takes hours and every "
            "training step seconds; use a GPU runtime (in Colab: Runtime > Change runtime type > GPU)")


def load_tuning(path) -> dict:
    """The chosen recipe and knobs of the tiny CLIP (results/tuning.json); missing is an error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no tuned recipe at {path}: run `python -m gcscoop_lib tune` (or pass the "
                                "results folder that holds tuning.json)")
    return json.loads(path.read_text())


def tuning_for(model: str, results=None) -> dict:
    """The recipe a model trains with: the tuned one for the tiny CLIP, GCSCoOp's for any other."""
    if model == "tiny":
        return load_tuning(results_dir(results) / "tuning.json")
    return {"recipe": dict(PAPER_RECIPE), "hparams": {}}


def config_for(tuning: dict, method: str, dataset: str, seed: int, **overrides) -> TrainConfig:
    """The benchmark's config of one run: tuned recipe and knob, plus overrides, resolved
    (the method's defaults fill in what tuning did not choose)."""
    fields = {**tuning["recipe"], "hparams": dict(tuning["hparams"].get(method, {})), **overrides}
    return TrainConfig(method=method, dataset=dataset, seed=seed, **fields).resolved()


class Runner:
    """Runs configs once, sharing one loaded CLIP and cached tasks (02_coop onwards).

    A run's record is reused while its stamp (the code and weights that produce it,
    gcscoop_lib.records) is current; otherwise the run is done again. A current record of
    the same config in one of the `borrow_from` files (the tuning runs) is copied over
    instead of being run again.
    """

    def __init__(self, results=None, device="auto", records_file="runs.jsonl", progress=False,
                 borrow_from: tuple[str, ...] = ()):
        self.dir = results_dir(results)
        self.path = self.dir / records_file
        self.device, self.progress = device, progress
        self.stored = {r["key"]: r for r in records.read_records(self.path)}
        self.lendable = {r["key"]: r for name in borrow_from for r in records.read_records(self.dir / name)}
        self._clips, self._tasks = {}, {}

    def clip(self, config: TrainConfig):
        name = (config.model, config.pretrained)
        if name not in self._clips:
            self._clips[name] = load_clip(config.model, config.pretrained, self.device)
        return self._clips[name]

    def task(self, config: TrainConfig):
        key = (config.model, config.pretrained, config.dataset, config.shots, config.seed, config.views)
        if key not in self._tasks:
            self._tasks[key] = prepare_task(self.clip(config), config.dataset, config.shots, config.seed,
                                            config.views, self.dir / "splits")
        return self._tasks[key]

    def stamp(self, config: TrainConfig) -> dict:
        return {"code": records.method_fingerprint(config.method), "weights": self.clip(config).fingerprint}

    def is_current(self, record: dict) -> bool:
        return record.get("stamp") == self.stamp(TrainConfig(**record["config"]))

    def current(self, config: TrainConfig) -> dict | None:
        """The stored record of a resolved config, if the code and weights that made it are current."""
        old = self.stored.get(config.key())
        return old if old is not None and self.is_current(old) else None

    def run(self, config: TrainConfig, force: bool = False) -> dict:
        """Train (or just evaluate, for zero-shot) and record; a current record is loaded unless forced."""
        config = config.resolved()
        old = self.current(config)
        if old is not None and not force:
            return old
        lent = self.lendable.get(config.key())
        if lent is not None and not force and self.is_current(lent):   # the same run, made by `tune`
            records.append_record(self.path, lent)
            self.stored[lent["key"]] = lent
            return lent
        key, stamp = config.key(), self.stamp(config)
        clip, task = self.clip(config), self.task(config)
        start = time.time()
        if config.method == "zeroshot":
            test = evaluation.evaluate_zero_shot(clip, task, split="test")
            val = evaluation.evaluate_zero_shot(clip, task, split="val")
        else:
            result = train(config, clip, task, progress=self.progress)
            test = evaluation.evaluate_prompt(result.model, task, "test")
            val = evaluation.evaluate_prompt(result.model, task, "val")
        record = {"key": key, "stamp": stamp, "method": config.method, "dataset": config.dataset,
                  "seed": config.seed, "shots": config.shots, "config": dataclasses.asdict(config),
                  "base": test["base"], "new": test["new"], "H": test["H"], "per_class": test["per_class"],
                  "val": {k: val[k] for k in ("base", "new", "H")}, "seconds": time.time() - start,
                  "device": str(clip.device), "versions": versions()}
        records.append_record(self.path, record)
        self.stored[key] = record
        return record

    def prune(self) -> int:
        """Drop the records whose stamp is no longer current from the file; returns how many went."""
        kept = [r for r in records.read_records(self.path) if self.is_current(r)]
        dropped = len(records.read_records(self.path)) - len(kept)
        if dropped:
            records.rewrite_records(self.path, kept)
            self.stored = {r["key"]: r for r in kept}
        return dropped


def run_table(runner: Runner, tuning: dict, method_names, datasets, seeds, force: bool = False,
              **overrides) -> tuple[list[dict], dict]:
    """Every method x dataset x seed through the runner (02_coop onwards, and the benchmark);
    returns the records and their summary table."""
    from tqdm.auto import tqdm

    configs = [config_for(tuning, m, d, s, **overrides) for m in method_names for d in datasets for s in seeds]
    done = [runner.run(c, force=force) for c in tqdm(configs, desc="runs", disable=not runner.progress)]
    return done, reports.summarise(done)


# ----------------------------------------------------------------------------- recipe and tuning
RECIPE_GRID = {"lr": [0.002, 0.01, 0.05, 0.2], "epochs": [25, 50, 100], "batch_size": [32]}
TUNING_SEEDS = (1, 2, 3)


def _grid(spec: dict) -> list[dict]:
    combos = [{}]
    for key, values in spec.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    return combos


def validation_scores(runner: Runner, configs: list[TrainConfig]) -> dict:
    """Validation base, new and H averaged over datasets, with H's standard error over seeds."""
    done = [runner.run(c) for c in configs]
    seeds = sorted({r["seed"] for r in done})
    base = sum(r["val"]["base"] for r in done) / len(done)
    new = sum(r["val"]["new"] for r in done) / len(done)
    per_seed = []
    for s in seeds:
        mine = [r for r in done if r["seed"] == s]
        per_seed.append(evaluation.harmonic_mean(sum(r["val"]["base"] for r in mine) / len(mine),
                                                 sum(r["val"]["new"] for r in mine) / len(mine)))
    std = reports.mean_std(per_seed)[1]
    return {"base": base, "new": new, "H": evaluation.harmonic_mean(base, new), "H_se": std / math.sqrt(len(seeds))}


def choose_knob(trials: list[dict], knob: str, default: float) -> float:
    """The knob value to use: among the values whose validation H is within one standard error
    of the best, the one closest (in ratio) to the paper's default. A tie within noise is thus
    settled by a fixed rule, not by float rounding."""
    best = max(trials, key=lambda t: t["H"])
    close = [t for t in trials if t["H"] >= best["H"] - best["H_se"]]
    # Distances are rounded so that two values equally far from the default in ratio (4 and 16
    # around 8) tie on every machine's libm, and the tie goes to the smaller value.
    return min(close, key=lambda t: (round(abs(math.log2(t[knob] / default)), 9), t[knob]))[knob]


MAX_EXTENSIONS = 2


def extend_grid(values: list[float], chosen: float) -> float | None:
    """The next value beyond a grid's edge when the chosen one sits on it, at the edge's own
    ratio (8 after a grid ending 2, 4; 1 before one starting 2, 4), else None."""
    if chosen == values[-1]:
        return round(values[-1] * values[-1] / values[-2], 6)
    if chosen == values[0]:
        return round(values[0] * values[0] / values[1], 6)
    return None


def tune(datasets: list[str], runner: Runner, seeds=TUNING_SEEDS, log=print) -> dict:
    """Choose the shared recipe, then each method's knob, on the validation split only.

    1. The recipe (lr, epochs, batch size) maximises CoOp's base validation accuracy,
       averaged over datasets and seeds; every method then uses it.
    2. Each method's knob is chosen on validation H from its grid (four values)
       (`choose_knob`: the best, or the value nearest the paper's default among those
       within one standard error of the best). A choice on the grid's edge extends the
       grid beyond it, up to MAX_EXTENSIONS values. No test image is used.
    """
    def configs(method, recipe, hp=None):
        return [TrainConfig(method=method, dataset=d, seed=s, hparams=hp or {}, **recipe)
                for d in datasets for s in seeds]

    recipes = []
    for recipe in _grid(RECIPE_GRID):
        score = validation_scores(runner, configs("coop", recipe))
        recipes.append({**recipe, **score})
        log(f"recipe {recipe}: CoOp val base {score['base']:.1f}")
    best = max(recipes, key=lambda r: r["base"])
    recipe = {k: best[k] for k in RECIPE_GRID}
    chosen, trials = {}, {}
    for method in methods.METHODS.values():
        if not method.grid:
            continue
        (knob, values), = method.grid.items()
        values, trials[method.name] = list(values), []
        default = getattr(method.knobs(), knob)
        while True:
            for value in values[len(trials[method.name]):]:
                score = validation_scores(runner, configs(method.name, recipe, {knob: value}))
                trials[method.name].append({knob: value, **score})
                log(f"{method.name} {knob}={value}: val base {score['base']:.1f} new {score['new']:.1f} "
                    f"H {score['H']:.1f} ± {score['H_se']:.1f}")
            value = choose_knob(trials[method.name], knob, default)
            beyond = extend_grid(sorted(values), value)
            if beyond is None:
                break
            if len(values) >= len(method.grid[knob]) + MAX_EXTENSIONS:
                log(f"note: {method.name}'s {knob} = {value} is still on the edge of {sorted(values)}")
                break
            log(f"{method.name}'s {knob} = {value} is on the edge of {sorted(values)}: trying {beyond}")
            values.append(beyond)
        chosen[method.name] = {knob: value}
    return {"recipe": recipe, "hparams": chosen, "recipe_trials": recipes, "hparam_trials": trials,
            "datasets": datasets, "seeds": list(seeds)}


# ----------------------------------------------------------------------------- sweeps
EXECUTORS = ("inline", "local", "slurm")


def run_configs(configs: list[TrainConfig], results, device: str = "auto", records_file: str = "runs.jsonl") -> list[dict]:
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
    results = results_dir(results)
    configs = [c.resolved() for c in configs]
    runner = Runner(results, device, records_file)
    todo = [c for c in configs if runner.current(c) is None]
    for name in sorted({c.dataset for c in todo} & set(paper_data.REGISTRY)):
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
    by_key = {r["key"]: r for r in records.read_records(results / records_file)}
    return [by_key[c.key()] for c in configs]
