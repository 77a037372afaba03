"""Tables of run records: mean and spread over seeds, the papers' average row, Markdown and
CSV (02_coop to 07_benchmark, and the command line)."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import json
import math
import numbers
import statistics
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from .evaluation import harmonic_mean
from .methods import METHODS


def glue_values(digits: int = 1, **values) -> None:
    """Hand numbers to the chapter's prose (myst-nb glue, 01_zero_shot onwards), floats rounded to
    `digits` so that the stored outputs read the same on every processor.

    Only the book's build reads glued values (scripts/fill_prose.py writes them into the
    Markdown); where myst-nb is not installed (a chapter opened in Colab) this does nothing.
    """
    try:
        from myst_nb import glue
    except ImportError:
        return
    for name, value in values.items():
        if isinstance(value, numbers.Integral):
            value = int(value)
        elif isinstance(value, numbers.Real):
            value = round(float(value), digits)
        glue(name, value, display=False)


class Stat(NamedTuple):
    """A mean over seeds and its sample standard deviation."""

    mean: float
    std: float


def mean_std(values: list[float]) -> Stat:
    """Mean and sample standard deviation (0 for a single value)."""
    if min(values) == max(values):   # identical values (zero-shot over seeds), not their rounded mean
        return Stat(values[0], 0.0)
    m = sum(values) / len(values)
    return Stat(m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)))


def label(method: str) -> str:
    """A method's name as tables and figures print it."""
    return METHODS[method].label if method in METHODS else method


def mean_pm_std(mean: float, std: float) -> str:
    """'mean ± std' to one decimal; a spread of exactly zero (zero-shot across seeds) is left out."""
    return f"{mean:.1f}" if std == 0 else f"{mean:.1f} ± {std:.1f}"


def ranking(scores: dict) -> str:
    """Methods by score, best first, as 'A 75.5 > B 75.2'; '≈' where the one-decimal values are equal (07_benchmark)."""
    ordered = sorted(scores.items(), key=lambda kv: -kv[1])
    text = f"{label(ordered[0][0])} {ordered[0][1]:.1f}"
    for (_, before), (method, score) in zip(ordered, ordered[1:]):
        text += f" {'≈' if f'{before:.1f}' == f'{score:.1f}' else '>'} {label(method)} {score:.1f}"
    return text


def summarise(records: list[dict]) -> dict:
    """Aggregate run records into {method: {dataset or 'average': stats}}.

    Per dataset: mean ± std over seeds of base, new and H. The average row follows the
    papers: average base and average new over datasets, then H of those two averages.
    Its std is over seeds of the per-seed dataset averages. Runs without new classes (the
    few-shot protocol) have base alone: their accuracy over all classes.
    """
    by = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by[r["method"]][r["dataset"]][r["seed"]] = r
    table = {}
    for method, per_dataset in by.items():
        rows = {}
        halves = ("base", "new") if all(r["new"] is not None for r in records if r["method"] == method) \
            else ("base",)
        metrics = halves + (("H",) if "new" in halves else ())
        for dataset, per_seed in sorted(per_dataset.items()):
            runs = list(per_seed.values())
            rows[dataset] = {k: mean_std([r[k] for r in runs]) for k in metrics}
            rows[dataset]["seconds"] = sum(r.get("seconds", 0.0) for r in runs) / len(runs)
            rows[dataset]["seeds"] = len(runs)
        datasets = sorted(per_dataset)
        seeds = sorted(set.intersection(*(set(per_dataset[d]) for d in datasets)))
        if seeds:
            avg = {}
            for k in halves:
                avg[k] = mean_std([sum(per_dataset[d][s][k] for d in datasets) / len(datasets) for s in seeds])
            if "H" in metrics:
                per_seed_h = [harmonic_mean(sum(per_dataset[d][s]["base"] for d in datasets) / len(datasets),
                                            sum(per_dataset[d][s]["new"] for d in datasets) / len(datasets))
                              for s in seeds]
                avg["H"] = Stat(harmonic_mean(avg["base"].mean, avg["new"].mean), mean_std(per_seed_h).std)
            avg["seconds"] = sum(rows[d]["seconds"] for d in datasets) / len(datasets)
            avg["seeds"] = len(seeds)
            rows["average"] = avg
        table[method] = rows
    return table


