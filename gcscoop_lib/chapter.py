"""What a chapter opens (01_zero_shot onwards): one object with its profile's recipe and
knobs, its datasets, the loaded CLIP, and the runs, solutions and tables it asks for.

Two profiles: 'tiny' (the embedded CLIP and tasks, offline, with the recipe and knobs tuned
for them in the book's tuning.json) and 'paper' (ViT-B/16 'openai', or the CLIP that
GCSCOOP_PAPER_MODEL / GCSCOOP_PAPER_PRETRAINED name, on the papers' datasets with GCSCoOp's
recipe and each method's default knobs).
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import datasets, methods, paper_data, protocol, protocols, reports, settings, stamps
from .models import weights_fingerprint
from .runs import Runner, Solution
from .tasks import Task
from .training import Run, TrainConfig, build_model
from .tuning import load_tuning

PROFILES = ("tiny", "paper")
COMPUTED = "computed.json"   # what chapters compute from solutions, stored (Chapter.computed)


@dataclass
class Table:
    """Runs of methods x datasets x seeds: their records, and their summary by method and
    dataset (or 'average'), each metric a Stat(mean, std) over seeds."""

    records: list[dict]
    rows: dict

    def __getitem__(self, method: str) -> dict:
        return self.rows[method]


class Chapter:
    """A profile opened: its recipe, knobs, datasets and CLIP, and a Runner over the records."""

    def __init__(self, profile: str = "tiny", paper_datasets=("oxford_pets",), device="auto",
                 recipe: dict | None = None, knobs: dict | None = None, progress: bool = False):
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}: choose one of {list(PROFILES)}")
        config = settings.current()
        self.profile = profile
        if profile == "tiny":
            self.model, self.pretrained = "tiny", None
            self.tuning = load_tuning(config.book_results / "tuning.json")
            self.recipe, self.knobs, self.tuned = dict(self.tuning["recipe"]), dict(self.tuning["knobs"]), True
            self.datasets = datasets.dataset_names()
            results = config.results
        else:
            self.model, self.pretrained = config.paper_model, config.paper_pretrained
            self.tuning = {}
            self.recipe, self.knobs, self.tuned = dict(protocol.PAPER_RECIPE), {}, False
            unknown = [d for d in paper_datasets if d not in paper_data.REGISTRY]
            if unknown:
                raise ValueError(f"unknown paper dataset {unknown[0]!r}: choose from {sorted(paper_data.REGISTRY)}")
            self.datasets = list(paper_datasets)
            results = config.results / "paper"
        self.changed: set = set()          # ("recipe", name) and (method, knob) the reader set
        self._override(recipe or {}, knobs or {})
        # a reader's own setting, or the paper profile, trains what no record holds: show it going
        self.runner = Runner(results, device, progress=progress or bool(self.changed) or profile != "tiny")
        self._runners = {self.runner.path.name: self.runner}
        self.clip = self.runner.clip(self.config("zeroshot", self.datasets[0]).config)
        slow = cpu_warning(self.model, self.clip.device)
        if slow:
            warnings.warn(slow, stacklevel=3)

    def _override(self, recipe: dict, knobs: dict) -> None:
        """A reader's changes to the recipe and knobs (None: keep the book's)."""
        for name, value in recipe.items():
            if name not in protocol.PAPER_RECIPE:
                raise ValueError(f"the recipe has no {name!r}: it sets {', '.join(protocol.PAPER_RECIPE)}")
            if value is not None:
                self.recipe[name] = value
                self.changed.add(("recipe", name))
        for method, values in knobs.items():
            chosen = {k: v for k, v in values.items() if v is not None}
            methods.get(method).knobs(chosen)      # unknown names and bad values fail here, in one line
            if chosen:
                self.knobs[method] = {**self.knobs.get(method, {}), **chosen}
                self.changed |= {(method, k) for k in chosen}

    @property
    def as_told(self) -> bool:
        """Whether the chapter shows the book's own runs (the tiny profile, its tuned recipe and
        knobs unchanged): only then do the prose's claims about them hold, and get checked."""
        return self.tuned and not self.changed

    def focus(self, dataset: str) -> str:
        """The task a chapter follows closely: `dataset` under the tiny profile, the first of the
        paper datasets under the paper profile."""
        return dataset if self.profile == "tiny" else self.datasets[0]

    def settings_table(self, method_names=()) -> str:
        """The recipe and the knobs of `method_names` as a Markdown table, each with where it
        comes from (chosen on validation, the paper's default, or set in this notebook)."""
        def source(group: str, name: str, tuned: bool) -> str:
            if (group, name) in self.changed:
                return "set in this notebook"
            return "chosen on validation" if tuned and self.tuned else "GCSCoOp's recipe" \
                if group == "recipe" else "the paper's default"

        lr, epochs, batch = (self.recipe[k] for k in ("lr", "epochs", "batch_size"))
        where = {source("recipe", k, True) for k in protocol.PAPER_RECIPE}
        rows = [["shared recipe", f"lr {lr:g}, {epochs} epochs, batch {batch}", " / ".join(sorted(where))]]
        for name in method_names:
            method = methods.get(name)
            chosen = self.knobs.get(name, {})
            for field, value in dataclasses.asdict(method.knobs(chosen)).items():
                rows.append([method.label, f"{field} = {value:g}" if isinstance(value, float) else
                             f"{field} = {value}", source(name, field, field in chosen)])
        return reports.markdown(["", "setting", "where it comes from"], rows)

    def config(self, method: str, dataset: str, seed: int = 1, recipe: dict | None = None, partition: str = "coop",
               **knobs) -> Run:
        """The run of a method on a dataset and seed with the chapter's recipe and knobs
        (`recipe` and keyword arguments change them for this run only; `partition` picks
        which classes are base, gcscoop_lib.splits)."""
        knobs = {**self.knobs.get(method, {}), **knobs}
        return TrainConfig(method=method, dataset=dataset, seed=seed, model=self.model, pretrained=self.pretrained,
                           partition=partition, knobs=knobs, **{**self.recipe, **(recipe or {})}).resolve()

    def record(self, method: str, dataset: str, seed: int = 1, recipe: dict | None = None, **knobs) -> dict:
        """A run's record: stored, or run now."""
        return self.runner.run(self.config(method, dataset, seed, recipe, **knobs))

    def solution(self, method: str, dataset: str, seed: int = 1, track: bool = False, recipe: dict | None = None,
                 **knobs) -> Solution:
        """A trained run's solution (its model, logs and record): stored, or trained now."""
        return self.runner.solution(self.config(method, dataset, seed, recipe, **knobs), track=track)

    def initial_model(self, method: str, dataset: str, seed: int = 1, **knobs):
        """A method's model before training: the prompt training starts from."""
        run, task = self.config(method, dataset, seed, **knobs), self.task(dataset, seed)
        return build_model(self.clip, run, task.base_names, task.template)

    def task(self, dataset: str, seed: int = 1) -> Task:
        """A dataset's base/new task with its features encoded (once)."""
        return self.runner.task(self.config("zeroshot", dataset, seed).config)

    def table(self, method_names, seeds=protocol.SEEDS, datasets=None, records: str = "runs.jsonl",
              recipe: dict | None = None, partition: str = "coop", **knobs) -> Table:
        """Every method x dataset x seed (stored or run now) and its summary; `records` names the
        records file they are kept in (the benchmark's by default), `recipe` changes the recipe
        for these runs and `partition` their base classes."""
        return self.tables(method_names, [knobs], seeds, datasets, records, recipe, partition)[0]

    def tables(self, method_names, grid: list[dict], seeds=protocol.SEEDS, datasets=None,
               records: str = "runs.jsonl", recipe: dict | None = None, partition: str = "coop") -> list[Table]:
        """One table per knob setting of a grid (05_gcscoop), their runs trained together: a
        grid of the knobs a method lets differ inside a population (Method.per_member) trains
        as one population per task."""
        if records not in self._runners:   # the benchmark's runs are lent, never trained again
            self._runners[records] = Runner(self.runner.dir, self.runner.device, records,
                                            borrow_from=(self.runner.path.name,))
        configs = [self.config(m, d, s, recipe, partition, **knobs) for knobs in grid for m in method_names
                   for d in datasets or self.datasets for s in seeds]
        done = self._runners[records].run_many(configs)
        size = len(done) // len(grid)
        return [Table(done[i:i + size], reports.summarise(done[i:i + size])) for i in range(0, len(done), size)]

    def world(self) -> tuple[Runner, dict]:
        """The runner and tuned recipe of the embedded world (06_protocols): this chapter's under
        the tiny profile, the book's under the paper profile."""
        if self.profile == "tiny":
            return self.runner, {"recipe": self.recipe, "knobs": self.knobs}
        config = settings.current()
        return Runner(config.results, self.runner.device), load_tuning(config.book_results / "tuning.json")

    def protocol(self, name: str, book_settings: bool = False, **arguments) -> list[dict]:
        """A protocol's rows (06_protocols), stored or computed now. Few-shot learning runs on the
        profile's datasets and CLIP; domain shift, transfer, saliency and stopping need the
        embedded world's styles, tasks and object masks, and run on it under either profile.
        book_settings=True keeps the book's tuned recipe and knobs whatever this chapter sets (04_sam:
        a reader's ρ would otherwise retrace all 200 runs of the stopping protocol)."""
        if name == "fewshot" and self.profile == "paper":
            arguments = {"datasets_": self.datasets, "model": self.model, "pretrained": self.pretrained,
                         **arguments}
            return protocols.results(name, self.runner, {"recipe": self.recipe, "knobs": self.knobs}, **arguments)
        runner, tuned = self.world()
        if book_settings:
            tuned = load_tuning(settings.current().book_results / "tuning.json")
        return protocols.results(name, runner, tuned, **arguments)

    def computed(self, name: str, compute, reads=()):
        """What a figure or a printed number computes from stored solutions (loss slices,
        saliency maps, gradients), computed once and stored in results/computed.json under
        `name`, stamped with the units and settings of the methods in `reads`; drawn again, it
        draws the same figure on any processor, whose rounding would otherwise move it.
        `compute()` returns plain data (numbers, lists, dicts of them). A reader's changed
        knob or recipe makes another stamp: computed again, stored in the reader's folder."""
        stamp = {"units": {u: v for m in reads for u, v in stamps.method_units(m).items()},
                 "recipe": self.recipe, "knobs": {m: self.knobs.get(m, {}) for m in reads},
                 "weights": weights_fingerprint(self.model, self.pretrained), "datasets": self.datasets}
        stamp = json.loads(json.dumps(stamp))
        for folder in dict.fromkeys((self.runner.dir, self.runner.book)):
            entry = protocols.read_store(folder / COMPUTED).get(name)
            if entry is not None and entry["stamp"] == stamp:
                return entry["values"]
        values = json.loads(json.dumps(compute()))
        protocols.store_entry(self.runner.dir / COMPUTED, name, {"stamp": stamp, "values": values})
        return values

    def knob(self, method: str, name: str):
        """The value of a method's knob in this chapter (the tuned one, the reader's, or the default)."""
        return getattr(methods.get(method).knobs(self.knobs.get(method, {})), name)

    def provenance(self) -> str:
        """Where this chapter's numbers came from, in one sentence."""
        trained = sum(len(r.trained) for r in self._runners.values())
        if not trained:
            return "Every run above was loaded from stored records."
        return (f"{trained} run{'s' * (trained != 1)} trained now (the others loaded from stored records); "
                f"their records and solutions were written to {self.runner.dir}.")


LIBRARY = str(Path(__file__).parent)
_show_warning = warnings.formatwarning


def reader_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as a reader of a chapter needs it: the library's own in one line (what happened
    and what to do), without the library's file and source line; others as Python shows them."""
    if str(filename).startswith(LIBRARY):
        return f"{category.__name__}: {message}\n"
    return _show_warning(message, category, filename, lineno, line)


def open_chapter(profile: str = "tiny", paper_datasets=("oxford_pets",), device="auto", recipe=None,
                 knobs=None) -> Chapter:
    """What every chapter starts from (01_zero_shot onwards)."""
    warnings.formatwarning = reader_warning
    return Chapter(profile, paper_datasets, device, recipe, knobs)


def cpu_warning(model: str, device) -> str | None:
    """A warning for a real-size CLIP on a CPU, where encoding a dataset's images takes hours."""
    if model == "tiny" or torch.device(device).type != "cpu":
        return None
    return (f"{model} on a CPU: encoding the datasets' images (once, then cached) takes hours and every "
            "training step seconds; use a GPU runtime (in Colab: Runtime > Change runtime type > GPU)")

