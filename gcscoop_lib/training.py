"""One training loop for every method (02_coop): SGD with momentum and weight decay, one
constant warm-up epoch, then a per-epoch cosine schedule, as in Dassl (the numbers are in
gcscoop_lib.protocol).

Image features are cached before the loop, so a step only runs the text encoder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field

import torch

from . import datasets, methods, protocol
from .diagnostics import drift
from .features import CROPS
from .methods import Batch
from .models import Clip, load_clip
from .population import Population, member_knobs
from .prompts import SINGLE_TEMPLATE
from .splits import PARTITIONS
from .tasks import Task, prepare_task

# The loop's version: bump it when the batches, schedule, optimiser or initial state change
# (gcscoop_lib.stamps; the loop's numbers in gcscoop_lib.protocol are stamped by value).
VERSION = 1
# Fields added to TrainConfig after runs were recorded, with the value every earlier run had:
# left out of a run's key at that value, so that adding a field keeps every stored key.
KEY_NEUTRAL = {"crop": "square"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; its hash keys the run's record. The defaults are the
    papers' protocol with GCSCoOp's recipe (gcscoop_lib.protocol); the tiny CLIP's chapters
    use the recipe tuned for it instead."""

    method: str = "coop"
    dataset: str = "fashion"
    model: str = "tiny"
    pretrained: str | None = None
    seed: int = 1
    shots: int = protocol.SHOTS
    epochs: int = protocol.PAPER_RECIPE["epochs"]
    batch_size: int = protocol.PAPER_RECIPE["batch_size"]
    lr: float = protocol.PAPER_RECIPE["lr"]
    n_ctx: int | None = None          # set by ctx_init's tokens; give it only with ctx_init=None
    ctx_init: str | None = protocol.CTX_INIT
    position: str = protocol.CLASS_POSITION
    class_specific: bool = False
    views: int = 1
    partition: str = "coop"           # which classes are base and new (gcscoop_lib.splits)
    knobs: dict = field(default_factory=dict)
    crop: str = "square"              # the augmented views' crop (features.CROPS), with views > 1

    def resolve(self) -> "Run":
        """Check everything once and fill in the method's default knobs: the Run that every
        later step is handed (nothing downstream looks the method up again)."""
        method = methods.get(self.method)
        knobs = method.knobs(self.knobs)
        if self.dataset not in datasets.all_dataset_names():
            raise ValueError(f"unknown dataset {self.dataset!r}: choose one of {datasets.all_dataset_names()}")
        for name in ("shots", "batch_size", "views"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if method.trains and self.epochs < 2:
            raise ValueError(f"epochs must be at least 2 to train {method.label}, got {self.epochs}: epoch 0 is "
                             f"the warm-up at lr {protocol.WARMUP_LR:g}, so fewer leave the context where it "
                             "started")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"unknown partition {self.partition!r}: choose one of {list(PARTITIONS)}")
        if self.ctx_init and self.n_ctx is not None:
            raise ValueError(f"n_ctx={self.n_ctx} with ctx_init={self.ctx_init!r}: the initial words set the "
                             "context length, so give n_ctx only with ctx_init=None")
        if not self.ctx_init and (self.n_ctx or 0) < 1:
            raise ValueError(f"a random context needs n_ctx >= 1, got {self.n_ctx}")
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}: choose one of {list(CROPS)}")
        config = dataclasses.replace(self, knobs=dataclasses.asdict(knobs))
        fields = dataclasses.asdict(config)
        keyed = {k: v for k, v in fields.items() if k not in KEY_NEUTRAL or v != KEY_NEUTRAL[k]}
        text = json.dumps(keyed, sort_keys=True)
        return Run(config, method, knobs, hashlib.sha256(text.encode()).hexdigest()[:12])


@dataclass(frozen=True)
class Run:
    """A resolved config: its method, its typed knobs and its key (a short hash of the
    config: same config, same key)."""

    config: TrainConfig
    method: methods.Method
    knobs: object
    key: str


def as_run(config: "TrainConfig | Run") -> Run:
    """A Run from either a config (resolved here) or a Run (as it is)."""
    return config if isinstance(config, Run) else config.resolve()


def lr_at(epoch: int, epochs: int, base_lr: float,
          warmup_lr: float = protocol.WARMUP_LR) -> float:
    """Dassl's schedule: epoch 0 at warmup_lr, then cosine from base_lr
    over `epochs` epochs."""
    if epoch == 0:
        return warmup_lr
    return 0.5 * base_lr * (1 + math.cos(math.pi * (epoch - 1) / epochs))


