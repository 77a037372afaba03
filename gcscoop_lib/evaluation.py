"""Accuracy on base and new classes and their harmonic mean (01_zero_shot, 02_coop)."""
from __future__ import annotations

import torch

from .models import Clip
from .prompts import SINGLE_TEMPLATE, PromptedClip, zero_shot_weights

# Bump when what a score means changes (gcscoop_lib.stamps).
VERSION = 1


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N): high only when both base and new accuracy are high."""
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def per_class_accuracy(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> list[float]:
    return [100.0 * (predictions[labels == c] == c).float().mean().item() if (labels == c).any() else float("nan")
            for c in range(n_classes)]


def _scores(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict:
    return {"acc": 100.0 * (predictions == labels).float().mean().item(),
            "per_class": per_class_accuracy(predictions, labels, n_classes)}


@torch.no_grad()
def accuracy(model: PromptedClip, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy (%) of a prompted CLIP on cached features."""
    predictions = model.logits(features.to(model.clip.device)).argmax(-1).cpu()
    return 100.0 * (predictions == labels).float().mean().item()


@torch.no_grad()
def evaluate_prompt(model: PromptedClip, task, split: str = "test") -> dict:
    """Base accuracy with the trained prompt, new accuracy with the same context on the new names."""
    results = {}
    for half, names in halves(task):
        prompted = model if half == "base" else model.for_classes(names)
        features, labels = getattr(task, split)[half]
        predictions = prompted.logits(features.to(model.clip.device)).argmax(-1).cpu()
        results[half] = _scores(predictions, labels, len(names))
    return _summary(results)


@torch.no_grad()
def evaluate_zero_shot(clip: Clip, task, templates=None, split: str = "test") -> dict:
    """Zero-shot CLIP (01_zero_shot) on both halves, with one template or an ensemble
    (default: the dataset's own hand-written template)."""
    templates = templates or task.template
    results = {}
    for half, names in halves(task):
        weights = zero_shot_weights(clip, names, templates)
        features, labels = getattr(task, split)[half]
        predictions = (features.to(clip.device) @ weights.T).argmax(-1).cpu()
        results[half] = _scores(predictions, labels, len(names))
    return _summary(results)


@torch.no_grad()
def zero_shot_probabilities(clip: Clip, features: torch.Tensor, classnames: list[str],
                            templates=SINGLE_TEMPLATE) -> torch.Tensor:
    """CLIP's class probabilities, softmax(cos(w_i, f) / tau), for cached image features (01_zero_shot)."""
    weights = zero_shot_weights(clip, classnames, templates)
    return (clip.logit_scale * features.to(clip.device) @ weights.T).softmax(-1).cpu()


@torch.no_grad()
def template_accuracy(clip: Clip, features: torch.Tensor, labels, classnames: list[str], template: str) -> float:
    """Zero-shot top-1 accuracy (%) over all of a dataset's classes with one template (01_zero_shot)."""
    predictions = (features.to(clip.device) @ zero_shot_weights(clip, classnames, template).T).argmax(-1).cpu()
    return 100.0 * (predictions == torch.as_tensor(labels)).float().mean().item()


def halves(task) -> list[tuple[str, list[str]]]:
    """A task's halves and their class names: base and new, or base alone when every class is
    trained on (the few-shot protocol)."""
    return [("base", task.base_names)] + ([("new", task.new_names)] if task.new_names else [])


def _summary(results: dict) -> dict:
    """Base, new and H; without new classes, new and H are None and base is the accuracy over
    all classes."""
    base = results["base"]["acc"]
    new = results["new"]["acc"] if "new" in results else None
    return {"base": base, "new": new, "H": None if new is None else harmonic_mean(base, new),
            "per_class": {half: r["per_class"] for half, r in results.items()}}
