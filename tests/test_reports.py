"""Tables of run records: spread over seeds, the papers' average row, Markdown, CSV, and the
numbers handed to the chapters' prose."""
import sys
import warnings

import numpy as np
import pytest

from gcscoop_lib import evaluation, reports


def test_average_h_is_h_of_averages():
    records = [{"method": "m", "dataset": d, "seed": s, "base": b, "new": n, "H": evaluation.harmonic_mean(b, n)}
               for d, b, n in (("x", 90.0, 10.0), ("y", 50.0, 50.0)) for s in (1, 2)]
    avg = reports.summarise(records)["m"]["average"]
    assert avg["base"].mean == 70.0 and avg["new"].mean == 30.0
    assert avg["H"].mean == pytest.approx(42.0) and avg["seeds"] == 2


def test_identical_values_have_exactly_zero_spread():
    assert reports.mean_std([58.5, 58.5, 58.5]) == reports.Stat(58.5, 0.0) == (58.5, 0.0)
    assert reports.mean_pm_std(*reports.mean_std([1 / 3] * 3)) == "0.3"


def test_the_spread_is_the_sample_standard_deviation():
    stat = reports.mean_std([1.0, 2.0, 6.0])
    assert stat.mean == 3.0 and stat.std == pytest.approx(np.std([1.0, 2.0, 6.0], ddof=1))
    assert reports.mean_pm_std(*stat) == "3.0 ± 2.6"


def test_ranking_shows_ties_at_the_printed_precision():
    assert reports.ranking({"zeroshot": 71.70, "coop": 71.66, "kgcoop": 77.0}) == \
        "KgCoOp 77.0 > Zero-shot CLIP 71.7 ≈ CoOp 71.7"


def test_metric_table_has_a_row_per_method_and_a_column_per_task():
    table = {"zeroshot": {d: {"new": (70.0, 0.0)} for d in ("a", "b", "average")},
             "coop": {"a": {"new": (60.0, 1.25)}, "average": {"new": (61.0, 0.5)}}}
    lines = reports.metric_table(table, ["zeroshot", "coop", "sam"], ["a", "b"], "new").splitlines()
    assert lines[0] == "| method | a | b | average |"
    assert lines[2:] == ["| Zero-shot CLIP | 70.0 | 70.0 | 70.0 |", "| CoOp | 60.0 ± 1.2 | – | 61.0 ± 0.5 |"]


def test_changes_from_zero_shot_are_differences_of_the_averages():
    table = {"zeroshot": {"average": {"base": (70.0, 0.0), "new": (72.0, 0.0), "H": (71.0, 0.0)}},
             "coop": {"average": {"base": (81.0, 1.0), "new": (65.5, 1.0), "H": (72.5, 0.2)}}}
    assert reports.changes_from(table, ["zeroshot", "coop"]) == {"coop": {"base": 11.0, "new": -6.5, "H": 1.5}}
    assert reports.changes_table(table, ["zeroshot", "coop"]).splitlines()[-1] == "| CoOp | +11.0 | -6.5 | +1.5 |"


def test_a_change_in_a_table_is_the_difference_of_the_means_it_prints():
    # 70.3 to 81.2 is 10.9 on the page, although the unrounded means differ by 10.98
    table = {"zeroshot": {"average": {"base": (70.26, 0.0), "new": (72.0, 0.0), "H": (71.04, 0.0)}},
             "coop": {"average": {"base": (81.24, 1.0), "new": (65.5, 1.0), "H": (71.01, 0.2)}}}
    assert reports.changes_from(table, ["zeroshot", "coop"])["coop"]["base"] == pytest.approx(10.98)
    assert reports.changes_from(table, ["zeroshot", "coop"], shown_at=1)["coop"]["base"] == 10.9
    assert reports.changes_table(table, ["zeroshot", "coop"]).splitlines()[-1] == "| CoOp | +10.9 | -6.5 | 0.0 |"


