"""Image sets backed by files on disk, read lazily so a 50,000-image test set never sits in memory:
`FileImageSet` loads a slice at a time, resized (shorter side) and centre-cropped as CLIP's test
transform does; `FileSplits` holds a dataset's train, val and test sets."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

@dataclass
class FileImageSet:
    """Image files with labels, read lazily: slicing returns uint8 N x size x size x 3."""

    paths: list[Path]
    labels: np.ndarray
    classnames: list[str]
    size: int = 224

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "FileImageSet":
        index = np.asarray(index, dtype=int)
        return FileImageSet([self.paths[i] for i in index], self.labels[index], self.classnames, self.size)

    def __getitem__(self, items: slice) -> np.ndarray:
        return np.stack([load_image(p, self.size) for p in self.paths[items]])

    def fingerprint(self) -> str:
        text = json.dumps([[str(p) for p in self.paths], self.labels.tolist(), self.size])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_image(path: Path, size: int) -> np.ndarray:
    """CLIP's test transform on one file: RGB, shorter side to `size` (bicubic), centre crop."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


@dataclass
class FileSplits:
    train: FileImageSet
    val: FileImageSet
    test: FileImageSet
    classnames: list[str]
    source: str = ""               # which rule produced the split
    notes: dict = field(default_factory=dict)


def _image_set(paths, labels, classnames, size) -> FileImageSet:
    return FileImageSet(list(paths), np.array(labels, dtype=np.int64), classnames, size)
