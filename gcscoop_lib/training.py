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
from .evaluation import accuracy
from .methods import Batch
from .models import Clip, load_clip
from .prompts import SINGLE_TEMPLATE
from .splits import PARTITIONS
from .tasks import Task, prepare_task

# The loop's version: bump it when the batches, schedule, optimiser or initial state change
# (gcscoop_lib.stamps; the loop's numbers in gcscoop_lib.protocol are stamped by value).
VERSION = 1


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
        config = dataclasses.replace(self, knobs=dataclasses.asdict(knobs))
        text = json.dumps(dataclasses.asdict(config), sort_keys=True)
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
    """Train with the run's method (02_coop onwards).

    track=True evaluates base and new accuracy after every epoch, on the test split ("base",
    "new") and on validation ("val_base", "val_new": what a stopping rule reads), cheap since
    features are cached, and how far the new classes' predictions and the parameters have
    drifted from zero-shot CLIP (diagnostics.drift).
    """
    run = as_run(run)
    config = run.config
    if not run.method.trains:
        raise ValueError(f"{run.method.label} is not trained: evaluate it with evaluate_zero_shot")
    clip = clip or load_clip(config.model, config.pretrained)
    task = task or prepare_task(clip, config.dataset, config.shots, config.seed, config.views, split_dir,
                                config.partition)
    torch.manual_seed(config.seed)
    model = build_model(clip, run, task.base_names, task.template)
    new_model = model.for_classes(task.new_names) if track and task.new_names else None
    initial = torch.cat([p.detach().reshape(-1) for p in model.params]).clone()

    def batch_at(view, idx):
        return Batch(task.train_features[view, idx].to(clip.device), task.train_labels[idx].to(clip.device))

    halves = {"base": model, **({"new": new_model} if new_model is not None else {})}

    def after_epoch(row):
        for half, prompted in halves.items():
            row[half] = accuracy(prompted, *task.test[half])
            row[f"val_{half}"] = accuracy(prompted, *task.val[half])
        watched, half = (new_model, "new") if new_model is not None else (model, "base")
        row.update(drift(watched, initial, task.test[half][0].to(clip.device)))

    start = time.time()
    history, steps = fit(model, run, task.train_features.shape[0], len(task.train_labels), batch_at,
                         after_epoch if track else None, progress)
    warn_if_stuck(run, history)
    return TrainResult(model, history, steps, time.time() - start)


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


def fit(model, run: Run, views: int, n: int, batch_at, after_epoch=None, progress: bool = False,
        on_step=None):
    """The loop itself (02_coop): shuffled batches of the n training examples, one of `views`
    cached views per example and epoch, the method's update, SGD. Returns (epochs, steps).

    batch_at(view indices, example indices) gives a Batch; after_epoch(row) may add to an epoch's
    row; on_step(epoch, step index, Step) sees every update after the optimiser took it (to log
    or plot; what it records is no part of the run's stamp).
    """
    config, update, knobs = run.config, run.method.update, run.knobs
    optimizer = torch.optim.SGD(model.params, lr=config.lr, momentum=protocol.MOMENTUM,
                                weight_decay=protocol.WEIGHT_DECAY)
    generator = torch.Generator().manual_seed(config.seed)
    batch_size = min(config.batch_size, n)
    history, steps = [], []
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc=f"{config.method} on {config.dataset}", leave=False)
    for epoch in epochs:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, config.epochs, config.lr)
        order = torch.randperm(n, generator=generator)
        view = torch.randint(views, (n,), generator=generator)
        losses = []
        for s in range(n // batch_size):  # the last partial batch is dropped, as in Dassl
            idx = order[s * batch_size:(s + 1) * batch_size]
            step = update(model, batch_at(view[idx], idx), knobs)
            if not torch.isfinite(step.loss) or not torch.isfinite(step.grad).all():
                raise FloatingPointError(
                    f"non-finite loss or gradient ({step.loss.item()}) in {config.method} at epoch {epoch}, "
                    f"step {s}: lower the learning rate (now {config.lr})")
            methods.assign_grad(model.params, step.grad)   # replaces .grad: no zero_grad needed
            optimizer.step()
            losses.append(step.loss.item())
            steps.append({"epoch": epoch, "loss": losses[-1], **step.info})
            if on_step:
                on_step(epoch, s, step)
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "loss": sum(losses) / max(len(losses), 1)}
        if after_epoch:
            after_epoch(row)
        history.append(row)
    return history, steps
