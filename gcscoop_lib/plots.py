"""Figures of the book (matplotlib). Each returns the figure so a chapter can show or save it.

Importing this module sets the book's figure style: text of at least 9 pt and, inside
Jupyter, PNGs at twice the pixel density of their displayed size.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, patches, transforms

from . import settings
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


def drawing(name: str):
    """A drawing of the book's (book/images/), to display in a cell (chapter 1): found in the
    clone, whether the chapter runs in it or alone in Colab."""
    from IPython.display import SVG

    return SVG(filename=str(settings.current().book_results.parent / "book" / "images" / name))


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


def _norm_text(value: float) -> str:
    """A norm for a legend: three significant digits, and an exact zero as 0."""
    return "0" if value == 0 else f"{value:.3g}"


def gradient_axes(ax, xlim: tuple, ylim: tuple, note_at: tuple) -> None:
    """The plane of G_d and G_g (03_prograd): the unit circle, the half against G_g shaded and
    named at `note_at`, equal unticked axes along G_g and orthogonal to it."""
    circle = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(circle), np.sin(circle), color="#dddddd", lw=0.8, zorder=0)
    ax.axvspan(xlim[0], 0, color="#d62728", alpha=0.05, lw=0, zorder=0)
    ax.axvline(0, color="#bbbbbb", lw=0.8, linestyle=":", zorder=0)
    ax.text(*note_at, "against $G_g$", color="#b2182b", fontsize=9, va="bottom")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("along $G_g$")
    ax.set_ylabel("orthogonal to $G_g$")


def gradient_plane(g_domain, g_general, g_update, title: str = ""):
    """G_d, G_g and the update as unit directions in the plane spanned by G_d and G_g, their
    norms in the legend (03_prograd). The norms differ by orders of magnitude, so drawn to
    one scale the short vectors would shrink to a dot."""
    vectors = [(_as_array(v), name, colour, width) for v, name, colour, width in (
        (g_domain, "$G_d$ (cross-entropy)", "#d62728", 4.5),
        (g_general, "$G_g$ (KL to zero-shot)", "#777777", 2.5),
        (g_update, "ProGrad update $G$", "#1f77b4", 2.0))]
    e1, e2 = _plane_basis(vectors[1][0], vectors[0][0], vectors[2][0])
    fig, ax = plt.subplots(figsize=(5.8, 3.3))
    gradient_axes(ax, (-1.3, 1.3), (-1.3, 1.3), (-1.25, -1.22))
    handles = []
    for vec, name, colour, width in vectors:
        norm = float(np.linalg.norm(vec))
        x, y = vec @ e1, vec @ e2
        length = float(np.hypot(x, y))
        if length > 0:   # a zero vector has no direction to draw; the legend gives its norm
            ax.annotate("", xy=(x / length, y / length), xytext=(0, 0), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=width, shrinkA=0, shrinkB=0,
                                        mutation_scale=8 + 2 * width, alpha=0.9))
        handles.append(plt.Line2D([], [], color=colour, lw=width, label=f"{name}\nnorm {_norm_text(norm)}"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.05, 0.5), frameon=False,
              title="drawn as unit directions", title_fontsize=9, labelspacing=1.0)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _as_array(vector) -> np.ndarray:
    """A flat float64 array from a tensor (on any device) or an array."""
    if hasattr(vector, "detach"):
        vector = vector.detach().cpu().double().numpy()
    return np.asarray(vector, dtype=float).ravel()


def _plane_basis(first, *others):
    """Two orthonormal axes: along `first` (else the first non-zero of the others), then along
    the part of the next vector orthogonal to it (zeros if every vector is parallel)."""
    candidates = [v for v in (first, *others) if np.linalg.norm(v) > 0]
    if not candidates:
        return np.zeros_like(first), np.zeros_like(first)
    e1 = candidates[0] / np.linalg.norm(candidates[0])
    for v in candidates[1:]:
        rest = v - (v @ e1) * e1
        if np.linalg.norm(rest) > 1e-9 * np.linalg.norm(v):
            return e1, rest / np.linalg.norm(rest)
    return e1, np.zeros_like(e1)


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


REGIME_COLOURS = {"sam": METHODS["sam"].colour, "projected": METHODS["gcscoop"].colour, "erm": METHODS["coop"].colour}


def regimes_over_training(steps: list[dict], title: str = "", betas: tuple[float, float] | None = None):
    """Cosine between SAM and ERM gradients per step, with the thresholds β₁ and β₂ that split
    it into regimes, and the share of each regime per epoch (05_gcscoop). betas = (beta_low,
    beta_up) the run used; by default GCSCoOp's default knobs. Steps whose regime disagrees
    with betas are an error: the lines would not be the run's."""
    if betas is None:
        defaults = METHODS["gcscoop"].knobs()
        betas = (defaults.beta_low, defaults.beta_up)
    low, up = betas
    wrong = [s for s in steps if s["regime"] != _regime_of(s["cos"], low, up)]
    if wrong:
        raise ValueError(f"{len(wrong)} of {len(steps)} steps were not taken with beta = ({low}, {up}) "
                         f"(cos {wrong[0]['cos']:.3f} gave {wrong[0]['regime']!r}): pass the run's betas")
    names = {"sam": "SAM gradient ($c \\geq \\beta_2$)", "projected": "projected ($\\beta_1 < c < \\beta_2$)",
             "erm": "ERM gradient ($c \\leq \\beta_1$)"}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.8, 5.0), sharex=True,
                                      gridspec_kw={"height_ratios": [1.3, 1]})
    cosines = [s["cos"] for s in steps]
    floor = min(min(cosines), low) - 0.05
    top.axhspan(up, 1.05, color=REGIME_COLOURS["sam"], alpha=0.08, lw=0)
    top.axhspan(low if low > 0 else floor, up, color=REGIME_COLOURS["projected"], alpha=0.08, lw=0)
    if low > 0:
        top.axhspan(floor, low, color=REGIME_COLOURS["erm"], alpha=0.08, lw=0)
    beyond = transforms.blended_transform_factory(top.transAxes, top.transData)
    for value, name in ((up, "$\\beta_2$"), (low, "$\\beta_1$")):
        top.axhline(value, color="#333333", lw=1, linestyle="--")
        top.text(1.01, value, f"{name} = {value:g}", transform=beyond, va="center", fontsize=9)
    if low <= 0:
        top.text(1.01, low, "\n\n(no ERM)", transform=beyond, va="center", fontsize=9)
    top.scatter([s["epoch"] + 1 for s in steps], cosines, s=7, c=[REGIME_COLOURS[s["regime"]] for s in steps],
                zorder=3, linewidths=0)
    top.set_ylim(floor, 1.05)
    top.set_ylabel("cos($g_{SAM}$, $g_{ERM}$)")
    stack = None
    for regime in [r for r in REGIMES if r != "erm" or low > 0]:   # beta_low <= 0 turns ERM off
        epochs, share = per_epoch_share(steps, "regime", regime)
        stack = np.zeros(len(epochs)) if stack is None else stack
        bottom.bar(epochs, share, bottom=stack, color=REGIME_COLOURS[regime], width=1.0, label=names[regime])
        stack += np.array(share)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share of steps")
    bottom.set_xlabel("epoch")
    top.set_title(title, fontsize=10)
    return _legend_below(fig, bottom, bottom=0.08)


