"""The book's figures draw what their captions say: directions at unit length, thresholds,
a zero-centred scale for changes, a few lines per panel, a chance line, the method map."""
import importlib.util
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import colors  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from gcscoop_lib import plots  # noqa: E402
from gcscoop_lib.methods import METHODS, REGIMES  # noqa: E402
from gcscoop_lib.reports import Stat  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def arrows(fig):
    return [a for a in fig.axes[0].texts if isinstance(a, Annotation)]


def test_the_projection_figure_draws_unit_directions_and_gives_the_norms():
    # ProGrad's case: |G_g| a hundredth of |G_d|, which one common scale shrinks to a dot
    g_general = torch.tensor([0.01, 0.0, 0.0])
    g_domain = torch.tensor([-0.4, 1.2, 0.3])
    g_update = g_domain - (g_domain @ g_general) / (g_general @ g_general) * g_general
    fig = plots.gradient_plane(g_domain, g_general, g_update)
    tips = np.array([a.xy for a in arrows(fig)])
    assert len(tips) == 3 and np.allclose(np.hypot(*tips.T), 1.0)
    assert np.allclose(tips[1], (1, 0))                          # G_g along the first axis
    assert tips[2][0] == pytest.approx(0, abs=1e-6)              # the update is orthogonal to it
    assert np.linalg.norm(tips[0] - tips[2]) > 0.2               # G_d and the update are told apart
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for text, vector in zip(legend, (g_domain, g_general, g_update)):
        assert f"norm {vector.norm().item():.3g}" in text
    assert not [t for t in fig.axes[0].texts if "G_d" in t.get_text() or "update" in t.get_text()], \
        "labels beside the arrows overprint where directions are close: the legend names them"


def test_a_zero_vector_has_no_arrow_and_a_norm_of_exactly_zero():
    g_domain = torch.tensor([0.3, 0.4])
    fig = plots.gradient_plane(g_domain, torch.zeros(2), g_domain)
    assert len(arrows(fig)) == 2
    assert fig.axes[0].get_legend().get_texts()[1].get_text().endswith("norm 0")


def test_signed_values_get_a_diverging_scale_centred_on_zero():
    fig = plots.heatmap([[2.0, -0.5], [-0.04, 6.0]], ["a", "b"], ["x", "y"], fmt="{:+.1f}")
    image = fig.axes[0].images[0]
    assert isinstance(image.norm, colors.CenteredNorm) and image.norm.vcenter == 0
    assert image.norm.vmin == -6.0 and image.norm.vmax == 6.0
    assert image.get_cmap().name == "RdBu"
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert "-0.0" not in cells and "0.0" in cells and "+6.0" in cells


def test_one_signed_data_set_keeps_its_scale_when_every_value_is_positive_if_asked():
    values = [[70.0, 80.0], [75.0, 90.0]]
    assert not isinstance(plots.heatmap(values, ["a", "b"], ["x", "y"]).axes[0].images[0].norm, colors.CenteredNorm)
    forced = plots.heatmap(values, ["a", "b"], ["x", "y"], signed=True).axes[0].images[0]
    assert isinstance(forced.norm, colors.CenteredNorm) and forced.norm.vmin == -90.0
    mixed = plots.heatmap([[-1.0, 1.0]], ["a"], ["x", "y"], signed=False).axes[0].images[0]
    assert mixed.get_cmap().name == "viridis"