def test_a_shown_difference_is_taken_between_the_rounded_values():
    assert reports.shown_difference(81.24, 70.26) == 10.9          # 81.2 - 70.3, not round(10.98) = 11.0
    assert reports.shown_difference(82.69, 69.34) == 13.4          # 82.7 - 69.3, not 13.35 printed as 13.3
    assert reports.shown_difference(3.96, 0.0) == 4.0
    assert reports.shown_difference(1.234, 1.0, decimals=2) == 0.23
    assert reports.shown_difference(76.04, 76.0) == 0.0
    for zero in (reports.shown_difference(75.96, 76.04), reports.shown_difference(-0.01, 0.01), reports.shown(-0.04)):
        assert zero == 0.0 and str(zero) == "0.0"              # never -0.0
    assert reports.shown(-0.06) == -0.1 and reports.shown(2.375, 2) == 2.38   # 2.375 is exact in binary


def test_a_signed_number_never_prints_minus_zero():
    assert [reports.signed(x, decimals=2) for x in (-0.004, 0.004, -0.006, 1.5)] == ["0.00", "0.00", "-0.01", "+1.50"]
    assert reports.signed(-0.4, decimals=0) == "0" and reports.signed(-0.6, decimals=0) == "-1"
    assert reports.signed(reports.shown_difference(70.04, 70.01)) == "0.0"


def test_markdown_and_csv_tables_of_a_summary():
    records = [{"method": m, "dataset": "x", "seed": s, "base": b + s, "new": 60.0, "H": 65.0, "seconds": 2.0}
               for m, b in (("coop", 80.0), ("sam", 81.0)) for s in (1, 2)]
    table = reports.summarise(records)
    markdown = reports.markdown_table(table, ["coop", "sam"], ["x"]).splitlines()
    assert markdown[0] == "| method | x base | x new | x H |" and markdown[2] == "| CoOp | 81.5 ± 0.7 | 60.0 | 65.0 |"
    csv = reports.csv_table(table, ["coop", "sam"], ["x"]).splitlines()
    assert csv[1] == "coop,x,81.50,0.71,60.00,0.00,65.00,0.00,2" and len(csv) == 5
    report = reports.markdown_report(table, ["coop", "sam"], ["x"])
    assert report.startswith("## Average over x") and "## x" in report


def test_glued_numbers_are_rounded_and_other_values_kept(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: value}))
    reports.glue_values(h=np.float64(75.4567), n=np.int64(4), word="GCSCoOp")
    reports.glue_values(digits=2, loss=0.04999)
    assert glued == {"h": 75.5, "n": 4, "word": "GCSCoOp", "loss": 0.05}
    assert type(glued["h"]) is float and type(glued["n"]) is int


def test_without_myst_nb_gluing_displays_nothing_and_raises_nothing(monkeypatch, capsys):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append(a))
    monkeypatch.setattr(IPython.display, "publish_display_data", lambda *a, **k: shown.append(a))
    monkeypatch.setitem(sys.modules, "myst_nb", None)   # as in Colab, where myst-nb is not installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reports.glue_values(h=75.4, word="GCSCoOp") is None
    assert shown == [] and capsys.readouterr() == ("", "")


def test_paired_intervals_pair_the_papers_average_by_seed():
    from scipy import stats

    records = [{"method": m, "seed": s, "dataset": d, "base": 70.0 + s + (gap if m == "a" else 0.0), "new": 60.0}
               for m in ("a", "b") for s, gap in ((1, 1.0), (2, 3.0), (3, -1.0)) for d in ("x", "y")]
    assert reports.seed_averages(records, "b", "base") == {1: 71.0, 2: 72.0, 3: 73.0}
    d = reports.paired_interval(records, "a", "b", "base")
    half = stats.t.ppf(0.975, 2) * 2.0 / 3 ** 0.5
    assert (d["mean"], d["ahead"], d["seeds"]) == (1.0, 2, 3)
    assert (d["low"], d["high"]) == pytest.approx((1.0 - half, 1.0 + half))
    assert reports.interval_cell(d) == f"+1.0 [{1 - half:+.1f}, {1 + half:+.1f}], 2/3"
    with pytest.raises(ValueError, match="at least two seeds"):
        reports.paired_interval(records[:1] + records[6:7], "a", "b")


def test_a_difference_that_rounds_to_zero_has_no_sign():
    assert [reports.signed(x) for x in (-0.04, 0.04, 0.0, -0.06, 1.25)] == ["0.0", "0.0", "0.0", "-0.1", "+1.2"]
    assert reports.interval_cell({"mean": 1.4, "low": -0.04, "high": 2.9, "ahead": 8, "seeds": 10}) \
        == "+1.4 [0.0, +2.9], 8/10"
