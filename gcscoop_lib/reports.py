"""Tables of run records: mean and spread over seeds, the papers' average row, Markdown and
CSV (02_coop to 07_benchmark, and the command line)."""
from __future__ import annotations

import json
import math
import numbers
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from .evaluation import harmonic_mean
from .methods import METHODS


def glue_values(digits: int = 1, **values) -> None:
    """Hand numbers to the chapter's prose (myst-nb glue, 01_zero_shot onwards), floats rounded to
    `digits` so that the stored outputs read the same on every processor.

    Only the book's build reads glued values; where myst-nb is not installed (a chapter opened
    in Colab) there is nothing to hand them to, and this does nothing.
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
    (07_benchmark, README)."""
    papers = published("base_to_new")["rows"]
    ours = changes_from(table, order)
    rows = []
    for method in order:
        if method == "zeroshot" or method not in ours:
            continue
        theirs = papers.get(method)
        cited = " / ".join(f"{theirs[k] - papers['zeroshot'][k]:+.1f}" for k in ("base", "new", "H")) \
            if theirs else "–"
        rows.append([label(method), cited, " / ".join(f"{ours[method][k]:+.1f}" for k in ("base", "new", "H")),
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
                 dataset: str = "average") -> dict:
    """Each method's change of base, new and H from the reference method's (08_synthesis)."""
    ref = table[reference][dataset]
    return {m: {k: table[m][dataset][k][0] - ref[k][0] for k in ("base", "new", "H")}
            for m in order if m != reference and m in table}


def changes_table(table: dict, order: list[str], reference: str = "zeroshot") -> str:
    """Markdown: each method's average base / new / H minus the reference's, in points."""
    lines = ["| method | base | new | H |", "|---|---|---|---|"]
    for method, change in changes_from(table, order, reference).items():
        lines.append(f"| {label(method)} | " + " | ".join(f"{change[k]:+.1f}" for k in ("base", "new", "H")) + " |")
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
