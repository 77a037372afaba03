"""Chapter 3's widget, driven with ipywidgets itself: moving the step or λ redraws ProGrad's
projection from a stored per-step log, the update is the rule's, and nothing trains."""
import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from gcscoop_lib import runs, training  # noqa: E402
from gcscoop_lib.widgets import prograd  # noqa: E402

# A run's per-step log as tracked solutions store it: the cosine and whether it conflicted.
COSINES = (0.0, -0.8, 0.5, -0.3, -0.95, 0.2)
STEPS = [{"cos": c, "conflict": c < 0} for c in COSINES]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def controls(box) -> dict:
    return {c.description: c for c in box.children if isinstance(c, ipywidgets.ValueWidget)}


def tips(fig) -> dict:
    """The arrows of the plane (left panel) by name: their tips."""
    return {a.get_gid(): np.array(a.xy) for a in fig.axes[0].texts if isinstance(a, Annotation)}


def chosen_step(fig) -> float:
    (line,) = [l for l in fig.axes[1].lines if l.get_gid() == "chosen step"]
    return line.get_xdata()[0]


def test_moving_the_step_redraws_at_that_steps_angle():
    box = prograd.projection(STEPS, step=2, lam=1.0)
    assert box.draw_count == 1 and chosen_step(box.figure) == 2
    first = box.figure
    controls(box)["step"].value = 3
    assert box.draw_count == 2 and box.figure is not first
    assert chosen_step(box.figure) == 3
    assert tips(box.figure)["G_d"][0] == pytest.approx(COSINES[2])   # G_d at the logged angle
    assert tips(box.figure)["G_g"] == pytest.approx((1.0, 0.0))


def test_lambda_moves_the_update_as_the_rule_does():
    box = prograd.projection(STEPS, step=2, lam=1.0)
    d = tips(box.figure)["G_d"]
    assert tips(box.figure)["G"][0] == pytest.approx(0.0, abs=1e-12)   # λ = 1: orthogonal to G_g
    lam = controls(box)["λ"]
    lam.value = 0.0
    assert box.draw_count == 2
    assert tips(box.figure)["G"] == pytest.approx(d)                    # λ = 0: CoOp's step
    lam.value = 2.0
    assert box.draw_count == 3
    assert tips(box.figure)["G"] == pytest.approx((-d[0], d[1]))        # λ = 2: the reflection
    lam.value = 0.5
    assert tips(box.figure)["G"][0] == pytest.approx(0.5 * d[0])        # half the conflict left


def test_a_step_without_conflict_is_left_alone_whatever_lambda():
    box = prograd.projection(STEPS, step=3, lam=2.0)
    assert tips(box.figure)["G"] == pytest.approx(tips(box.figure)["G_d"])
    assert not [l for l in box.figure.axes[0].lines if l.get_gid() == "removed"]


def test_the_trace_gives_every_steps_update_in_units_of_g_d():
    cosines = np.array(COSINES)
    conflicting = cosines < 0
    along, size = prograd.updates(COSINES, 1.0)
    assert np.allclose(along[conflicting], 0.0)                         # λ = 1 removes the conflict
    assert np.allclose(along[~conflicting], cosines[~conflicting])      # the others are left alone
    assert np.allclose(size[conflicting], np.sqrt(1 - cosines[conflicting] ** 2))
    along, size = prograd.updates(COSINES, 2.0)
    assert np.allclose(along[conflicting], -cosines[conflicting])       # reflected
    assert np.allclose(size, 1.0)
    along, _ = prograd.updates(COSINES, 0.0)
    assert np.allclose(along, cosines)                                  # λ = 0 is CoOp


def test_the_figure_draws_the_trace_of_this_lambda():
    box = prograd.projection(STEPS, step=2, lam=1.0)
    before = [l.get_ydata() for l in box.figure.axes[1].lines if "λ" in l.get_label()]
    controls(box)["λ"].value = 0.5
    after = [l.get_ydata() for l in box.figure.axes[1].lines if "λ" in l.get_label()]
    assert len(before) == len(after) == 2
    assert not np.allclose(before[0], after[0])
    assert after[0][1] == pytest.approx(0.5 * COSINES[1])


def test_the_widget_never_trains(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the widget trained")

    for module, name in ((training, "train"), (training, "train_population"), (training, "fit"),
                         (runs, "train"), (runs, "train_population")):
        monkeypatch.setattr(module, name, refuse)
    box = prograd.projection(STEPS)
    for value in range(1, len(STEPS) + 1):
        controls(box)["step"].value = value
    assert box.draw_count == len(STEPS)


def test_a_step_outside_the_log_is_refused():
    with pytest.raises(ValueError, match="between 1 and 6"):
        prograd.draw(STEPS, 0, 1.0)