def gcscoop_steps(low=0.5, up=0.8):
    cosines = [0.95, 0.9, 0.7, 0.6, 0.3, 0.85, 0.99, 0.81]
    return [{"epoch": i // 2, "cos": c, "regime": "sam" if c >= up else ("erm" if c <= low else "projected")}
            for i, c in enumerate(cosines)]


def test_the_regimes_figure_draws_the_thresholds_and_keeps_its_legend_off_the_bars():
    fig = plots.regimes_over_training(gcscoop_steps(0.4, 0.8), betas=(0.4, 0.8))
    top, bottom = fig.axes[:2]
    levels = sorted(line.get_ydata()[0] for line in top.get_lines() if line.get_linestyle() == "--")
    assert levels == [0.4, 0.8]
    labels = [t.get_text() for t in top.texts]
    assert any("beta_1" in t and "0.4" in t for t in labels) and any("beta_2" in t and "0.8" in t for t in labels)
    assert bottom.get_legend() is None and top.get_legend() is None and len(fig.legends) == 1
    legend_box = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert legend_box.y1 <= bottom.get_window_extent().y0, "the legend overlaps the bars"
    assert len(fig.legends[0].get_texts()) == len(REGIMES)


def test_the_regimes_figure_refuses_thresholds_its_steps_were_not_taken_with():
    with pytest.raises(ValueError, match="pass the run's betas"):
        plots.regimes_over_training(gcscoop_steps(0.5, 0.8), betas=(0.5, 0.9))
    plots.regimes_over_training(gcscoop_steps())   # the default knobs: (0.5, 0.8)


def few_shot_stats(entries):
    shots = (1, 2, 4, 8, 16)
    return {(e, "average", k): Stat(50.0 + i + k, 1.0) for i, e in enumerate(entries) for k in shots}


def test_the_few_shot_figure_has_a_few_lines_per_panel_and_every_entry_once_at_least():
    entries = ["zeroshot", "linear_probe", "coop", "coop_aug", "cocoop", "prograd", "kgcoop", "sam", "gcscoop"]
    labels = {"coop_aug": "CoOp + aug.", "linear_probe": "Linear probe"}

    def label(entry):
        return labels[entry] if entry in labels else METHODS[entry].label

    fig = plots.few_shot_curves(few_shot_stats(entries), entries, ["a", "b"], label,
                                lambda e: METHODS[e].colour if e in METHODS else "#8c564b")
    panels = [ax for ax in fig.axes if ax.get_lines()]
    assert len(panels) >= 2
    drawn = [{line.get_label() for line in ax.get_lines()} for ax in panels]
    assert max(len(d) for d in drawn) <= 5
    assert all({"Zero-shot CLIP", "CoOp"} <= d for d in drawn)
    assert set().union(*drawn) == {label(e) for e in entries}
    assert {t.get_text() for t in fig.legends[0].get_texts()} == set().union(*drawn)
    groups = plots.few_shot_groups(entries)
    assert groups["flatness-based"] == ["zeroshot", "coop", "sam", "gcscoop"]


def test_figures_titled_by_their_caption_have_no_title_of_their_own():
    table = {m: {"average": {"base": (70.0 + i, 1.0), "new": (70.0 - i, 1.0)}} for i, m in enumerate(METHODS)}
    assert plots.base_new_scatter(table, list(METHODS)).axes[0].get_title() == ""


def test_the_loss_curve_draws_its_chance_level():
    fig = plots.training_loss(np.linspace(5.0, 1.0, 50), chance=np.log(128))
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(np.log(128))
    assert fig.axes[0].get_ylim()[1] > np.log(128)
    assert len(plots.training_loss([3.0, 2.0]).axes[0].get_lines()) == 1


def test_figures_are_the_same_on_every_drawing():
    def png(fig):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
        return buffer.getvalue()

    assert png(plots.regimes_over_training(gcscoop_steps())) == png(plots.regimes_over_training(gcscoop_steps()))


def test_the_method_map_names_every_method_and_what_it_changes():
    texts = " ".join(t.get_text() for t in plots.method_map().axes[0].texts)
    for method in METHODS:
        assert METHODS[method].label in texts, method
    for family, members in plots.FAMILIES.items():
        assert family in texts
        for method in members:
            assert f"changes {plots.CHANGES[method][0]}" in texts
    assert {plots.CHANGES[m][0] for m in plots.CHANGES} == {"the loss", "the gradient", "the model"}


def test_the_committed_method_map_is_what_the_script_draws_now(tmp_path):
    spec = importlib.util.spec_from_file_location("method_map", ROOT / "scripts" / "method_map.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    first, second = script.write(tmp_path / "a.svg"), script.write(tmp_path / "b.svg")
    assert first.read_bytes() == second.read_bytes(), "the SVG differs from one drawing to the next"
    assert first.read_bytes() == (ROOT / "book" / "images" / "method_map.svg").read_bytes(), \
        "book/images/method_map.svg is out of date: run python scripts/method_map.py"
