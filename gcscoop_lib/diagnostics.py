"""Measurements of a training run and of the solution it found: loss slices around a learned
context (04_sam, 05_gcscoop) and how often a step event happened per epoch (03_prograd, 05_gcscoop)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .methods import perturbed
from .prompts import PromptedClip

# Bump when what a tracked run records per epoch changes (gcscoop_lib.stamps).
# 2: validation accuracies of both halves as well (the stopping rules read them).
VERSION = 2


@torch.no_grad()
def loss_along(model: PromptedClip, features: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor,
               radii: list[float], scale: float | None = None) -> torch.Tensor:
    """Training loss at θ + r * s * d for each unit direction d and radius r, θ being the
    learned parameters (04_sam).

    Returns directions x radii. The scale s is the parameters' own norm |θ| unless given: a
    relative radius probes each solution in proportion to its size, a given s probes every
    solution at the same absolute distances.
    """
    if scale is None:
        scale = context_norm(model)
    out = torch.empty(len(directions), len(radii))
    for i, d in enumerate(directions):
        for j, r in enumerate(radii):
            with perturbed(model, r * scale * d / d.norm()):
                out[i, j] = F.cross_entropy(model.logits(features), labels).item()
    return out


def context_norm(model: PromptedClip) -> float:
    """The norm of everything a model learns, flattened (04_sam)."""
    return torch.cat([p.detach().reshape(-1) for p in model.params]).norm().item()


def random_directions(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """`count` Gaussian directions in the context's space, the same for every solution (04_sam)."""
    return torch.randn(count, size, generator=torch.Generator().manual_seed(seed))


def flatness(model: PromptedClip, features: torch.Tensor, labels: torch.Tensor, directions: torch.Tensor,
             radii: list[float], scale: float | None = None) -> dict:
    """Loss slices around a solution (`loss_along`, relative to its own norm unless `scale` is
    given), the loss at the solution, and how much the loss rises on average at the ends of
    the slices (04_sam, 05_gcscoop)."""
    curves = loss_along(model, features, labels, directions.to(features.device), radii, scale).numpy()
    at_solution = float(curves[:, len(radii) // 2].mean())
    return {"curves": curves, "loss": at_solution, "rise": float(curves[:, [0, -1]].mean() - at_solution)}


@torch.no_grad()
def drift(model, start: torch.Tensor, features: torch.Tensor, text: torch.Tensor | None = None) -> dict:
    """How far a model has moved from zero-shot CLIP (02_coop, 03_prograd): the KL divergence
    KL(zero-shot || prompt) of its predictions on `features`, the distance of its parameters
    from `start` (where training began, flat), and, for models with one prompt per class,
    the mean cosine between its class text features (`text`, if already computed) and the
    hand-written prompt's."""
    if text is None and getattr(model, "text_features", None) is not None:
        text = model.text_features()
    logits, teacher = model.logits(features, text), model.zero_shot_logits(features)
    kl = F.kl_div(logits.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean")
    theta = torch.cat([p.detach().reshape(-1) for p in model.params])
    out = {"kl": kl.item(), "distance": (theta - start.to(theta.device)).norm().item()}
    if text is not None:
        out["text_cos"] = F.cosine_similarity(text, model.zs_text, dim=-1).mean().item()
    return out


def per_epoch_share(steps: list[dict], key: str, value=True) -> tuple[list[int], list[float]]:
    """Epochs (from 1) and the share of each epoch's steps whose `key` equals `value`."""
    epochs = sorted({s["epoch"] for s in steps})
    shares = [float(np.mean([s[key] == value for s in steps if s["epoch"] == e])) for e in epochs]
    return [e + 1 for e in epochs], shares
