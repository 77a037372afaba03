"""02_coop's widget, driven with ipywidgets itself: moving a control redraws the figure from the
stored histories it was given, and a value the runs do not hold fails."""
import math

import matplotlib
import pytest
import traitlets

matplotlib.use("Agg")

from gcscoop_lib.widgets import coop  # noqa: E402

EPOCHS = 10


def synthetic_history(rise: float, fall: float) -> list[dict]:
    """Base rises, new falls after epoch 3; validation follows test, half a point lower."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        base = 70 + rise * (1 - math.exp(-epoch / 3))
        new = 80 + 2 * min(epoch, 3) - fall * max(epoch - 3, 0)
        rows.append({"epoch": epoch, "base": base, "new": new, "val_base": base - 0.5, "val_new": new - 0.5})
    return rows


HISTORIES = {"shapes": {1: synthetic_history(20, 5), 2: synthetic_history(15, 1)},
             "digits": {1: synthetic_history(10, 3), 2: synthetic_history(12, 0.5)}}
ZERO_SHOT = {"shapes": {"base": 70.0, "new": 80.0}, "digits": {"base": 65.0, "new": 75.0}}


def controls(box):
    return {control.description: control for control in box.children[:-1]}


def marker_x(figure) -> float:
    """Where the epoch marker (the vertical line of the curves' panel) stands."""
    curves = figure.axes[0]
    vertical = [line for line in curves.get_lines() if len(set(line.get_xdata())) == 1
                and len(line.get_xdata()) == 2]
    return float(vertical[0].get_xdata()[0])


def bar_heights(figure) -> list[float]:
    return [round(patch.get_height(), 6) for patch in figure.axes[1].patches]


def test_the_widget_starts_at_the_epoch_validation_would_choose():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    assert box.draw_count == 1
    chosen = coop.best_validation_epoch(HISTORIES["shapes"][1])
    assert chosen == 3 and controls(box)["epoch"].value == chosen and marker_x(box.figure) == chosen
    assert controls(box)["epoch"].min == 1 and controls(box)["epoch"].max == EPOCHS


def test_moving_the_epoch_moves_the_marker_and_the_numbers():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    before = bar_heights(box.figure)
    controls(box)["epoch"].value = 8
    assert box.draw_count == 2 and marker_x(box.figure) == 8
    after = bar_heights(box.figure)
    row = HISTORIES["shapes"][1][7]
    assert after != before and round(row["base"], 6) in after and round(row["new"], 6) in after
    assert "epoch 8" in [text.get_text() for text in box.figure.legends[0].get_texts()]


def test_choosing_another_task_and_seed_draws_that_run():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    controls(box)["task"].value = "digits"
    controls(box)["seed"].value = 2
    assert box.draw_count == 3
    assert box.figure.axes[0].get_title() == "CoOp on digits, seed 2"
    base_curve = box.figure.axes[0].get_lines()[0]
    assert list(base_curve.get_ydata()) == [row["base"] for row in HISTORIES["digits"][2]]


def test_the_validation_switch_adds_and_removes_the_dotted_curves():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    dotted = lambda figure: [line for line in figure.axes[0].get_lines() if line.get_linestyle() == ":"]
    assert len(dotted(box.figure)) == 2
    controls(box)["validation curves"].value = False
    assert box.draw_count == 2 and dotted(box.figure) == []


def test_labels_are_whole_and_the_slider_spans_the_width():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    for control in controls(box).values():
        assert control.style.description_width == "initial" and control.layout.width == "95%"


def test_a_value_the_runs_do_not_hold_fails():
    box = coop.epoch_explorer(HISTORIES, ZERO_SHOT)
    with pytest.raises(traitlets.TraitError):
        controls(box)["task"].value = "textures"
    assert box.draw_count == 1
    with pytest.raises(ValueError, match="epoch 11 is not in the run: choose one from 1 to 10"):
        coop.draw_epoch(HISTORIES, ZERO_SHOT, "shapes", 1, EPOCHS + 1)
    with pytest.raises(ValueError, match="epoch 0 is not in the run"):
        coop.epoch_explorer(HISTORIES, ZERO_SHOT, epoch=0)   # a slider would clamp it silently
    with pytest.raises(ValueError, match="choose one of \\[1, 2\\]"):
        coop.draw_epoch(HISTORIES, ZERO_SHOT, "shapes", 3, 5)
    with pytest.raises(ValueError, match="same seeds"):
        coop.epoch_explorer({**HISTORIES, "fashion": {1: HISTORIES["shapes"][1]}}, ZERO_SHOT)
