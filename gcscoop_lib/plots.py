"""Figures of the book (matplotlib). Each returns the figure so a chapter can show or save it.

Importing this module sets the book's figure style: text of at least 9 pt and, inside
Jupyter, PNGs at twice the pixel density of their displayed size.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .diagnostics import per_epoch_share
from .methods import METHODS, REGIMES

BOOK_STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 9,
              "xtick.labelsize": 9, "ytick.labelsize": 9, "figure.dpi": 100}
BASE_COLOUR, NEW_COLOUR = "#333333", "#9467bd"   # base and new classes: no method's colour


def use_book_style() -> None:
    """The book's matplotlib settings, and high-density PNGs when running inside Jupyter."""
    plt.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


use_book_style()


def show_examples(datasets: list, split: str = "test", max_classes: int = 10):
    """One column per dataset, one row per class (the first max_classes): an image and the
    class name beside it (01_zero_shot)."""
    column, row_height, image, header = 1.3, 0.62, 0.5, 0.45   # inches
    rows = min(max(len(d.classnames) for d in datasets), max_classes)
    width, height = column * len(datasets) + 0.3, row_height * rows + header
    fig = plt.figure(figsize=(width, height))
    for col, dataset in enumerate(datasets):
        images = getattr(dataset, split)
        left = (col * column + 0.05) / width
        title = dataset.name
        if len(dataset.classnames) > max_classes:
            title += f"\n(first {max_classes} of {len(dataset.classnames)})"
        fig.text(left, 1 - 0.05 / height, title, ha="left", va="top", fontsize=9, fontweight="bold")
        for row, name in enumerate(dataset.classnames[:max_classes]):
            bottom = 1 - (header + (row + 1) * row_height - 0.06) / height
            ax = fig.add_axes((left, bottom, image / width, image / height))
            ax.axis("off")
            i = np.flatnonzero(images.labels == row)[0]
            ax.imshow(images[i:i + 1][0])
            ax.text(1.1, 0.5, name.replace(" ", "\n"), transform=ax.transAxes, ha="left", va="center",
                    fontsize=9, linespacing=0.95)
    return fig