@dataclass
class TrainResult:
    model: methods.PromptModel
    history: list[dict]     # one row per epoch
    steps: list[dict]       # one row per optimiser step (loss and the method's info)
    seconds: float


def build_model(clip: Clip, run: "TrainConfig | Run", classnames: list[str], template: str = SINGLE_TEMPLATE):
    """A fresh model for a run, built the way its method builds one; `template` is the
    hand-written prompt its teachers use."""
    run = as_run(run)
    return run.method.build(clip, run.config, classnames, template)


def train(run: "TrainConfig | Run", clip: Clip | None = None, task: Task | None = None, track: bool = False,
          progress: bool = False, split_dir=None) -> TrainResult:
    """Train with the run's method (02_coop onwards): a population of one
    (train_population).

    track=True evaluates base and new accuracy after every epoch, on the test split ("base",
    "new") and on validation ("val_base", "val_new": what a stopping rule reads), cheap since
    features are cached, and how far the new classes' predictions and the parameters have
    drifted from zero-shot CLIP (diagnostics.drift).
    """
    run = as_run(run)
    config = run.config
    clip = clip or load_clip(config.model, config.pretrained)
    task = task or prepare_task(clip, config.dataset, config.shots, config.seed, config.views, split_dir,
                                config.partition, config.crop)
    return train_population([run], clip, [task], track, progress)[0]


def train_population(runs: list[Run], clip: Clip, tasks: list[Task], track: bool = False,
                     progress: bool = False) -> list[TrainResult]:
    """Train runs that share a method, its knobs, a number of classes and their steps as one
    population (gcscoop_lib.population; 07_benchmark): each member draws its own batches with
    its own generator and learns at its own rate, as it would alone. Returns one result per run;
    each member's seconds are the population's time divided among its members."""
    for run in runs:
        if not run.method.trains:
            raise ValueError(f"{run.method.label} is not trained: evaluate it with evaluate_zero_shot")
    if len({task.train_features.shape[:2] for task in tasks}) > 1:
        raise ValueError("a population's members must have as many training examples and views: train runs "
                         "whose tasks differ in them as populations of their own")
    models = []
    for run, task in zip(runs, tasks):
        torch.manual_seed(run.config.seed)   # a model that draws its start (CoCoOp's meta-network) draws it alone
        models.append(build_model(clip, run, task.base_names, task.template))
    tracker = _tracker(models, tasks, clip) if track else None

    def batch_at(member, view, idx):
        task = tasks[member]
        return Batch(task.train_features[view, idx].to(clip.device), task.train_labels[idx].to(clip.device))

    start = time.time()
    histories, steps = fit(Population(models), runs, tasks[0].train_features.shape[0], len(tasks[0].train_labels),
                           batch_at, tracker, progress)
    seconds = (time.time() - start) / len(runs)
    for run, history in zip(runs, histories):
        warn_if_stuck(run, history)
    return [TrainResult(*out, seconds) for out in zip(models, histories, steps)]


def _tracker(models: list, tasks: list[Task], clip: Clip):
    """What tracked runs add to each epoch's row, every member's: accuracies of both halves on
    test and validation, and the drift from zero-shot CLIP (diagnostics.drift). The members'
    class features are computed together, one encoder call per half."""
    halves = {"base": models}
    if tasks[0].new_names:
        halves["new"] = [model.for_classes(task.new_names) for model, task in zip(models, tasks)]
    initial = [torch.cat([p.detach().reshape(-1) for p in model.params]).clone() for model in models]
    watched = "new" if "new" in halves else "base"
    together = {half: Population(prompted) for half, prompted in halves.items()}

    @torch.no_grad()
    def after_epoch(member: int, row: dict) -> None:
        if member == 0:   # once an epoch, for every member
            texts.update({half: [None] * len(models) if group.kind == "per_image" else group.text_features()
                          for half, group in together.items()})
        task = tasks[member]
        for half, prompted in halves.items():
            model, text = prompted[member], texts[half][member]
            for split, prefix in (("test", ""), ("val", "val_")):
                features, labels = getattr(task, split)[half]
                predictions = model.logits(features.to(clip.device), text).argmax(-1).cpu()
                row[prefix + half] = 100.0 * (predictions == labels).float().mean().item()
        row.update(drift(halves[watched][member], initial[member], task.test[watched][0].to(clip.device),
                         texts[watched][member]))

    texts: dict = {}
    return after_epoch


