"""GCSCoOp's regimes along a stored run as its thresholds β₁ and β₂ move (05_gcscoop).

Each step of a tracked run logged the cosine c between its SAM and ERM gradients. The regime
GCSCoOp's rule picks is a function of that cosine and the two thresholds alone, so other
thresholds recolour the logged steps exactly, without training. They do not say what a run
trained with those thresholds would do: from the first step whose regime changes, its
context, and so every later cosine, would differ.
"""
from __future__ import annotations

import ipywidgets

from .. import methods, plots
from . import live


def regime_of(cos: float, beta_low: float, beta_up: float) -> str:
    """The regime methods.constrain_sam_gradient picks at cosine `cos`: SAM at or above β₂,
    ERM at or below β₁ when β₁ > 0, the projection otherwise."""
    if cos >= beta_up:
        return "sam"
    return "erm" if cos <= beta_low and beta_low > 0 else "projected"


def relabel(steps: list[dict], beta_low: float, beta_up: float) -> list[dict]:
    """The logged steps with the regime each cosine gets under (β₁, β₂)."""
    return [{**s, "regime": regime_of(s["cos"], beta_low, beta_up)} for s in steps]


def counts(steps: list[dict]) -> dict:
    """How many steps took each regime."""
    return {r: sum(s["regime"] == r for s in steps) for r in methods.REGIMES}


def draw(steps: list[dict], betas: tuple[float, float], title: str = ""):
    """plots.regimes_over_training of the logged cosines under thresholds betas = (β₁, β₂),
    with the count of each regime in the title."""
    low, up = betas
    steps = relabel(steps, low, up)
    n = counts(steps)
    heading = (f"β₁ = {low:g}, β₂ = {up:g}: SAM {n['sam']}, projected {n['projected']}, "
               f"ERM {n['erm']} of {len(steps)} steps")
    return plots.regimes_over_training(steps, f"{title}\n{heading}" if title else heading, betas=(low, up))


def regimes(steps: list[dict], betas: tuple[float, float], title: str = "") -> ipywidgets.VBox:
    """One slider with two handles, β₁ ≤ β₂, above draw(steps, (β₁, β₂), title)."""
    control = ipywidgets.FloatRangeSlider(value=tuple(betas), min=-1.0, max=1.0, step=0.05,
                                          description="β₁ and β₂", readout_format=".2f",
                                          continuous_update=False)
    return live(lambda betas: draw(steps, tuple(betas), title), betas=control)