def markdown(header: list[str], rows: list[list]) -> str:
    """A Markdown table from a header and rows of cells (01_zero_shot onwards)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def average_scores(scores: list[dict]) -> dict:
    """The papers' average of per-task scores: mean base, mean new, and H of those two."""
    base = sum(s["base"] for s in scores) / len(scores)
    new = sum(s["new"] for s in scores) / len(scores)
    return {"base": base, "new": new, "H": harmonic_mean(base, new)}


def published(protocol: str) -> dict:
    """The papers' numbers for a protocol, with their sources (gcscoop_lib/published.json)."""
    tables = json.loads((Path(__file__).parent / "published.json").read_text())
    if protocol not in tables or protocol == "about":
        raise ValueError(f"no published numbers for {protocol!r}: choose one of "
                         f"{sorted(k for k in tables if k != 'about')}")
    return tables[protocol]


def published_table(protocol: str = "base_to_new") -> str:
    """The papers' base-to-new ledger as Markdown: numbers, recipe and cited source per row (07_benchmark)."""
    table = published(protocol)

    def cited(row):
        return f"{row['source']} {{cite:p}}`{row['cite']}`" if row.get("cite") else row["source"]

    rows = [[r.get("label", label(m)), *(f"{r[k]:.2f}" for k in table["columns"]), r["recipe"], cited(r)]
            for m, r in table["rows"].items()]
    rows += [[label(r["method"]), *(f"{r[k]:.1f}" if k in r else "–" for k in table["columns"]), r["recipe"],
              cited(r)] for r in table.get("also", [])]
    return markdown(["method", *table["columns"], "recipe", "source"], rows)


CALIBRATED = ("coop", "prograd", "kgcoop")   # the baselines the embedded world was calibrated on


def papers_comparison(table: dict, order: list[str]) -> str:
    """Each method's change from zero-shot CLIP in base / new / H points, ours beside the
    papers' (published.json), and whether the world was calibrated on it or it was held out
    (07_benchmark, results/benchmark.md)."""
    papers = published("base_to_new")["rows"]
    ours = changes_from(table, order, shown_at=1)
    rows = []
    for method in order:
        if method == "zeroshot" or method not in ours:
            continue
        theirs = papers.get(method)
        cited = " / ".join(signed(published_change(papers, method, k)) for k in ("base", "new", "H")) \
            if theirs else "–"
        rows.append([label(method), cited, " / ".join(signed(ours[method][k]) for k in ("base", "new", "H")),
                     "calibrated on" if method in CALIBRATED else "held out"])
    return markdown(["method", "papers: base / new / H", "this benchmark", "the world was"], rows)


def markdown_table(table: dict, order: list[str], datasets: list[str] | None = None) -> str:
    """Base / new / H (mean ± std) per method, one block of columns per dataset and the average."""
    datasets = datasets or ["average"]
    head = "| method | " + " | ".join(f"{d} base | {d} new | {d} H" for d in datasets) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(datasets))]
    for method in order:
        if method not in table:
            continue
        cells = []
        for d in datasets:
            row = table[method].get(d)
            cells += [mean_pm_std(*row[k]) if row else "–" for k in ("base", "new", "H")]
        lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(table: dict, order: list[str], datasets: list[str], metric: str) -> str:
    """One metric (base, new or H; mean ± std) per method and task, then the average (02_coop to 05_gcscoop)."""
    columns = datasets + ["average"]
    lines = ["| method | " + " | ".join(columns) + " |", "|" + "---|" * (1 + len(columns))]
    for method in order:
        if method in table:
            cells = [mean_pm_std(*table[method][d][metric]) if d in table[method] else "–" for d in columns]
            lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def changes_from(table: dict, order: list[str], reference: str = "zeroshot",
                 dataset: str = "average", shown_at: int | None = None) -> dict:
    """Each method's change of base, new and H from the reference method's (08_synthesis);
    shown_at=1 takes it between the means as the tables print them, to one decimal."""
    ref = table[reference][dataset]

    def change(a, b):
        return a - b if shown_at is None else shown_difference(a, b, shown_at)

    return {m: {k: change(table[m][dataset][k][0], ref[k][0]) for k in ("base", "new", "H")}
            for m in order if m != reference and m in table}


