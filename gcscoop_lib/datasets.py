"""One registry of every dataset a run can name: the embedded world's tasks and the papers'
datasets on disk (01_zero_shot)."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import paper_data, settings, world
from .imagesets import Dataset, ImageSet

_DATASET_CACHE: dict[tuple, Dataset] = {}
_REGISTERED: dict[str, Callable[[str | None], Dataset]] = {}


def register(name: str, build: Callable[[str | None], Dataset]) -> None:
    """Make a task of one's own runnable by name (a reader's images, a study's next world):
    build(style) returns its Dataset, in its own style for None. Lasts for this process; the
    book's chapters and protocols keep to the embedded tasks (dataset_names). Runs are keyed by
    the task's name, so a task whose images change is registered under a new name."""
    if name in world.EMBEDDED or name in paper_data.REGISTRY:
        raise ValueError(f"{name!r} is already a dataset of the library: register yours under another name")
    _REGISTERED[name] = build
    for key in [key for key in _DATASET_CACHE if key[0] == name]:
        del _DATASET_CACHE[key]


def load_dataset(name: str, image_size: int = 224, style: str | None = None) -> Dataset:
    """A task by name, built once per process: an embedded task (in another `style` if asked,
    06_protocols), or one of the papers' datasets read from disk at `image_size` (see
    paper_data; the embedded ones ignore it)."""
    key = (name, None if name in world.EMBEDDED else image_size, style)
    if key not in _DATASET_CACHE:
        if name in world.EMBEDDED:
            _DATASET_CACHE[key] = _embedded(name, style)
        elif name in _REGISTERED:
            _DATASET_CACHE[key] = _REGISTERED[name](style)
        elif style is not None:
            raise ValueError(f"{name} is one of the papers' datasets: it has no other style than its own")
        elif name in paper_data.REGISTRY:
            splits = paper_data.load(name, image_size)
            _DATASET_CACHE[key] = Dataset(name, splits.classnames, splits.train, splits.val, splits.test,
                                          template=paper_data.REGISTRY[name].template, style="real")
        else:
            raise ValueError(f"unknown dataset {name!r}: choose one of {all_dataset_names()}")
    return _DATASET_CACHE[key]


def _embedded(name: str, style: str | None) -> Dataset:
    """An embedded task, drawn once per machine: drawing one takes seconds, and every process of
    a sweep, a chapter or a test would otherwise draw it again. The copy on disk is keyed by the
    world's source and numpy's version, so a changed world is drawn anew."""
    source = hashlib.sha256(Path(world.__file__).read_bytes() + np.__version__.encode()).hexdigest()[:16]
    path = settings.current().cache / "world" / f"{name}_{style or 'own'}_{source}.npz"
    splits = ("train", "val", "test")
    try:
        with np.load(path, allow_pickle=False) as stored:
            spec = world.EMBEDDED[name]
            parts = [ImageSet(stored[f"{split}_images"], stored[f"{split}_labels"], list(spec["classnames"]),
                              stored[f"{split}_masks"] if f"{split}_masks" in stored else None)
                     for split in splits]
            return Dataset(name, list(spec["classnames"]), *parts, style=style or spec["style"])
    except (OSError, KeyError, ValueError):   # missing or broken: draw it (and keep it)
        pass
    dataset = world.build_embedded(name, style)
    arrays = {f"{split}_{part}": getattr(getattr(dataset, split), part)
              for split in splits for part in ("images", "labels", "masks")
              if getattr(getattr(dataset, split), part) is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return dataset


def clear_dataset_cache() -> None:
    """Forget the datasets built so far (after their files on disk changed)."""
    _DATASET_CACHE.clear()


def dataset_names() -> list[str]:
    """The embedded tasks (the book's default)."""
    return sorted(world.EMBEDDED)


def all_dataset_names() -> list[str]:
    """The embedded tasks, the papers' datasets and any registered here (register)."""
    return dataset_names() + sorted(paper_data.REGISTRY) + sorted(_REGISTERED)
