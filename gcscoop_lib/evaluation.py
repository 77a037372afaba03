"""Accuracy on base and new classes, the harmonic mean, and tables of runs (02_coop, 06_benchmark)."""
from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F

from .methods import perturbed
from .models import Clip
from .prompts import SINGLE_TEMPLATE, PromptedClip, zero_shot_weights


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
    for half, names in (("base", task.base_names), ("new", task.new_names)):
        prompted = model if half == "base" else model.for_classes(names)
        features, labels = getattr(task, split)[half]
        predictions = prompted.logits(features.to(model.clip.device)).argmax(-1).cpu()
        results[half] = _scores(predictions, labels, len(names))
    return _summary(results)


@torch.no_grad()
def evaluate_zero_shot(clip: Clip, task, templates=SINGLE_TEMPLATE, split: str = "test") -> dict:
    """Zero-shot CLIP (01_zero_shot) on both halves, with one template or an ensemble."""
    results = {}
    for half, names in (("base", task.base_names), ("new", task.new_names)):
        weights = zero_shot_weights(clip, names, templates)
        features, labels = getattr(task, split)[half]
        predictions = (features.to(clip.device) @ weights.T).argmax(-1).cpu()
        results[half] = _scores(predictions, labels, len(names))
    return _summary(results)


def _summary(results: dict) -> dict:
    base, new = results["base"]["acc"], results["new"]["acc"]
    return {"base": base, "new": new, "H": harmonic_mean(base, new),
            "per_class": {"base": results["base"]["per_class"], "new": results["new"]["per_class"]}}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def summarise(records: list[dict]) -> dict:
    """Aggregate run records into {method: {dataset or 'average': stats}}.

    Per dataset: mean ± std over seeds of base, new and H. The average row follows the
    papers: average base and average new over datasets, then H of those two averages.
    Its std is over seeds of the per-seed dataset averages.
    """
    by = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[r["method"]][r["dataset"]][r["seed"]] = r
    table = {}
    for method, per_dataset in by.items():
        rows = {}
        for dataset, per_seed in sorted(per_dataset.items()):
            runs = list(per_seed.values())
            rows[dataset] = {k: mean_std([r[k] for r in runs]) for k in ("base", "new", "H")}
            rows[dataset]["seconds"] = sum(r.get("seconds", 0.0) for r in runs) / len(runs)
            rows[dataset]["seeds"] = len(runs)
        datasets = sorted(per_dataset)
        seeds = sorted(set.intersection(*(set(per_dataset[d]) for d in datasets)))
        if seeds:
            avg = {}
            for k in ("base", "new"):
                avg[k] = mean_std([sum(per_dataset[d][s][k] for d in datasets) / len(datasets) for s in seeds])
            per_seed_h = [harmonic_mean(sum(per_dataset[d][s]["base"] for d in datasets) / len(datasets),
                                        sum(per_dataset[d][s]["new"] for d in datasets) / len(datasets)) for s in seeds]
            avg["H"] = (harmonic_mean(avg["base"][0], avg["new"][0]), mean_std(per_seed_h)[1])
            avg["seconds"] = sum(rows[d]["seconds"] for d in datasets) / len(datasets)
            avg["seeds"] = len(seeds)
            rows["average"] = avg
        table[method] = rows
    return table


def markdown_table(table: dict, order: list[str], labels: dict, datasets: list[str] | None = None) -> str:
    """Base / new / H (mean ± std) per method, one block of columns per dataset and the average."""
    datasets = datasets or ["average"]
    head = "| method | " + " | ".join(f"{d} base | {d} new | {d} H" for d in datasets) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(datasets))]
    for method in order:
        if method not in table:
            continue
        cells = []
        for d in datasets:
            row = table[method].get(d)
            cells += [f"{row[k][0]:.1f} ± {row[k][1]:.1f}" if row else "–" for k in ("base", "new", "H")]
        lines.append(f"| {labels.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@torch.no_grad()
def loss_along(model: PromptedClip, features: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor,
               radii: list[float]) -> torch.Tensor:
    """Training loss at ctx + r * |ctx| * d for each unit direction d and radius r (04_sam).

    Returns directions x radii. Radii are relative to the context's norm, so slices of
    different solutions are comparable.
    """
    scale = model.learner.ctx.detach().norm()
    out = torch.empty(len(directions), len(radii))
    for i, d in enumerate(directions):
        for j, r in enumerate(radii):
            with perturbed(model, r * scale * d / d.norm()):
                out[i, j] = F.cross_entropy(model.logits(features), labels).item()
    return out


def markdown_report(table: dict, order: list[str], labels: dict, datasets: list[str], heading: str = "##") -> str:
    """The average table, then one table per dataset, as Markdown (02_coop to 06_benchmark, and the CLI).

    heading="" writes bold titles instead of headings (for notebook outputs).
    """
    def title(text):
        return f"{heading} {text}" if heading else f"**{text}**"

    blocks = [title("Average over " + ", ".join(datasets)), "", markdown_table(table, order, labels), ""]
    for dataset in datasets:
        blocks += [title(dataset), "", markdown_table(table, order, labels, [dataset]), ""]
    return "\n".join(blocks)