def _regime_of(cos: float, low: float, up: float) -> str:
    """The regime GCSCoOp's rule picks at this cosine (methods.constrain_sam_gradient)."""
    if cos >= up:
        return "sam"
    return "erm" if cos <= low and low > 0 else "projected"


def base_new_scatter(table: dict, order: list[str], dataset: str = "average", title: str = ""):
    """Each method as a point (base, new) with its seed spread, and grey curves of equal H,
    each labelled with its H (03_prograd, 05_gcscoop, 07_benchmark). No title unless given:
    the caption says what the figure shows."""
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
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def heatmap(values, row_labels, col_labels, title: str = "", fmt: str = "{:.1f}", colorbar_label: str = "",
            signed: bool | None = None):
    """A small annotated heat map (01_zero_shot's templates, 05_gcscoop's sensitivity grid).
    Signed data (changes: 06_protocols, 08_synthesis) get a diverging colour map centred on
    zero, blue above and red below; signed=None decides by whether the values take both signs."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if signed is None:
        signed = bool(finite.size) and finite.min() < 0 < finite.max()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(col_labels), 1.0 + 0.55 * len(row_labels)))
    if signed:
        top = float(np.abs(finite).max()) if finite.size else 1.0
        im = ax.imshow(values, cmap="RdBu", norm=colors.CenteredNorm(vcenter=0.0, halfrange=top or 1.0))
    else:
        im = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(col_labels)), col_labels, fontsize=9, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=9)
    middle = np.nanmean(values) if finite.size else 0.0
    for (i, j), value in np.ndenumerate(values):
        if not np.isfinite(value):
            continue
        dark = abs(value) > 0.6 * top if signed else value < middle
        ax.text(j, i, _cell_text(fmt, value), ha="center", va="center", fontsize=9,
                color="white" if dark else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8).set_label(colorbar_label, fontsize=9)
    fig.tight_layout()
    return fig


def _cell_text(fmt: str, value: float) -> str:
    """A cell's number as `fmt` writes it, except that one which rounds to zero reads 0.0, never
    -0.0 or +0.0 (as reports.signed)."""
    text = fmt.format(value)
    try:
        return fmt.format(0.0).lstrip("+") if float(text) == 0 else text
    except ValueError:   # a format with words or units around the number
        return text


# The method family (intro's method map): each group is a panel of the few-shot figure.
FAMILIES = {"teacher-based": ("prograd", "kgcoop"), "flatness-based": ("sam", "gcscoop"),
            "image-conditioned": ("cocoop",)}


def few_shot_groups(entries: list[str], references: tuple[str, ...] = ("zeroshot", "coop")) -> dict:
    """Entries split into panels of a few lines: one per family of the method map, one for the
    entries of no family (as "other learners"); the references are in every panel."""
    groups = {}
    for family, members in FAMILIES.items():
        if family == "image-conditioned":
            continue   # CoCoOp joins the other learners: one line is not worth a panel
        groups[family] = [e for e in entries if e in members]
    placed = {e for members in groups.values() for e in members} | set(references)
    groups["other learners"] = [e for e in entries if e not in placed]
    shown = [r for r in references if r in entries]
    return {name: shown + members for name, members in groups.items() if members}


def few_shot_curves(stats: dict, entries: list[str], tasks: list[str], label_of, colour_of, title: str = "",
                    groups: dict | None = None):
    """Accuracy over all classes, averaged over `tasks`, against shots (log scale), in the
    style of CoOp's Figure 3: one panel per group of entries (few_shot_groups by default), on
    one y scale, zero-shot CLIP dashed and CoOp in every panel for reference;
    `stats[(entry, "average", shots)]` is a Stat (06_protocols)."""
    groups = groups or few_shot_groups(entries)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.8, 3.2), sharey=True, squeeze=False)
    shots = sorted({k for (_, _, k) in stats})
    for ax, (name, members) in zip(axes[0], groups.items()):
        for entry in members:
            points = [stats[(entry, "average", k)] for k in shots]
            if entry == "zeroshot":
                ax.axhline(points[0].mean, color=colour_of(entry), linestyle="--", linewidth=1.2,
                           label=label_of(entry))
                continue
            means = np.array([p.mean for p in points])
            stds = np.array([p.std for p in points])
            ax.plot(shots, means, marker="o", markersize=3.5, color=colour_of(entry), label=label_of(entry),
                    linewidth=1.6)
            ax.fill_between(shots, means - stds, means + stds, color=colour_of(entry), alpha=0.12, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.minorticks_off()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("shots per class", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"accuracy (%), average of {len(tasks)} tasks" if len(tasks) > 1 else "accuracy (%)",
                          fontsize=9)
    handles, labels = {}, {}
    for ax in axes[0]:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=5, frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
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


def _legend_below(fig, ax, title: str = "", bottom: float = 0.1, columns: int | None = None):
    """One legend for a row of panels, below them (in the figure's lowest `bottom` share), from
    the lines of `ax`, and the title above."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=columns or len(labels), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
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


def training_loss(losses, chance: float | None = None, chance_label: str = "chance", ylabel: str = "loss"):
    """A loss per step, and a dashed line at chance level when given, labelled at its right
    end (09_appendix_tiny_clip: the contrastive loss of a batch of B pairs is ln B at chance)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    ax.plot(np.arange(1, len(losses) + 1), losses, color=METHODS["zeroshot"].colour, lw=1)
    top = float(np.nanmax(losses))
    if chance is not None:
        ax.axhline(chance, color="#333333", lw=1, linestyle="--")
        ax.text(len(losses), chance, f"{chance_label} ({chance:.2f})", ha="right", va="bottom", fontsize=9)
        top = max(top, chance)
    ax.set_ylim(0, 1.15 * top)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# What each method of the book changes in CoOp, and where the book introduces it (intro's method map).
CHANGES = {"prograd": ("the gradient", "drops the part of the\ncross-entropy gradient that\nopposes zero-shot CLIP", 3),
           "kgcoop": ("the loss", "adds the distance of its\nclass text features to the\nhand-written prompt's", 3),
           "sam": ("the gradient", "takes the gradient at the\nworst context nearby", 4),
           "gcscoop": ("the gradient", "keeps, projects or replaces\nSAM's gradient by its\nagreement with the plain one", 5),
           "cocoop": ("the model", "a small network shifts the\ncontext words by a vector\ncomputed from each image", 2)}
BUILT_ON = {"gcscoop": "sam"}   # drawn as an arrow inside a family
FAMILY_AIMS = {"teacher-based": "stay close to zero-shot CLIP", "flatness-based": "prefer flat minima",
               "image-conditioned": "a prompt for each image"}


def method_map():
    """The book's methods as one family (intro): zero-shot CLIP, CoOp on it, and the three
    branches on CoOp, each method with what it changes (the loss, the gradient or the model)
    and its chapter."""
    fig, ax = plt.subplots(figsize=(6.8, 4.9))
    ax.set_xlim(0, 6.8)
    ax.set_ylim(0, 4.9)   # axes units are inches
    ax.axis("off")

    def box(x, y, width, height, method, chapter, changed, how):
        colour = METHODS[method].colour
        ax.add_patch(patches.FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                                            boxstyle="round,pad=0,rounding_size=0.08", facecolor="white",
                                            edgecolor=colour, linewidth=2))
        top = y + height / 2
        ax.text(x, top - 0.08, f"{METHODS[method].label}  (ch. {chapter})", ha="center", va="top", fontsize=9,
                fontweight="bold", color="#222222")
        if changed:
            ax.text(x, top - 0.3, f"changes {changed}", ha="center", va="top", fontsize=9, style="italic",
                    color=colour)
        ax.text(x, top - (0.5 if changed else 0.3), how, ha="center", va="top", fontsize=9, color="#333333",
                linespacing=1.15)

    def arrow(start, end):
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color="#666666", lw=1.2,
                                                              shrinkA=0, shrinkB=0))

    box(3.4, 0.35, 3.8, 0.6, "zeroshot", 1, "", 'a hand-written prompt: "a photo of a {class}."')
    box(3.4, 1.3, 3.8, 0.75, "coop", 2, "the prompt", "learns its context words by cross-entropy")
    arrow((3.4, 0.65), (3.4, 0.925))
    height, gap = 1.05, 0.12
    for family, x in zip(FAMILIES, (1.15, 3.4, 5.65)):
        ax.text(x, 2.3, family, ha="center", va="center", fontsize=9.5, fontweight="bold")
        ax.text(x, 2.1, FAMILY_AIMS[family], ha="center", va="center", fontsize=9, style="italic",
                color="#444444")
        arrow((3.4 + (x - 3.4) * 0.45, 1.675), (x, 1.98))
        for k, method in enumerate(FAMILIES[family]):
            y = 2.5 + height / 2 + k * (height + gap)
            box(x, y, 2.1, height, method, *CHANGES[method][::-1][:1], *CHANGES[method][:2])
            if BUILT_ON.get(method) == FAMILIES[family][k - 1]:
                arrow((x, y - height / 2 - gap), (x, y - height / 2))
    fig.subplots_adjust(0, 0, 1, 1)
    return fig
