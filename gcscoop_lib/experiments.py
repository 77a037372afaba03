"""Runs, their records, recipe and hyper-parameter selection, and the embedded benchmark
(06_benchmark). Every table in the book and README is generated from these records."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from . import __version__, data, evaluation, paper_data
from .models import load_clip
from .prompts import SINGLE_TEMPLATE
from .training import TrainConfig, prepare_task, train


def results_dir(path=None) -> Path:
    return Path(path or os.environ.get("GCSCOOP_RESULTS", "results"))


def versions() -> dict:
    import open_clip

    return {"gcscoop_lib": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


def read_records(path: Path) -> list[dict]:
    """All run records of a JSON-lines file (a missing file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_record(path: Path, record: dict) -> None:
    """Append one record as one line in a single write, so a killed run leaves no half line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


PROFILES = {"tiny": {"model": "tiny", "pretrained": None},
            "paper": {"model": "ViT-B-16", "pretrained": "openai"}}
# GCSCoOp's public recipe (ViT-B/16, M = 4 "a photo of a", 16 shots): the paper profile's default.
PAPER_RECIPE = {"lr": 0.002, "epochs": 200, "batch_size": 128}


def profile_settings(profile: str) -> dict:
    """Model settings of a book profile: 'tiny' (offline default) or 'paper' (ViT-B/16, needs a GPU).

    GCSCOOP_PAPER_MODEL and GCSCOOP_PAPER_PRETRAINED put another CLIP under the paper
    protocol (e.g. ViT-B-32 for a quicker Colab run; 'tiny' for an offline rehearsal).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {sorted(PROFILES)}")
    settings = dict(PROFILES[profile])
    if profile == "paper":
        settings["model"] = os.environ.get("GCSCOOP_PAPER_MODEL", settings["model"])
        settings["pretrained"] = os.environ.get("GCSCOOP_PAPER_PRETRAINED", settings["pretrained"])
    return settings


def open_profile(profile: str, results="../results", paper_datasets=("oxford_pets",)) -> dict:
    """What a chapter needs for a profile: model settings, datasets, recipe and where records go.

    'tiny': the embedded tasks with the recipe tuned in results/tuning.json.
    'paper': ViT-B/16 'openai' on the given papers' datasets (fetched as `prepare` says) with
    GCSCoOp's recipe and each method's default knob; records go to results/paper/.
    """
    settings = profile_settings(profile)
    results = Path(results)
    if profile == "tiny":
        return {"settings": settings, "datasets": data.dataset_names(), "results": results,
                "tuning": load_tuning(results / "tuning.json")}
    for name in paper_datasets:
        if name not in paper_data.REGISTRY:
            raise ValueError(f"unknown paper dataset {name!r}: choose from {sorted(paper_data.REGISTRY)}")
    return {"settings": settings, "datasets": list(paper_datasets), "results": results / "paper",
            "tuning": {"recipe": dict(PAPER_RECIPE), "hparams": {}}}


def load_tuning(path) -> dict:
    """The chosen recipe and hyper-parameters (results/tuning.json), or empty defaults."""
    path = Path(path) if path else None
    if path is None or not path.exists():
        return {"recipe": {}, "hparams": {}}
    return json.loads(path.read_text())


def config_for(tuning: dict, method: str, dataset: str, seed: int, **overrides) -> TrainConfig:
    """The benchmark's config of one run: tuned recipe and hyper-parameters, plus overrides,
    resolved (the method's defaults fill in what tuning did not choose)."""
    fields = {**tuning.get("recipe", {}), "hparams": dict(tuning.get("hparams", {}).get(method, {})), **overrides}
    return TrainConfig(method=method, dataset=dataset, seed=seed, **fields).resolved()


class Runner:
    """Runs configs once, keyed by their hash, sharing one loaded CLIP and cached tasks."""

    def __init__(self, results=None, device="auto", records_file="runs.jsonl", progress=False):
        self.dir = results_dir(results)
        self.path = self.dir / records_file
        self.device, self.progress = device, progress
        self.done = {r["key"]: r for r in read_records(self.path)}
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

    def run(self, config: TrainConfig, force: bool = False) -> dict:
        """Train (or just evaluate, for zero-shot) and record; a finished run is loaded unless forced."""
        config = config.resolved()
        key = config.key()
        if key in self.done and not force:
            return self.done[key]
        clip, task = self.clip(config), self.task(config)
        start = time.time()
        if config.method == "zeroshot":
            test = evaluation.evaluate_zero_shot(clip, task, SINGLE_TEMPLATE, "test")
            val = evaluation.evaluate_zero_shot(clip, task, SINGLE_TEMPLATE, "val")
        else:
            result = train(config, clip, task, progress=self.progress)
            test = evaluation.evaluate_prompt(result.model, task, "test")
            val = evaluation.evaluate_prompt(result.model, task, "val")
        record = {"key": key, "method": config.method, "dataset": config.dataset, "seed": config.seed,
                  "shots": config.shots, "config": dataclasses.asdict(config),
                  "base": test["base"], "new": test["new"], "H": test["H"], "per_class": test["per_class"],
                  "val": {k: val[k] for k in ("base", "new", "H")}, "seconds": time.time() - start,
                  "device": str(clip.device), "versions": versions()}
        append_record(self.path, record)
        self.done[key] = record
        return record


# ----------------------------------------------------------------------------- recipe and tuning
RECIPE_GRID = {"lr": [0.002, 0.01, 0.05, 0.2], "epochs": [25, 50, 100], "batch_size": [32]}
HPARAM_GRIDS = {  # the same budget, four values, for every method that has a knob
    "prograd": {"lam": [0.25, 0.5, 0.75, 1.0]},
    "kgcoop": {"lam": [1.0, 2.0, 4.0, 8.0]},
    "sam": {"rho": [0.05, 0.1, 0.2, 0.5]},
    "gcscoop": {"rho": [0.05, 0.1, 0.2, 0.5]},
}
TUNING_SEEDS = (1, 2, 3)


def _grid(spec: dict) -> list[dict]:
    combos = [{}]
    for key, values in spec.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    return combos


def _val_average(runner: Runner, configs: list[TrainConfig]) -> dict:
    records = [runner.run(c) for c in configs]
    base = sum(r["val"]["base"] for r in records) / len(records)
    new = sum(r["val"]["new"] for r in records) / len(records)
    return {"base": base, "new": new, "H": evaluation.harmonic_mean(base, new)}


def tune(datasets: list[str], runner: Runner, seeds=TUNING_SEEDS, log=print) -> dict:
    """Choose the shared recipe, then each method's knob, on the validation split only.

    1. The recipe (lr, epochs, batch size) maximises CoOp's base validation accuracy,
       averaged over datasets and seeds; every method then uses it.
    2. Each method's hyper-parameter takes the value of its grid (four values each) with
       the best validation H (validation images of base and new classes; no test image).
    """
    def configs(method, recipe, hp=None):
        return [TrainConfig(method=method, dataset=d, seed=s, hparams=hp or {}, **recipe)
                for d in datasets for s in seeds]

    recipes = []
    for recipe in _grid(RECIPE_GRID):
        score = _val_average(runner, configs("coop", recipe))
        recipes.append({**recipe, **score})
        log(f"recipe {recipe}: CoOp val base {score['base']:.1f}")
    best = max(recipes, key=lambda r: r["base"])
    recipe = {k: best[k] for k in RECIPE_GRID}
    chosen, trials = {}, {}
    for method, grid in HPARAM_GRIDS.items():
        trials[method] = []
        for hp in _grid(grid):
            score = _val_average(runner, configs(method, recipe, hp))
            trials[method].append({**hp, **score})
            log(f"{method} {hp}: val base {score['base']:.1f} new {score['new']:.1f} H {score['H']:.1f}")
        top = max(trials[method], key=lambda r: r["H"])
        chosen[method] = {k: top[k] for k in grid}
    return {"recipe": recipe, "hparams": chosen, "recipe_trials": recipes, "hparam_trials": trials,
            "datasets": datasets, "seeds": list(seeds)}


BENCHMARK_METHODS = ["zeroshot", "coop", "prograd", "kgcoop", "sam", "gcscoop"]


def benchmark(datasets: list[str], runner: Runner, tuning: dict, seeds=(1, 2, 3),
              method_names=BENCHMARK_METHODS, force: bool = False) -> dict:
    """Every dataset x method x seed with the tuned recipe; returns the summary table."""
    from tqdm.auto import tqdm

    configs = [config_for(tuning, m, d, s) for m in method_names for d in datasets for s in seeds]
    records = [runner.run(c, force=force) for c in tqdm(configs, desc="benchmark runs", disable=not runner.progress)]
    return evaluation.summarise(records)


# ----------------------------------------------------------------------------- sweeps
EXECUTORS = ("inline", "local", "slurm")


def run_configs(configs: list[TrainConfig], results, device: str = "auto", records_file: str = "runs.jsonl") -> list[dict]:
    """One job of a sweep: run each config unless its record exists (module-level, so jobs can pickle it)."""
    runner = Runner(results, device, records_file)
    return [runner.run(c) for c in configs]


def sweep(configs: list[TrainConfig], results, executor: str = "inline", jobs: int = 1, device: str = "auto",
          records_file: str = "runs.jsonl", slurm: dict | None = None) -> list[dict]:
    """Run many configs, skipping finished ones; 'local' and 'slurm' go through submitit.

    Each run appends its own record in one write, so an interrupted sweep resumes where it
    stopped: re-running the same sweep only runs what has no record yet.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: choose one of {EXECUTORS}")
    results = results_dir(results)
    done = {r["key"] for r in read_records(results / records_file)}
    todo = [c for c in configs if c.key() not in done]
    if todo and executor == "inline":
        run_configs(todo, results, device, records_file)
    elif todo:
        import submitit

        chunks = [todo[i::jobs] for i in range(min(jobs, len(todo)))]
        ex = submitit.AutoExecutor(folder=results / "submitit", cluster="local" if executor == "local" else "slurm")
        ex.update_parameters(timeout_min=60, **(slurm or {}))
        for job in [ex.submit(run_configs, chunk, results, device, records_file) for chunk in chunks]:
            job.result()  # raises if the job failed
    by_key = {r["key"]: r for r in read_records(results / records_file)}
    return [by_key[c.key()] for c in configs]


def csv_table(table: dict, order: list[str], datasets: list[str]) -> str:
    """The summary table as CSV: one row per method and dataset (and the average)."""
    lines = ["method,dataset,base,base_std,new,new_std,H,H_std,seeds"]
    for method in order:
        for dataset in datasets + ["average"]:
            row = table.get(method, {}).get(dataset)
            if row:
                values = [f"{row[k][i]:.2f}" for k in ("base", "new", "H") for i in (0, 1)]
                lines.append(",".join([method, dataset, *values, str(row["seeds"])]))
    return "\n".join(lines) + "\n"
