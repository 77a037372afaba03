"""Chapter 4's widget: SAM's perturbed point moves along a stored loss slice as ρ moves."""
import matplotlib
import numpy as np
import pytest
import torch

from gcscoop_lib import methods
from gcscoop_lib.widgets import sam

matplotlib.use("Agg")


def parabola(curvature: float, slope: float, low: float = 0.1) -> dict:
    """A synthetic slice: the loss low + slope t + curvature t² / 2 on a grid of distances."""
    t = np.round(np.linspace(-0.2, 0.5, 71), 4)
    return {"distances": t.tolist(), "losses": (low + slope * t + curvature * t ** 2 / 2).tolist(),
            "grad_norm": slope, "norm": 1.5}


SLICES = {"sharp": parabola(8.0, 0.2), "flat": parabola(0.5, 0.1, low=0.3)}


def test_the_loss_sam_sees_is_the_slice_at_rho():
    assert sam.seen_at(SLICES["sharp"], 0.0) == pytest.approx(0.1)
    assert sam.seen_at(SLICES["sharp"], 0.2) == pytest.approx(0.1 + 0.2 * 0.2 + 4.0 * 0.04)
    assert sam.seen_at(SLICES["flat"], 0.25) == pytest.approx(0.3 + 0.025 + 0.25 * 0.0625)


def test_moving_rho_redraws_with_the_point_at_the_new_radius():
    box = sam.sam_slice(SLICES, rho=0.05)
    slider, first = box.children[0], box.figure
    assert box.draw_count == 1 and slider.value == pytest.approx(0.05)
    assert slider.min == 0 and slider.max == pytest.approx(0.5) and slider.step == pytest.approx(0.01)
    slider.value = 0.3
    assert box.draw_count == 2 and box.figure is not first
    labels = box.figure.axes[0].get_legend_handles_labels()[1]
    sharp = sam.seen_at(SLICES["sharp"], 0.3)
    assert any(f"L(θ+ε) {sharp:.2f}" in label for label in labels)
    assert box.figure.axes[0].get_title().startswith("ρ = 0.30")
    # the sharp solution sees less than the flat one at a small radius, more at a large one
    assert sam.seen_at(SLICES["sharp"], 0.05) < sam.seen_at(SLICES["flat"], 0.05)
    assert sam.seen_at(SLICES["sharp"], 0.3) > sam.seen_at(SLICES["flat"], 0.3)


class Linear:
    """A stand-in prompt model: logits = features @ W."""

    def __init__(self):
        self.W = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        self.params = [self.W]

    def logits(self, features, text_features=None):
        return features @ self.W


def test_along_gradient_starts_at_the_loss_rises_at_the_gradients_rate_and_restores_the_model():
    model = Linear()
    generator = torch.Generator().manual_seed(1)
    features, labels = torch.randn(32, 4, generator=generator), torch.randint(0, 3, (32,), generator=generator)
    before = model.W.detach().clone()
    out = sam.along_gradient(model, features, labels, [-1e-3, 0.0, 1e-3, 0.1])
    loss, grad = methods.loss_and_grad(model, methods.Batch(features, labels))
    assert out["losses"][1] == pytest.approx(loss.item())
    assert out["grad_norm"] == pytest.approx(grad.norm().item())
    assert out["norm"] == pytest.approx(before.norm().item())
    slope = (out["losses"][2] - out["losses"][0]) / 2e-3
    assert slope == pytest.approx(out["grad_norm"], rel=1e-2)     # uphill at the rate ‖g‖
    assert out["losses"][3] > out["losses"][1]
    assert torch.equal(model.W, before)
