"""CoOp epoch by epoch, from stored runs (02_coop): the base and new accuracy of tracked runs
after every epoch, with a marker at a chosen epoch, the numbers there against the last epoch
and zero-shot CLIP's, and the epoch that the validation split would choose. Moving the
controls reads the runs' stored histories; it never trains.
"""
from __future__ import annotations

from functools import partial

import ipywidgets
import matplotlib.pyplot as plt

from ..evaluation import harmonic_mean
from ..methods import METHODS
from ..plots import BASE_COLOUR, NEW_COLOUR, use_book_style
from . import live

HALVES = (("base", BASE_COLOUR), ("new", NEW_COLOUR))
CHOSEN_COLOUR = "#e6a800"   # the epoch of the best validation H: no method's colour


def best_validation_epoch(history: list[dict]) -> int:
    """The first epoch with the best validation H of both halves: the epoch the validation
    split would choose (the rule of 04_sam's `protocols.stopped_at(curve, "val_H")`)."""
    scores = [harmonic_mean(row["val_base"], row["val_new"]) for row in history]
    return history[scores.index(max(scores))]["epoch"]


def _history(histories: dict, task: str, seed: int) -> list[dict]:
    """The stored history of a task and seed; a ValueError naming the choices otherwise."""
    if task not in histories:
        raise ValueError(f"no stored run on task {task!r}: choose one of {sorted(histories)}")
    if seed not in histories[task]:
        raise ValueError(f"no stored run on {task} with seed {seed!r}: choose one of {sorted(histories[task])}")
    return histories[task][seed]


def _row(histories: dict, task: str, seed: int, epoch: int) -> tuple[list[dict], dict]:
    """The run's history and its row at `epoch`; a ValueError naming the choices otherwise."""
    history = _history(histories, task, seed)
    rows = {row["epoch"]: row for row in history}
    if epoch not in rows:
        raise ValueError(f"epoch {epoch!r} is not in the run: choose one from {min(rows)} to {max(rows)}")
    return history, rows[epoch]


def draw_epoch(histories: dict, zero_shot: dict, task: str, seed: int, epoch: int,
               validation: bool = True):
    """One tracked CoOp run (histories[task][seed], rows with 'epoch', 'base', 'new',
    'val_base', 'val_new') drawn with a marker at `epoch`: test accuracy of both halves by
    epoch against zero-shot CLIP (zero_shot[task]['base'|'new']), the validation curves if
    asked, the epoch of the best validation H, and beside it base, new and H at the marked
    epoch, at the last epoch and for zero-shot CLIP. Returns the figure."""
    history, at = _row(histories, task, seed, epoch)
    last, chosen, start = history[-1], best_validation_epoch(history), zero_shot[task]
    use_book_style()
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(7.6, 4.1), gridspec_kw={"width_ratios": [1.7, 1]})
    epochs = [row["epoch"] for row in history]
    for half, colour in HALVES:
        ax.plot(epochs, [row[half] for row in history], color=colour, lw=1.6, label=f"{half}, test")
        if validation:
            ax.plot(epochs, [row[f"val_{half}"] for row in history], color=colour, lw=1, ls=":",
                    label=f"{half}, validation")
        ax.axhline(start[half], color=colour, ls="--", lw=1, label=f"{half}, zero-shot")
        ax.plot([epoch], [at[half]], "o", color=colour, ms=7, mec="white", mew=1.2, zorder=3)
    ax.axvline(epoch, color="#888888", lw=1, zorder=0)
    ax.plot([chosen], [0], marker="^", color=CHOSEN_COLOUR, ms=9, clip_on=False, zorder=4,
            transform=ax.get_xaxis_transform(), ls="none", label="best validation H")
    ax.set_xlim(min(epochs), max(epochs))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"CoOp on {task}, seed {seed}")

    coop = METHODS["coop"].colour
    columns = (("zero-shot", dict(color=METHODS["zeroshot"].colour), start),
               (f"epoch {epoch}", dict(color=coop), at),
               (f"last epoch ({last['epoch']})", dict(color="white", edgecolor=coop, hatch="///"), last))
    width = 0.26
    for k, (name, style, scores) in enumerate(columns):
        values = [scores["base"], scores["new"], harmonic_mean(scores["base"], scores["new"])]
        x = [i + (k - 1) * width for i in range(3)]
        bars.bar(x, values, width * 0.95, label=name, **style)
        for xi, v in zip(x, values):
            bars.text(xi, v + 1, f"{v:.1f}", ha="center", va="bottom", rotation=90, fontsize=9)
    bars.set_xticks(range(3), ["base", "new", "H"])
    bars.set_ylim(0, 125)
    bars.set_yticks(range(0, 101, 20))
    bars.set_ylabel("test accuracy (%)")
    bars.set_title("zero-shot, marked epoch, last")
    for side in ("top", "right"):
        bars.spines[side].set_visible(False)
    handles, labels = (sum(pair, []) for pair in zip(ax.get_legend_handles_labels(),
                                                      bars.get_legend_handles_labels()))
    fig.legend(handles, labels, ncol=4, loc="lower center", frameon=False, fontsize=9, columnspacing=1.2,
               handlelength=1.8)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


def epoch_explorer(histories: dict, zero_shot: dict, task: str | None = None, seed: int | None = None,
                   epoch: int | None = None) -> ipywidgets.VBox:
    """A live view of `draw_epoch`: a task, a seed, an epoch slider and a switch for the
    validation curves, over stored histories ({task: {seed: rows}}). It starts at the
    given task, seed and epoch (the first task and seed, and the epoch the validation split
    would choose, by default)."""
    if not histories:
        raise ValueError("no stored runs to show: pass {task: {seed: history}}")
    if len({tuple(sorted(runs)) for runs in histories.values()}) > 1:
        raise ValueError("every task needs runs with the same seeds: the seed control serves them all")
    task = next(iter(histories)) if task is None else task
    seed = next(iter(histories.get(task, {None: None}))) if seed is None else seed
    history = _history(histories, task, seed)
    epoch = best_validation_epoch(history) if epoch is None else epoch
    _row(histories, task, seed, epoch)   # a slider would clamp an epoch out of range: fail instead
    epochs = [row["epoch"] for row in history]
    controls = {
        "task": ipywidgets.Dropdown(options=list(histories), value=task, description="task"),
        "seed": ipywidgets.Dropdown(options=sorted(histories[task]), value=seed, description="seed"),
        "epoch": ipywidgets.IntSlider(min=min(epochs), max=max(epochs), value=epoch,
                                      description="epoch"),
        "validation": ipywidgets.Checkbox(value=True, description="validation curves"),
    }
    return live(partial(draw_epoch, histories, zero_shot), **controls)
