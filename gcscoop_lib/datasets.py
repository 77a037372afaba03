"""One registry of every dataset a run can name: the embedded world's tasks and the papers'
datasets on disk (01_zero_shot)."""
from __future__ import annotations

from . import paper_data, world
from .imagesets import Dataset

_DATASET_CACHE: dict[tuple, Dataset] = {}


def load_dataset(name: str, image_size: int = 224, style: str | None = None) -> Dataset:
    """A task by name, built once per process: an embedded task (in another `style` if asked,
    06_protocols), or one of the papers' datasets read from disk at `image_size` (see
    paper_data; the embedded ones ignore it)."""
    key = (name, None if name in world.EMBEDDED else image_size, style)
    if key not in _DATASET_CACHE:
        if name in world.EMBEDDED:
            _DATASET_CACHE[key] = world.build_embedded(name, style)
        elif style is not None:
            raise ValueError(f"{name} is one of the papers' datasets: it has no other style than its own")
        elif name in paper_data.REGISTRY:
            splits = paper_data.load(name, image_size)
            _DATASET_CACHE[key] = Dataset(name, splits.classnames, splits.train, splits.val, splits.test,
                                          template=paper_data.REGISTRY[name].template, style="real")
        else:
            raise ValueError(f"unknown dataset {name!r}: choose one of {all_dataset_names()}")
    return _DATASET_CACHE[key]


def clear_dataset_cache() -> None:
    """Forget the datasets built so far (after their files on disk changed)."""
    _DATASET_CACHE.clear()


def dataset_names() -> list[str]:
    """The embedded tasks (the book's default)."""
    return sorted(world.EMBEDDED)


def all_dataset_names() -> list[str]:
    """The embedded tasks and the papers' datasets."""
    return dataset_names() + sorted(paper_data.REGISTRY)