def changes_table(table: dict, order: list[str], reference: str = "zeroshot") -> str:
    """Markdown: each method's average base / new / H minus the reference's, in points, from
    the means as the tables print them (08_synthesis)."""
    lines = ["| method | base | new | H |", "|---|---|---|---|"]
    for method, change in changes_from(table, order, reference, shown_at=1).items():
        lines.append(f"| {label(method)} | " + " | ".join(signed(change[k]) for k in ("base", "new", "H")) + " |")
    return "\n".join(lines)


def markdown_report(table: dict, order: list[str], datasets: list[str], heading: str = "##") -> str:
    """The average table, then one table per dataset, as Markdown (02_coop to 07_benchmark, and the CLI).

    heading="" writes bold titles instead of headings (for notebook outputs).
    """
    def title(text):
        return f"{heading} {text}" if heading else f"**{text}**"

    blocks = [title("Average over " + ", ".join(datasets)), "", markdown_table(table, order), ""]
    for dataset in datasets:
        blocks += [title(dataset), "", markdown_table(table, order, [dataset]), ""]
    return "\n".join(blocks)


def csv_table(table: dict, order: list[str], datasets: list[str]) -> str:
    """The summary table as CSV: one row per method and dataset (and the average)."""
    lines = ["method,dataset,base,base_std,new,new_std,H,H_std,seeds"]
    for method in order:
        for dataset in datasets + ["average"]:
            row = table.get(method, {}).get(dataset)
            if row:
                values = [f"{row[k][i]:.2f}" for k in ("base", "new", "H") for i in (0, 1)]
                lines.append(",".join([method, dataset, *values, str(row["seeds"])]))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the other protocols (06_protocols)
def protocol_stats(rows: list[dict], by: tuple[str, ...], value: str = "acc") -> dict:
    """Rows of a protocol summarised: for each combination of the `by` fields, the mean over
    the rows' other fields (tasks, styles) per seed, then mean ± std over seeds."""
    per_seed = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per_seed[tuple(r[k] for k in by)][r["seed"]].append(r[value])
    return {key: mean_std([sum(v) / len(v) for _, v in sorted(seeds.items())]) for key, seeds in per_seed.items()}


def paired_difference(rows: list[dict], a: str, b: str, match: tuple[str, ...], value: str = "acc") -> dict:
    """Method a minus method b on the same task, seed and setting (`match` names the fields that
    pair them, the seed among them): the mean over seeds of the per-seed average difference,
    its std over seeds, and on how many of the paired cells a is ahead, level and behind."""
    theirs = [r for r in rows if r["method"] == b]
    index = {tuple(r[k] for k in match): r[value] for r in theirs}
    if len(index) < len(theirs):
        raise ValueError(f"{b}'s rows are not told apart by {', '.join(match)}: pair on more fields")
    diffs = [(r["seed"], r[value] - index[key]) for r in rows if r["method"] == a
             and (key := tuple(r[k] for k in match)) in index]
    if not diffs:
        raise ValueError(f"no {a} and {b} rows share their {', '.join(match)}")
    per_seed = defaultdict(list)
    for seed, d in diffs:
        per_seed[seed].append(d)
    stat = mean_std([sum(v) / len(v) for v in per_seed.values()])
    return {"mean": stat.mean, "std": stat.std, "ahead": sum(d > 0 for _, d in diffs),
            "level": sum(d == 0 for _, d in diffs), "behind": sum(d < 0 for _, d in diffs), "cells": len(diffs)}


def few_shot_table(rows: list[dict], entries: list[str], label_of) -> str:
    """Accuracy over all classes (average over tasks, mean ± std over seeds) per entry and shots."""
    stats = protocol_stats(rows, ("method", "shots"))
    shots = sorted({r["shots"] for r in rows})
    body = [[label_of(e)] + [mean_pm_std(*stats[(e, k)]) for k in shots] for e in entries if (e, shots[0]) in stats]
    return markdown(["method"] + [f"{k} shot{'s' * (k > 1)}" for k in shots], body)


