"""CoOp's protocol on a dataset: the base/new split of its classes and the few-shot draw of
training images, stored as JSON with the pool it came from (01_zero_shot, 02_coop).

Three partitions of the classes: "coop" (CoOp's rule, the papers' base-to-new protocol),
"reversed" (the same rule on the labels in reverse order: another base/new split of the
same task) and "all" (every class is trained on and tested, none is new: few-shot learning,
06_protocols)."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .imagesets import Dataset, fingerprint


# ----------------------------------------------------------------------------- base/new and few-shot
PARTITIONS = ("coop", "reversed", "all")


def base_new_classes(n_classes: int, partition: str = "coop") -> tuple[list[int], list[int]]:
    """CoOp's rule: sorted labels, the first ceil(n/2) are base, the rest new (01_zero_shot);
    "reversed" applies it to the labels in reverse order, "all" makes every class base."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}: choose one of {list(PARTITIONS)}")
    if n_classes < 2:
        raise ValueError(f"a base/new split needs at least 2 classes, got {n_classes}")
    labels = list(range(n_classes))
    if partition == "all":
        return labels, []
    labels = labels[::-1] if partition == "reversed" else labels
    m = math.ceil(n_classes / 2)
    return labels[:m], labels[m:]


def select_classes(images, classes: list[int]):
    """Keep the images of `classes` and relabel them 0..len(classes)-1, as CoOp does."""
    if not classes:
        raise ValueError("empty class list: pass at least one class index")
    remap = {c: i for i, c in enumerate(classes)}
    kept = images.subset(np.flatnonzero(np.isin(images.labels, classes)))
    labels = np.array([remap[int(c)] for c in kept.labels], dtype=np.int64)
    return dataclasses.replace(kept, labels=labels, classnames=[images.classnames[c] for c in classes])


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> list[int]:
    """`shots` indices per class, drawn with their own generator (never the global RNG)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if shots > len(pool):
            raise ValueError(f"{shots} shots asked but class {int(c)} has only {len(pool)} images: lower --shots")
        chosen.extend(sorted(rng.choice(pool, size=shots, replace=False).tolist()))
    return chosen


def split_path(split_dir, dataset: str, shots: int, seed: int, partition: str = "coop") -> Path:
    """Where a few-shot draw is stored."""
    part = "" if partition == "coop" else f"_{partition}"
    return Path(split_dir) / f"{dataset}{part}_shot{shots}_seed{seed}.json"


def few_shot_split(dataset: Dataset, shots: int, seed: int, split_dir: Path | None = None,
                   partition: str = "coop") -> list[int]:
    """Few-shot base-class train indices, stored as JSON so a run can be re-traced.

    A stored split is used only if it was drawn from the same pool of training images.
    """
    base, _ = base_new_classes(len(dataset.classnames), partition)
    pool = select_classes(dataset.train, base)
    drawn_from = fingerprint(pool.labels) + "-" + pool.fingerprint()
    path = None
    if split_dir is not None:
        path = split_path(split_dir, dataset.name, shots, seed, partition)
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {error.lineno}, is not valid JSON ({error.msg}): delete it to draw "
                                 "the split again") from None
            if stored.get("pool") != drawn_from:
                raise ValueError(f"{path} was drawn from another version of {dataset.name}'s training images: "
                                 "delete it to draw the split again")
            return stored["indices"]
    indices = few_shot_indices(pool.labels, shots, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"dataset": dataset.name, "shots": shots, "seed": seed, "pool": drawn_from,
                                   "classes": pool.classnames, "indices": indices}))
        tmp.replace(path)
    return indices


def few_shot_images(dataset: Dataset, shots: int, seed: int, split_dir: Path | None = None,
                    partition: str = "coop"):
    """The few-shot training images of the base classes, labelled 0..m-1 (02_coop)."""
    base, _ = base_new_classes(len(dataset.classnames), partition)
    indices = few_shot_split(dataset, shots, seed, split_dir, partition)
    return select_classes(dataset.train, base).subset(indices)
