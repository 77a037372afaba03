"""A dataset's base/new problem with every frozen thing computed once: the few-shot training
features (per augmented view), and the validation and test features of each half (02_coop)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import datasets, splits
from .features import cached_features
from .models import Clip
from .prompts import SINGLE_TEMPLATE

# The version of a task's make-up (this module, splits and the datasets' registry); bump it when
# what a task holds changes (gcscoop_lib.stamps).
VERSION = 1


@dataclass
class Task:
    """A dataset's base/new problem with every frozen thing already computed."""

    base_names: list[str]
    new_names: list[str]
    train_features: torch.Tensor   # views x N x D (views = 1 without augmentation)
    train_labels: torch.Tensor
    val: dict                      # "base"/"new" -> (features, labels); no "new" without new classes
    test: dict                     # "base"/"new" -> (features, labels); no "new" without new classes
    template: str = SINGLE_TEMPLATE   # the dataset's hand-written prompt (zero-shot and the teachers)


def prepare_task(clip: Clip, dataset_name: str, shots: int, seed: int, views: int = 1,
                 split_dir=None, partition: str = "coop", crop: str = "square") -> Task:
    """Split into base/new (CoOp's rule, or another partition of gcscoop_lib.splits), draw the
    few-shot set and encode all images once."""
    dataset = datasets.load_dataset(dataset_name, clip.image_size)
    base, new = splits.base_new_classes(len(dataset.classnames), partition)
    train = splits.few_shot_images(dataset, shots, seed, split_dir, partition)
    features = cached_features(clip, train, views, seed, crop)
    features = features if views > 1 else features.unsqueeze(0)

    def encode(split, classes: list[int]):
        subset = splits.select_classes(split, classes)
        return cached_features(clip, subset), torch.from_numpy(subset.labels)

    halves = {"base": base, "new": new} if new else {"base": base}
    val = {half: encode(dataset.val, classes) for half, classes in halves.items()}
    test = {half: encode(dataset.test, classes) for half, classes in halves.items()}
    names = dataset.classnames
    return Task([names[c] for c in base], [names[c] for c in new], features, torch.from_numpy(train.labels), val, test,
                dataset.template)