def domains_table(rows: list[dict], entries: list[str], label_of) -> str:
    """Source accuracy, each target style's (over the tasks it is a target of) and the target
    average, per entry (mean ± std over seeds)."""
    styles = list(dict.fromkeys(r["style"] for r in rows))
    source = protocol_stats([r for r in rows if r["source"]], ("method",))
    targets = [r for r in rows if not r["source"]]
    by_style = protocol_stats(targets, ("method", "style"))
    average = protocol_stats(targets, ("method",))
    body = [[label_of(e), mean_pm_std(*source[(e,)])] + [mean_pm_std(*by_style[(e, s)]) for s in styles]
            + [mean_pm_std(*average[(e,)])] for e in entries if (e,) in source]
    return markdown(["method", "source"] + styles + ["target average"], body)


def transfer_table(rows: list[dict], entries: list[str], label_of) -> str:
    """Source accuracy (each task on itself) and target average (each task's context on the
    other tasks) per entry, mean ± std over seeds; zero-shot CLIP, which has no source, has
    its accuracy on every task in both."""
    def stat(kept):
        return protocol_stats(kept, ("method",))

    own = stat([r for r in rows if r["source"] in (r["target"], "none")])
    other = stat([r for r in rows if r["source"] != r["target"]])   # zero-shot's rows count as both
    body = [[label_of(e), mean_pm_std(*own[(e,)]), mean_pm_std(*other[(e,)]) if (e,) in other else "–"]
            for e in entries if (e,) in own]
    return markdown(["method", "source (own task)", "target average (other tasks)"], body)


def transfer_matrix(rows: list[dict], entry: str) -> tuple[list[str], list[list[float]]]:
    """One entry's mean accuracy over seeds, sources x targets (tasks in their order)."""
    tasks = list(dict.fromkeys(r["target"] for r in rows))
    stats = protocol_stats([r for r in rows if r["method"] == entry], ("source", "target"))
    return tasks, [[stats[(s, t)].mean if (s, t) in stats else float("nan") for t in tasks] for s in tasks]


def saliency_table(rows: list[dict], entries: list[str], label_of) -> str:
    """The share of saliency inside the object (%) per entry and task, and the average, next to
    the object's share of the image."""
    tasks = list(dict.fromkeys(r["dataset"] for r in rows))
    share = protocol_stats(rows, ("method", "dataset"), value="share")
    average = protocol_stats(rows, ("method",), value="share")
    area = protocol_stats(rows, ("dataset",), value="area")
    body = [["object's share of the image"] + [f"{area[(t,)].mean:.1f}" for t in tasks]
            + [f"{sum(area[(t,)].mean for t in tasks) / len(tasks):.1f}"]]
    body += [[label_of(e)] + [mean_pm_std(*share[(e, t)]) for t in tasks] + [mean_pm_std(*average[(e,)])]
             for e in entries if (e,) in average]
    return markdown(["", *tasks, "average"], body)


def stopping_table(by_rule: dict, entries: list[str], label_of) -> str:
    """H averaged over the tasks (mean ± std over seeds) at the epoch each stopping rule picks,
    with the median epoch it picks, per entry (04_sam)."""
    names = {"last": "last epoch", "val_H": "best validation H", "val_base": "best validation base"}
    tables = {rule: summarise(records) for rule, records in by_rule.items()}
    body = []
    for e in entries:
        cells = []
        for rule, records in by_rule.items():
            epochs = [r["epoch"] for r in records if r["method"] == e]
            h = tables[rule][e]["average"]["H"]
            cells.append(f"{mean_pm_std(*h)} (epoch {statistics.median_low(epochs)})")
        body.append([label_of(e)] + cells)
    return markdown(["method"] + [names.get(rule, rule) for rule in by_rule], body)


def paired_table(rows: list[dict], pairs: list[tuple[str, str]], setting: str, match: tuple[str, ...], label_of,
                 value: str = "acc", heading=str) -> str:
    """Paired differences a − b per value of `setting` (shots, say): mean ± std over seeds of
    the per-seed average, and on how many paired cells a is ahead (06_protocols)."""
    values = list(dict.fromkeys(r[setting] for r in rows))
    body = []
    for a, b in pairs:
        cells = []
        for v in values:
            d = paired_difference([r for r in rows if r[setting] == v], a, b, match, value)
            cells.append(f"{signed(d['mean'])} ± {d['std']:.1f} ({d['ahead']}/{d['cells']})")
        body.append([f"{label_of(a)} − {label_of(b)}"] + cells)
    return markdown(["difference"] + [heading(v) for v in values], body)


