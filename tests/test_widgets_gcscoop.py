"""Chapter 5's widget: GCSCoOp's regimes of the logged steps as β₁ and β₂ move."""
import matplotlib
import numpy as np
import pytest
import torch

from gcscoop_lib import methods
from gcscoop_lib.widgets import gcscoop

matplotlib.use("Agg")


def steps_with(cosines, beta_low=0.5, beta_up=0.8):
    """A synthetic log: two epochs of steps with these cosines, labelled as the run took them."""
    return [{"epoch": i * 2 // len(cosines), "cos": c, "loss": 1.0,
             "regime": gcscoop.regime_of(c, beta_low, beta_up)} for i, c in enumerate(cosines)]


@pytest.mark.parametrize("betas", [(0.5, 0.8), (0.0, 0.8), (-0.3, 0.95), (0.6, 0.6)])
def test_the_regime_of_a_cosine_is_the_rules(betas):
    """Pairs of vectors at known cosines through methods.constrain_sam_gradient itself."""
    g_e = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for c in np.linspace(-0.95, 0.95, 39):
        g_s = torch.tensor([c, np.sqrt(1 - c * c)], dtype=torch.float64)
        _, regime, cos = methods.constrain_sam_gradient(g_s, g_e, *betas)
        assert gcscoop.regime_of(cos.item(), *betas) == regime


def test_relabelling_with_the_runs_own_thresholds_changes_nothing():
    steps = steps_with([0.9, 0.7, 0.4, 0.85, 0.1, 0.99])
    assert gcscoop.relabel(steps, 0.5, 0.8) == steps
    assert gcscoop.counts(steps) == {"sam": 3, "projected": 1, "erm": 2}
    assert gcscoop.counts(gcscoop.relabel(steps, 0.0, 0.8)) == {"sam": 3, "projected": 3, "erm": 0}


def test_moving_the_thresholds_recolours_the_steps_and_redraws():
    steps = steps_with([0.9, 0.7, 0.4, 0.85, 0.1, 0.99, 0.75, 0.55])
    box = gcscoop.regimes(steps, (0.5, 0.8), title="a run")
    slider, first = box.children[0], box.figure
    assert box.draw_count == 1 and tuple(slider.value) == pytest.approx((0.5, 0.8))
    assert "SAM 3, projected 3, ERM 2 of 8 steps" in first.axes[0].get_title()
    slider.value = (0.6, 0.95)
    assert box.draw_count == 2 and box.figure is not first
    assert "SAM 1, projected 4, ERM 3 of 8 steps" in box.figure.axes[0].get_title()
    colours = box.figure.axes[0].collections[0].get_facecolors()
    assert len({tuple(np.round(c, 3)) for c in colours}) == 3   # three regimes, three colours
    assert steps[0]["regime"] == "sam"                          # the log itself is left as it was
