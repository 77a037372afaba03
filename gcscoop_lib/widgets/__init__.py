"""Live controls over what training stored (02_coop to 05_gcscoop): each method chapter has a
widget that moves through recorded runs (their per-epoch curves, per-step logs and learned
contexts), so that moving it never trains. One module per chapter; this one holds what they
share: `live`, which redraws a figure whenever a control moves.

In Jupyter or Colab the controls redraw at once; the rendered page shows one drawn setting
instead (the chapter draws it with the same function).
"""
from __future__ import annotations

from typing import Callable

import ipywidgets
import matplotlib.pyplot as plt
from IPython.display import display

# Labels are never cut ("dataset_n..."), and sliders span the page instead of 124 pixels.
STYLE = {"description_width": "initial"}
WIDE = "95%"


def live(draw: Callable, **controls: ipywidgets.ValueWidget) -> ipywidgets.VBox:
    """The controls above an output that shows draw(**their values), a matplotlib figure,
    drawn again whenever one of them moves. The box's `figure` is the figure drawn last (what
    a test reads), and `draw_count` how many have been drawn."""
    output = ipywidgets.Output()
    box = ipywidgets.VBox([*controls.values(), output])
    box.draw_count = 0

    def redraw(_=None):
        figure = draw(**{name: control.value for name, control in controls.items()})
        box.figure, box.draw_count = figure, box.draw_count + 1
        with output:
            output.clear_output(wait=True)
            plt.show() if figure is None else display(figure)
        if figure is not None:
            plt.close(figure)

    for control in controls.values():
        control.style, control.layout.width = STYLE, WIDE
        control.observe(redraw, "value")
    redraw()
    return box