def warn_if_stuck(run: Run, history: list[dict]) -> None:
    """Say so when a run's mean training loss ends where it started (nothing was learned) or
    above it (it diverged): its accuracies are then no measurement of the method."""
    first, last = history[0]["loss"], history[-1]["loss"]
    if abs(last - first) <= 0.01 * first:
        warnings.warn(f"{run.method.label} on {run.config.dataset} learned nothing: its training loss stayed at "
                      f"{first:.3g}; raise the learning rate (now {run.config.lr:g}) or the epochs", stacklevel=3)
    elif last > first:
        warnings.warn(f"{run.method.label} on {run.config.dataset} diverged: its training loss rose from "
                      f"{first:.3g} to {last:.3g}; lower the learning rate (now {run.config.lr:g})", stacklevel=3)


def fit(model, runs: "Run | list[Run]", views: int, n: int, batch_at, after_epoch=None, progress: bool = False,
        on_step=None):
    """The loop itself (02_coop): shuffled batches of the n training examples, one of `views`
    cached views per example and epoch, the method's update, SGD. Returns (epochs, steps).

    batch_at(view indices, example indices) gives a Batch; after_epoch(row) may add to an epoch's
    row; on_step(epoch, step index, Step) sees every update after the optimiser took it (to log
    or plot; what it records is no part of the run's stamp).

    With a list of runs, `model` is their Population: each member draws its batches from its
    own generator and learns at its own rate; batch_at and after_epoch then take the member's
    index first, and one list of epochs and one of steps come back per member.
    """
    if isinstance(runs, Run):
        histories, steps = fit(Population([model]), [runs], views, n, lambda _, view, idx: batch_at(view, idx),
                               after_epoch and (lambda _, row: after_epoch(row)), progress, on_step)
        return histories[0], steps[0]
    config, update, knobs = runs[0].config, runs[0].method.update, member_knobs(runs, model.params[0].device)
    per_member = len(model.params) // len(runs)
    optimizer = torch.optim.SGD([{"params": model.params[m * per_member:(m + 1) * per_member], "lr": run.config.lr}
                                 for m, run in enumerate(runs)],
                                lr=config.lr, momentum=protocol.MOMENTUM, weight_decay=protocol.WEIGHT_DECAY)
    generators = [torch.Generator().manual_seed(run.config.seed) for run in runs]
    batch_size = min(config.batch_size, n)
    histories, steps = [[] for _ in runs], [[] for _ in runs]
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        on = ", ".join(dict.fromkeys(run.config.dataset for run in runs))
        epochs = tqdm(epochs, desc=f"{config.method} on {on}" + (f" x {len(runs)}" if len(runs) > 1 else ""),
                      leave=False)
    for epoch in epochs:
        for group, run in zip(optimizer.param_groups, runs):
            group["lr"] = lr_at(epoch, config.epochs, run.config.lr)
        draws = [(torch.randperm(n, generator=g), torch.randint(views, (n,), generator=g)) for g in generators]
        losses = [[] for _ in runs]
        for s in range(n // batch_size):  # the last partial batch is dropped, as in Dassl
            batches = []
            for member, (order, view) in enumerate(draws):
                idx = order[s * batch_size:(s + 1) * batch_size]
                batches.append(batch_at(member, view[idx], idx))
            step = update(model, Batch(torch.stack([b.features for b in batches]),
                                       torch.stack([b.labels for b in batches])), knobs)
            finite = torch.isfinite(step.loss) & torch.isfinite(step.grad).all(-1)
            if not finite.all():
                bad = int((~finite).nonzero()[0])
                raise FloatingPointError(
                    f"non-finite loss or gradient ({step.loss[bad].item()}) in {config.method} (seed "
                    f"{runs[bad].config.seed}) at epoch {epoch}, step {s}: lower the learning rate (now "
                    f"{runs[bad].config.lr})")
            methods.assign_grad(model.params, step.grad)   # replaces .grad: no zero_grad needed
            optimizer.step()
            info = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in step.info.items()}
            for member, loss in enumerate(step.loss.tolist()):
                losses[member].append(loss)
                steps[member].append({"epoch": epoch, "loss": loss, **{k: v[member] for k, v in info.items()}})
            if on_step:
                on_step(epoch, s, step)
        for member, group in enumerate(optimizer.param_groups):
            row = {"epoch": epoch + 1, "lr": group["lr"], "loss": sum(losses[member]) / max(len(losses[member]), 1)}
            if after_epoch:
                after_epoch(member, row)
            histories[member].append(row)
    return histories, steps
