"""ProGrad's projection at a chosen step of a stored run, and how λ changes it (03_prograd).

A tracked ProGrad run logs, at every step, the cosine between the cross-entropy gradient G_d
and the KL gradient G_g, and whether they conflicted. That cosine is all the projection needs
to be drawn in the plane of the two: G_g's length never enters the rule (only its direction
does), and G_d's length only scales the picture, so with G_d as the unit the update
G = G_d - λ (G_d·ĝ) ĝ is fixed by the angle and λ. Moving a control redraws from the log;
nothing is trained.
"""
from __future__ import annotations

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import methods
from ..plots import gradient_axes, use_book_style
from . import live

RED, GREY, BLUE, GREEN = "#d62728", "#777777", "#1f77b4", "#2ca02c"


def plane_vectors(cos: float) -> tuple[torch.Tensor, torch.Tensor]:
    """G_d and G_g as two-dimensional unit vectors at the angle whose cosine is `cos`: G_g
    along the first axis, G_d above it."""
    cos = float(np.clip(cos, -1.0, 1.0))
    g_general = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g_domain = torch.tensor([cos, np.sqrt(1.0 - cos * cos)], dtype=torch.float64)
    return g_domain, g_general


def updates(cosines, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """For each logged cosine between G_d and G_g, ProGrad's update G with this λ
    (methods.prograd_direction on every step at once), in units of |G_d|: its component along
    G_g, which sets the step's first-order change of the KL (eq-kl-first-order), and its
    length |G| / |G_d|."""
    pairs = [plane_vectors(c) for c in cosines]
    g, _ = methods.prograd_direction(torch.stack([d for d, _ in pairs]),
                                     torch.stack([g for _, g in pairs]), lam)
    return g[:, 0].numpy(), g.norm(dim=-1).numpy()


def draw(steps: list[dict], step: int, lam: float, title: str = ""):
    """The projection at `step` (counted from 1) of a run whose per-step log is `steps` (each
    with its logged "cos"), with this λ. Left, in the plane of G_d and G_g: G_d as the unit,
    the direction of G_g, the component the rule removes and the update G. Right, every step
    of the run: G_d's component along G_g (the logged cosine), G's with this λ, and |G|, all
    in units of |G_d|, the chosen step marked. Returns the figure."""
    if not 1 <= step <= len(steps):
        raise ValueError(f"step must be between 1 and {len(steps)}, got {step}")
    use_book_style()
    cosines = [float(s["cos"]) for s in steps]
    g_domain, g_general = plane_vectors(cosines[step - 1])
    g, conflict = methods.prograd_direction(g_domain, g_general, lam)
    g_domain, g, conflict = g_domain.numpy(), g.numpy(), bool(conflict)

    fig, (ax, trace) = plt.subplots(1, 2, figsize=(8.8, 3.9), gridspec_kw={"width_ratios": [1, 1.4]})
    gradient_axes(ax, (-1.35, 1.35), (-0.35, 1.2), (-1.3, -0.3))

    def arrow(tip, colour, gid, **style):
        ax.annotate("", xy=tuple(float(t) for t in tip), xytext=(0, 0), zorder=2, gid=gid,
                    arrowprops=dict(arrowstyle="-|>", color=colour, shrinkA=0, shrinkB=0, **style))

    arrow((1.0, 0.0), GREY, "G_g", lw=2.5, mutation_scale=13)
    arrow(g_domain, RED, "G_d", lw=3.5, mutation_scale=15, alpha=0.85)
    if np.linalg.norm(g_domain - g) > 1e-12:
        ax.plot([g_domain[0], g[0]], [g_domain[1], g[1]], color="black", lw=1.2, ls="--", gid="removed")
    if np.linalg.norm(g) > 1e-12:
        arrow(g, BLUE, "G", lw=2.0, mutation_scale=12)
    ax.set_title(f"step {step}: cos($G_d$, $G_g$) = {_two(cosines[step - 1])}, "
                 f"{'conflict' if conflict else 'no conflict'}", fontsize=9)
    handles = [plt.Line2D([], [], color=RED, lw=3, label="$G_d$ (length 1)"),
               plt.Line2D([], [], color=GREY, lw=2.5, label="direction of $G_g$"),
               plt.Line2D([], [], color="black", lw=1.2, ls="--", label=f"removed (λ = {lam:.2f})"),
               plt.Line2D([], [], color=BLUE, lw=2, label=f"update $G$: length {_two(np.linalg.norm(g))}, "
                                                          f"along $G_g$ {_two(g[0])}")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False, fontsize=9)

    along, size = updates(cosines, lam)
    x = np.arange(1, len(cosines) + 1)
    trace.axhline(0, color="#555555", lw=0.8)
    trace.plot(x, cosines, color=RED, lw=0, marker=".", ms=3.5, alpha=0.45,
               label="$G_d$ along $G_g$ (the logged cosine)")
    trace.plot(x, along, color=BLUE, lw=0, marker=".", ms=3.5, label=f"$G$ along $G_g$, λ = {lam:.2f}")
    trace.plot(x, size, color=GREEN, lw=0.8, alpha=0.8, label=f"length of $G$, λ = {lam:.2f}")
    for values, colour in ((cosines, RED), (along, BLUE), (size, GREEN)):
        trace.plot([step], [values[step - 1]], "o", color=colour, ms=6, mec="white", mew=1, zorder=3)
    trace.axvline(step, color="#888888", lw=1.0, gid="chosen step", zorder=0)
    trace.set_ylim(-1.05, 1.05)
    trace.set_xlim(0, len(cosines) + 1)
    trace.set_xlabel("step")
    trace.set_ylabel("in units of $|G_d|$")
    trace.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _two(value: float) -> str:
    """A number to two decimals, never '-0.00'."""
    text = f"{value:.2f}"
    return "0.00" if float(text) == 0 else text


def projection(steps: list[dict], step: int = 1, lam: float = 1.0, title: str = "") -> ipywidgets.VBox:
    """Two sliders over a stored ProGrad run's per-step log: the step, and λ from 0 to 2; the
    figure of `draw` below them, redrawn whenever one moves."""
    controls = {
        "step": ipywidgets.IntSlider(value=step, min=1, max=len(steps), description="step"),
        "lam": ipywidgets.FloatSlider(value=lam, min=0.0, max=2.0, step=0.05, description="λ"),
    }
    return live(lambda step, lam: draw(steps, step, lam, title), **controls)