def probability_bars(probabilities, classnames: list[str], image=None, title: str = ""):
    """An image and CLIP's class probabilities for it (01_zero_shot)."""
    fig, axes = plt.subplots(1, 2 if image is not None else 1, figsize=(6.8, 2.8),
                             gridspec_kw={"width_ratios": [1, 2.5]} if image is not None else None)
    axes = np.atleast_1d(axes)
    if image is not None:
        axes[0].imshow(image)
        axes[0].axis("off")
    ax = axes[-1]
    ax.barh(range(len(classnames)), probabilities, color=METHODS["zeroshot"].colour)
    ax.set_yticks(range(len(classnames)), classnames, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def accuracy_curves(history: list[dict], zero_shot: dict, title: str = ""):
    """Base and new test accuracy after every epoch, against zero-shot (02_coop)."""
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for half, colour in (("base", BASE_COLOUR), ("new", NEW_COLOUR)):
        ax.plot(epochs, [row[half] for row in history], color=colour, label=f"{half} classes (prompt)")
        ax.axhline(zero_shot[half], color=colour, linestyle="--", linewidth=1, label=f"{half} classes (zero-shot)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.tight_layout()
    return fig


def gradient_plane(g_domain, g_general, g_update, title: str = ""):
    """G_d, G_g and the update, drawn in the plane spanned by G_d and G_g (03_prograd)."""
    e1 = g_general / g_general.norm()
    rest = g_domain - (g_domain @ e1) * e1
    e2 = rest / (rest.norm() + 1e-12)
    scale = max(g_domain.norm(), g_general.norm(), g_update.norm()).item()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    for vec, label, colour in ((g_domain, "$G_d$ (cross-entropy)", "#d62728"),
                               (g_general, "$G_g$ (KL to zero-shot)", "#777777"),
                               (g_update, "ProGrad update", "#1f77b4")):
        x, y = (vec @ e1).item() / scale, (vec @ e2).item() / scale
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2))
        ax.text(x * 1.05, y * 1.05 + 0.04, label, color=colour, fontsize=9)
    ax.axline((0, 0), (0, 1), color="#bbbbbb", lw=0.8, linestyle=":")
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_aspect("equal")
    ax.set_xlabel("along $G_g$")
    ax.set_ylabel("orthogonal to $G_g$")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_slices(radii, curves: dict, colours: dict | None = None, title: str = ""):
    """Training loss along directions through learned contexts, one colour per solution (04_sam).

    curves maps a label to a directions x radii array; thin lines are single directions,
    the thick line their mean.
    """
    fig, ax = plt.subplots(figsize=(6.8, 3.4))
    for k, (label, losses) in enumerate(curves.items()):
        losses = np.asarray(losses)
        colour = (colours or {}).get(label, plt.cm.tab10(k))
        for row in losses:
            ax.plot(radii, row, color=colour, alpha=0.3, lw=1)
        ax.plot(radii, losses.mean(0), color=colour, lw=2.5, label=label)
    ax.set_xlabel("distance from the learned context (relative to its norm)")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def share_per_epoch(steps: list[dict], key: str, colour: str, ylabel: str, title: str = ""):
    """The share of each epoch's steps whose `key` is true (03_prograd's conflicting steps)."""
    epochs, shares = per_epoch_share(steps, key)
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.plot(epochs, shares, color=colour)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def regimes_over_training(steps: list[dict], title: str = ""):
    """Cosine between SAM and ERM gradients per step, and the share of each regime per epoch (05_gcscoop)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 4.8), sharex=True)
    colours = {"sam": "#ff7f0e", "projected": "#2ca02c", "erm": "#d62728"}
    top.scatter([s["epoch"] + 1 for s in steps], [s["cos"] for s in steps], s=6,
                c=[colours[s["regime"]] for s in steps])
    top.set_ylabel("cos(g_SAM, g_ERM)")
    bottom_stack = None
    for regime in REGIMES:
        epochs, share = per_epoch_share(steps, "regime", regime)
        bottom_stack = np.zeros(len(epochs)) if bottom_stack is None else bottom_stack
        bottom.bar(epochs, share, bottom=bottom_stack, color=colours[regime], width=1.0, label=regime)
        bottom_stack += np.array(share)
    bottom.set_ylabel("share of steps")
    bottom.set_xlabel("epoch")
    bottom.legend(fontsize=9, ncol=3, loc="lower right")
    top.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def base_new_scatter(table: dict, order: list[str], dataset: str = "average", title: str = ""):
    """Each method as a point (base, new) with its seed spread, and iso-H curves (03_prograd, 05_gcscoop, 07_benchmark)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for method in order:
        row = table.get(method, {}).get(dataset)
        if not row:
            continue
        (b, bs), (n, ns) = row["base"], row["new"]
        ax.errorbar(b, n, xerr=bs, yerr=ns, fmt="o", color=METHODS[method].colour, capsize=3,
                    label=METHODS[method].label)
    lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
    hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
    xs = np.linspace(lo, hi, 200)
    for h in range(int(lo) // 5 * 5, int(hi) + 5, 5):
        ys = h * xs / (2 * xs - h)
        ok = (2 * xs - h > 0) & (ys >= lo) & (ys <= hi)
        if ok.sum() > 1:
            ax.plot(xs[ok], ys[ok], color="#cccccc", lw=0.8, zorder=0)
            ax.text(xs[ok][-1], ys[ok][-1], f" H {h}", color="#888888", fontsize=9, va="bottom", ha="right",
                    zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("base accuracy (%)")
    ax.set_ylabel("new accuracy (%)")
    ax.set_title(title or "grey lines: equal harmonic mean H", fontsize=9)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def heatmap(values, row_labels, col_labels, title: str = "", fmt: str = "{:.1f}", colorbar_label: str = "",
            signed: bool = False):
    """A small annotated heat map (01_zero_shot's templates, 05_gcscoop's sensitivity grid);
    signed=True centres a diverging colour map on zero (06_protocols' changes)."""
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(col_labels), 1.0 + 0.55 * len(row_labels)))
    top = np.nanmax(np.abs(values)) if signed else None
    im = ax.imshow(values, cmap="RdBu" if signed else "viridis", vmin=-top if signed else None, vmax=top)
    ax.set_xticks(range(len(col_labels)), col_labels, fontsize=9, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=9)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            dark = abs(values[i, j]) > 0.6 * top if signed else values[i, j] < np.nanmean(values)
            ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label(colorbar_label, fontsize=9)
    fig.tight_layout()
    return fig


def few_shot_curves(stats: dict, entries: list[str], tasks: list[str], label_of, colour_of, title: str = ""):
    """Accuracy against shots (log scale), one panel per task and one for the average, in the
    style of CoOp's Figure 3; `stats[(entry, task or "average", shots)]` is a Stat (06_protocols)."""
    panels = tasks + ["average"]
    columns = 3
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.8, 2.5 * rows), squeeze=False)
    shots = sorted({k for (_, _, k) in stats})
    for ax, panel in zip(axes.flat, panels):
        for entry in entries:
            points = [stats.get((entry, panel, k)) for k in shots]
            if entry == "zeroshot":
                ax.axhline(points[0].mean, color=colour_of(entry), linestyle="--", linewidth=1.2,
                           label=label_of(entry))
                continue
            means = np.array([p.mean for p in points])
            stds = np.array([p.std for p in points])
            ax.plot(shots, means, marker="o", markersize=3.5, color=colour_of(entry), label=label_of(entry),
                    linewidth=2.2 if panel == "average" else 1.4)
            ax.fill_between(shots, means - stds, means + stds, color=colour_of(entry), alpha=0.12, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(panel, fontsize=9, fontweight="bold" if panel == "average" else "normal")
        ax.set_xlabel("shots per class", fontsize=9)
        ax.set_ylabel("accuracy (%)", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.11, 1, 1))
    return fig


