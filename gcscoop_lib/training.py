"""One training loop for every method (02_coop): SGD with momentum 0.9 and weight decay
5e-4, one constant warm-up epoch at 1e-5, then a per-epoch cosine schedule, as in Dassl.

Image features are cached before the loop, so a step only runs the text encoder.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import torch

from . import data, methods
from .evaluation import accuracy
from .methods import Batch
from .models import Clip, cached_features, load_clip
from .prompts import SINGLE_TEMPLATE, PromptedClip, PromptLearner


@dataclass
class TrainConfig:
    """Everything that defines a run; its hash keys the run's record."""

    method: str = "coop"
    dataset: str = "fashion"
    model: str = "tiny"
    pretrained: str | None = None
    seed: int = 1
    shots: int = 16
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.05
    n_ctx: int | None = None          # set by ctx_init's tokens; give it only with ctx_init=None
    ctx_init: str | None = "a photo of a"
    position: str = "end"
    class_specific: bool = False
    views: int = 1
    hparams: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        """A copy with the method's default hyper-parameters filled in and everything validated."""
        hp = methods.get(self.method).hparams(self.hparams)
        if self.dataset not in data.all_dataset_names():
            raise ValueError(f"unknown dataset {self.dataset!r}: choose one of {data.all_dataset_names()}")
        for name in ("shots", "epochs", "batch_size", "views"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.ctx_init and self.n_ctx is not None:
            raise ValueError(f"n_ctx={self.n_ctx} with ctx_init={self.ctx_init!r}: the initial words set the "
                             "context length, so give n_ctx only with ctx_init=None")
        if not self.ctx_init and (self.n_ctx or 0) < 1:
            raise ValueError(f"a random context needs n_ctx >= 1, got {self.n_ctx}")
        return dataclasses.replace(self, hparams=dataclasses.asdict(hp))

    def key(self) -> str:
        """A short hash of the resolved config: same config, same key."""
        text = json.dumps(dataclasses.asdict(self.resolved()), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Task:
    """A dataset's base/new problem with every frozen thing already computed."""

    base_names: list[str]
    new_names: list[str]
    train_features: torch.Tensor   # views x N x D (views = 1 without augmentation)
    train_labels: torch.Tensor
    val: dict                      # "base"/"new" -> (features, labels)
    test: dict                     # "base"/"new" -> (features, labels)
    template: str = SINGLE_TEMPLATE   # the dataset's hand-written prompt (zero-shot and the teachers)


def prepare_task(clip: Clip, dataset_name: str, shots: int, seed: int, views: int = 1,
                 split_dir=None) -> Task:
    """Split into base/new (CoOp's rule), draw the few-shot set and encode all images once."""
    dataset = data.load_dataset(dataset_name, clip.image_size)
    base, new = data.base_new_classes(len(dataset.classnames))
    train = data.few_shot_images(dataset, shots, seed, split_dir)
    features = cached_features(clip, train, views, seed)
    features = features if views > 1 else features.unsqueeze(0)

    def encode(split, classes: list[int]):
        subset = data.select_classes(split, classes)
        return cached_features(clip, subset), torch.from_numpy(subset.labels)

    val = {"base": encode(dataset.val, base), "new": encode(dataset.val, new)}
    test = {"base": encode(dataset.test, base), "new": encode(dataset.test, new)}
    names = dataset.classnames
    return Task([names[c] for c in base], [names[c] for c in new], features, torch.from_numpy(train.labels), val, test,
                dataset.template)


def lr_at(epoch: int, epochs: int, base_lr: float,
          warmup_lr: float = 1e-5) -> float:
    """Dassl's schedule: epoch 0 at warmup_lr, then cosine from base_lr
    over `epochs` epochs."""
    if epoch == 0:
        return warmup_lr
    return 0.5 * base_lr * (1 + math.cos(math.pi * (epoch - 1) / epochs))


@dataclass
class TrainResult:
    model: PromptedClip
    history: list[dict]     # one row per epoch
    steps: list[dict]       # one row per optimiser step (loss and the method's info)
    seconds: float


def build_model(clip: Clip, config: TrainConfig, classnames: list[str], template: str = SINGLE_TEMPLATE) -> PromptedClip:
    """A fresh prompted CLIP for a config; `template` is the hand-written prompt its teachers use."""
    learner = PromptLearner(clip, classnames, config.n_ctx, config.ctx_init, config.position,
                            config.class_specific, seed=config.seed)
    return PromptedClip(clip, learner, template)


def train(config: TrainConfig, clip: Clip | None = None, task: Task | None = None, track: bool = False,
          progress: bool = False, split_dir=None) -> TrainResult:
    """Train the prompt with `config.method`'s update (02_coop onwards).

    track=True evaluates base and new test accuracy after every epoch (cheap: features are cached).
    """
    config = config.resolved()
    if methods.get(config.method).update is None:
        raise ValueError(f"{config.method} is not trained: evaluate it with evaluate_zero_shot")
    clip = clip or load_clip(config.model, config.pretrained)
    task = task or prepare_task(clip, config.dataset, config.shots, config.seed, config.views, split_dir)
    torch.manual_seed(config.seed)
    model = build_model(clip, config, task.base_names, task.template)
    new_model = model.for_classes(task.new_names) if track else None

    def batch_at(view, idx):
        return Batch(task.train_features[view, idx].to(clip.device), task.train_labels[idx].to(clip.device))

    def after_epoch(row):
        row["base"] = accuracy(model, *task.test["base"])
        row["new"] = accuracy(new_model, *task.test["new"])

    start = time.time()
    history, steps = fit(model, config, task.train_features.shape[0], len(task.train_labels), batch_at,
                         after_epoch if track else None, progress)
    return TrainResult(model, history, steps, time.time() - start)


def fit(model, config: TrainConfig, views: int, n: int, batch_at, after_epoch=None, progress: bool = False):
    """The loop itself (02_coop): shuffled batches of the n training examples, one of `views`
    cached views per example and epoch, the method's update, SGD. Returns (epochs, steps).

    batch_at(view indices, example indices) gives a Batch; after_epoch(row) may add to an epoch's row.
    """
    method = methods.get(config.method)
    hp = method.knobs(**config.hparams)
    optimizer = torch.optim.SGD(model.params, lr=config.lr, momentum=0.9, weight_decay=5e-4)
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
            step = method.update(model, batch_at(view[idx], idx), hp)
            if not torch.isfinite(step.loss) or not torch.isfinite(step.grad).all():
                raise FloatingPointError(
                    f"non-finite loss or gradient ({step.loss.item()}) in {config.method} at epoch {epoch}, "
                    f"step {s}: lower the learning rate (now {config.lr})")
            methods.assign_grad(model.params, step.grad)   # replaces .grad: no zero_grad needed
            optimizer.step()
            losses.append(step.loss.item())
            steps.append({"epoch": epoch, "loss": losses[-1], **step.info})
        row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "loss": sum(losses) / max(len(losses), 1)}
        if after_epoch:
            after_epoch(row)
        history.append(row)
    return history, steps