def seed_averages(records: list[dict], method: str, metric: str = "H") -> dict:
    """A method's average over the tasks for each seed, the papers' way: base and new averaged
    over the tasks, H of those two (07_benchmark)."""
    per_seed = defaultdict(list)
    for r in records:
        if r["method"] == method:
            per_seed[r["seed"]].append(r)
    out = {}
    for seed, runs in per_seed.items():
        base = sum(r["base"] for r in runs) / len(runs)
        new = sum(r["new"] for r in runs) / len(runs)
        out[seed] = {"base": base, "new": new, "H": harmonic_mean(base, new)}[metric]
    return out


def paired_interval(records: list[dict], a: str, b: str, metric: str = "H", level: float = 0.95) -> dict:
    """a − b in the average over tasks, paired by seed: the mean difference, its t-interval at
    `level` over the seeds, and on how many seeds a is ahead (07_benchmark)."""
    from scipy import stats

    mine, theirs = seed_averages(records, a, metric), seed_averages(records, b, metric)
    seeds = sorted(set(mine) & set(theirs))
    if len(seeds) < 2:
        raise ValueError(f"a paired interval needs at least two seeds that {a} and {b} share, got {seeds}")
    diffs = [mine[s] - theirs[s] for s in seeds]
    mean, std = mean_std(diffs)
    half = stats.t.ppf(0.5 + level / 2, len(diffs) - 1) * std / math.sqrt(len(diffs))
    return {"mean": mean, "low": mean - half, "high": mean + half, "ahead": sum(d > 0 for d in diffs),
            "seeds": len(diffs)}


def shown(value: float, decimals: int = 1) -> float:
    """A number as a page prints it at `decimals` places (07_benchmark); never -0.0."""
    return round(value, decimals) + 0.0   # -0.0 + 0.0 is +0.0


def shown_difference(a: float, b: float, decimals: int = 1, shown_at: int | None = None) -> float:
    """a − b as a reader computes it from the printed values: each as printed with `shown_at`
    places (default `decimals`), subtracted exactly, the result rounded half up to `decimals`
    places; so "70.3 to 81.2" is a change of 10.9, never 11.0, and "69.34 to 82.69" one of
    13.4 (02_coop onwards)."""
    places = decimals if shown_at is None else shown_at
    exact = Decimal(f"{a:.{places}f}") - Decimal(f"{b:.{places}f}")
    return float(exact.quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)) + 0.0   # never -0.0


PUBLISHED_DECIMALS = 2   # the papers print their accuracies with two decimals


def published_change(rows: dict, method: str, metric: str) -> float:
    """A method's published change from zero-shot CLIP in one metric, from the two-decimal
    values the papers print (07_benchmark, 09_appendix_tiny_clip)."""
    return shown_difference(rows[method][metric], rows["zeroshot"][metric], 1, shown_at=PUBLISHED_DECIMALS)


def signed(value: float, decimals: int = 1) -> str:
    """A difference with its sign; one that rounds to zero is '0.0', never '-0.0' or '+0.0'
    (04_sam, 07_benchmark)."""
    text = f"{value:+.{decimals}f}"
    return text[1:] if float(text) == 0 else text


def interval_cell(d: dict) -> str:
    """'+0.3 [-0.2, +0.8], 7/10': a paired difference, its interval and the seeds ahead."""
    return f"{signed(d['mean'])} [{signed(d['low'])}, {signed(d['high'])}], {d['ahead']}/{d['seeds']}"


def transfer_change(rows: list[dict], entry: str) -> tuple[list[str], list[list[float]]]:
    """One entry's mean accuracy over seeds, sources x targets, minus zero-shot CLIP's on each
    target (06_protocols' figure)."""
    tasks, matrix = transfer_matrix(rows, entry)
    zero = protocol_stats([r for r in rows if r["method"] == "zeroshot"], ("target",))
    return tasks, [[v - zero[(t,)].mean for t, v in zip(tasks, row)] for row in matrix]