def source_target_bars(source: dict, target: dict, entries: list[str], label_of, colour_of, reference: str,
                       ylabel: str, title: str = ""):
    """Each entry's change from `reference` on the source and on the targets (two bars per
    entry, mean ± std over seeds): what a prompt gains where it was trained and what it keeps
    elsewhere (06_protocols)."""
    shown = [e for e in entries if e != reference]
    fig, ax = plt.subplots(figsize=(6.8, 3.3))
    x = np.arange(len(shown))
    for offset, values, name, hatch in ((-0.2, source, "source", ""), (0.2, target, "targets", "//")):
        means = [values[e].mean - values[reference].mean for e in shown]
        errors = [values[e].std for e in shown]
        ax.bar(x + offset, means, 0.38, yerr=errors, color=[colour_of(e) for e in shown], hatch=hatch,
               edgecolor="white", label=name, capsize=2)
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_xticks(x, [label_of(e) for e in shown], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def saliency_grid(images, masks, maps: dict, titles: list[str]):
    """Images (rows) with their object's outline, then each prompt's saliency map on the same
    colour scale per image (06_protocols)."""
    columns = 1 + len(maps)
    fig, axes = plt.subplots(len(images), columns, figsize=(0.95 * columns, 1.0 * len(images)), squeeze=False)
    for i, (image, mask) in enumerate(zip(images, masks)):
        top = max(float(m[i].max()) for m in maps.values())
        axes[i, 0].imshow(image)
        axes[i, 0].set_ylabel(titles[i], fontsize=9)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(m[i], cmap="magma", vmin=0, vmax=top)
            axes[i, j].contour(mask, levels=[0.5], colors="#4fc3f7", linewidths=0.8)
            if i == 0:
                axes[i, j].set_title(name, fontsize=9)
        if i == 0:
            axes[i, 0].set_title("image", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def image_row(images, titles: list[str]):
    """Images side by side with a title each (06_protocols: one image in every style)."""
    fig, axes = plt.subplots(1, len(images), figsize=(1.3 * len(images), 1.6), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


DRIFT_PANELS = (("kl", "KL to zero-shot, new classes"), ("text_cos", "cos to hand-written"),
                ("distance", "‖θ − θ₀‖"))


def _legend_below(fig, ax, title: str = ""):
    """One legend for a row of panels, below them, from the lines of `ax`, and the title above."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def drift_curves(histories: dict, colours: dict, title: str = ""):
    """How far each method's prompt drifts from zero-shot CLIP over training, averaged over
    tasks: the KL of its new-class predictions to zero-shot's, the cosine of its class text
    features to the hand-written prompt's, and the distance of its context from where it
    started (03_prograd). `histories[label]` is a list of per-epoch histories, one per task."""
    fig, axes = plt.subplots(1, len(DRIFT_PANELS), figsize=(6.8, 3.0))
    for ax, (key, name) in zip(axes, DRIFT_PANELS):
        for label, runs in histories.items():
            values = np.mean([[row[key] for row in history] for history in runs], axis=0)
            ax.plot(np.arange(1, len(values) + 1), values, color=colours[label], label=label, linewidth=1.6)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    return _legend_below(fig, axes[0], title)


def stopping_curves(rows: list[dict], entries: list[str], label_of, colour_of, title: str = ""):
    """Validation H and test H after every epoch, each the H of base and new averaged over the
    tasks, then averaged over seeds, one line per entry (04_sam: when to stop)."""
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 3.0), sharey=True)
    for ax, split in zip(axes, ("val", "test")):
        for entry in entries:
            runs = [r for r in rows if r["method"] == entry]
            per_seed = []
            for seed in sorted({r["seed"] for r in runs}):
                mine = [r for r in runs if r["seed"] == seed]
                base = np.mean([r[f"{split}_base"] for r in mine], axis=0)
                new = np.mean([r[f"{split}_new"] for r in mine], axis=0)
                per_seed.append(2 * base * new / (base + new))
            curve = np.mean(per_seed, axis=0)
            ax.plot(np.arange(1, len(curve) + 1), curve, color=colour_of(entry), label=label_of(entry),
                    linewidth=1.6)
        ax.set_xlabel("epoch")
        ax.set_title({"val": "validation H", "test": "test H"}[split], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("H (%)")
    return _legend_below(fig, axes[0], title)
