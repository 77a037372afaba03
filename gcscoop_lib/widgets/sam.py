"""SAM's loss slice and its perturbation at a chosen radius (04_sam).

SAM scores a context θ by the loss at θ + ε, with ε = ρ ĝ a step of length ρ along the
gradient's direction ĝ. `along_gradient` measures the training loss along that direction
around a stored solution, once, for a grid of distances; `draw` marks where SAM's perturbed
point lands for a radius ρ and what loss it sees there, beside the first-order prediction
L(θ) + ρ‖g‖ of the chapter's derivation. Moving ρ only moves the mark along the stored
slice: nothing is trained or evaluated again.
"""
from __future__ import annotations

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import diagnostics, methods
from . import live


def along_gradient(model, features: torch.Tensor, labels: torch.Tensor, distances) -> dict:
    """The training loss at θ + t ĝ for each distance t (absolute, in the context's own
    units), ĝ the unit gradient of the loss on (features, labels) at the model's learned
    context θ: the direction SAM's ε takes. Plain data (for Chapter.computed): the distances,
    the losses, the gradient's norm ‖g‖ and the context's norm ‖θ‖."""
    loss, grad = methods.loss_and_grad(model, methods.Batch(features, labels))
    direction = (grad / grad.norm()).detach()
    losses = []
    with torch.no_grad():
        for t in distances:
            with methods.perturbed(model, float(t) * direction):
                losses.append(methods.cross_entropy(model.logits(features), labels).item())
    return {"distances": [float(t) for t in distances], "losses": losses,
            "grad_norm": grad.norm().item(), "norm": diagnostics.context_norm(model)}


def seen_at(slice_: dict, rho: float) -> float:
    """The loss SAM sees at radius rho: the slice at distance rho (linear between the grid's
    distances)."""
    return float(np.interp(rho, slice_["distances"], slice_["losses"]))


def draw(slices: dict, rho: float, colours: dict | None = None, title: str = ""):
    """Each solution's loss along its own gradient direction (solid), the first-order line
    L(θ) + t‖g‖ (dotted), and SAM's perturbed point θ + ρĝ marked with the loss it sees.
    slices maps a label to along_gradient's data."""
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    ax.axvspan(0, rho, color="0.9", lw=0, zorder=0)
    ax.axvline(0, color="0.5", lw=0.8)
    top = 0.0
    for k, (name, s) in enumerate(slices.items()):
        colour = (colours or {}).get(name, plt.cm.tab10(k))
        t, losses = np.asarray(s["distances"]), np.asarray(s["losses"])
        at, seen = seen_at(s, 0.0), seen_at(s, rho)
        ahead = t[t >= 0]
        ax.plot(t, losses, color=colour, lw=2)
        ax.plot(ahead, at + ahead * s["grad_norm"], color=colour, lw=1, ls=":")
        ax.plot([0], [at], "o", color=colour, mfc="white", ms=6)
        ax.plot([rho], [seen], "o", color=colour, ms=7,
                label=f"{name}: L(θ) {at:.2f}, L(θ+ε) {seen:.2f}, rise {seen - at:.2f}; "
                      f"‖ε‖ = ρ is {100 * rho / s['norm']:.0f} % of ‖θ‖ = {s['norm']:.2f}")
        ax.annotate("", (rho, seen), (0, at), arrowprops=dict(arrowstyle="->", color=colour, lw=1.2))
        top = max(top, losses.max())
    ax.set_ylim(0, 1.05 * top)
    ax.set_xlabel("distance t along the gradient's direction ĝ (SAM's ε = ρĝ)")
    ax.set_ylabel("training loss")
    ax.set_title(title or f"ρ = {rho:.2f}: SAM's perturbed point θ + ρĝ and the loss it sees", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    fig.tight_layout()
    return fig


def sam_slice(slices: dict, rho: float, colours: dict | None = None, title: str = "") -> ipywidgets.VBox:
    """A slider over SAM's radius ρ (the slices' grid, from 0 to their largest distance)
    above draw(slices, ρ): moving it moves SAM's perturbed point along the stored slices."""
    t = np.asarray(next(iter(slices.values()))["distances"])
    ahead = t[t >= 0]
    control = ipywidgets.FloatSlider(value=rho, min=0.0, max=float(ahead.max()), step=float(np.diff(ahead).min()),
                                     description="SAM's radius ρ", readout_format=".2f", continuous_update=False)
    return live(lambda rho: draw(slices, rho, colours, title), rho=control)
