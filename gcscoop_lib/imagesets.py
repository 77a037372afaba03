"""Image sets and datasets as the library passes them around: uint8 images, integer labels,
class names, and a fingerprint that keys every cache (01_zero_shot)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ImageSet:
    """Images (uint8, N x 32 x 32 x 3), integer labels, the class names they index and, where
    the world drew them, each image's foreground mask (N x 32 x 32 booleans)."""

    images: np.ndarray
    labels: np.ndarray
    classnames: list[str]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "ImageSet":
        masks = None if self.masks is None else self.masks[index]
        return ImageSet(self.images[index], self.labels[index], self.classnames, masks)

    def __getitem__(self, items: slice) -> np.ndarray:
        return self.images[items]

    def fingerprint(self) -> str:
        return fingerprint(self.images)


@dataclass
class Dataset:
    """A downstream task: train pool, validation and test splits, and its prompt template."""

    name: str
    classnames: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    template: str = "a photo of a {}."
    style: str = "clean"


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def fingerprint(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
