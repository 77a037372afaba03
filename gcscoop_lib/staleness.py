"""What a results folder would recompute now, and why (07_benchmark, `prune --dry-run`).

Every stored thing is compared with the stamp the library would give it now
(gcscoop_lib.stamps): run records, their solutions, the protocols' rows and the tuning's
choices. A stale one is listed under the change that made it stale, with the CPU seconds
its record says it took.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import protocols, records, runs, stamps, tuning
from .training import TrainConfig

KINDS = ("records", "solutions", "protocols", "tuning choices")


@dataclass
class Stale:
    kind: str        # one of KINDS
    name: str        # what it is, in words
    cause: str       # the change that made it stale
    seconds: float   # what computing it took (0 where nothing was recorded)


def _record_cause(runner: runs.Runner, record: dict) -> str | None:
    """Why a record is stale (None: it is current)."""
    try:
        current = runner.stamp(TrainConfig(**record["config"]))
    except ValueError as error:   # its method, dataset or knob is gone
        return str(error).split(":")[0]
    changed = stamps.changes(record.get("stamp"), current)
    return " and ".join(changed) or None


def stale_results(folder, tuned: dict | None) -> list[Stale]:
    """Everything stale in a results folder; `tuned` is the recipe its protocols were run with
    (None: no protocols are checked)."""
    folder = Path(folder)
    out, causes = [], {}
    for path in sorted(folder.glob("*.jsonl")):
        runner = runs.Runner(folder, records_file=path.name)
        for record in records.read_records(path):
            cause = _record_cause(runner, record)
            causes[record["key"]] = cause
            if cause:
                what = f"{path.name}: {record['method']} on {record['dataset']}, seed {record['seed']} [{record['key']}]"
                out.append(Stale("records", what, cause, float(record.get("seconds") or 0.0)))
    for path in runs.stale_solutions(folder):
        out.append(Stale("solutions", path.name, causes.get(path.stem) or "no current record", 0.0))
    store = protocols.read_store(folder / protocols.STORE)
    for name, entry in store.items() if tuned is not None else ():
        if name not in protocols.PROTOCOLS:
            cause = f"{name} is no longer a protocol"
        else:
            cause = " and ".join(stamps.changes(entry.get("stamp"),
                                                protocols.protocol_stamp(name, tuned, entry["arguments"])))
        if cause:
            out.append(Stale("protocols", name, cause, float(entry.get("seconds") or 0.0)))
    if (folder / "tuning.json").exists():
        for name, changed in tuning.stale_choices(tuning.load_tuning(folder / "tuning.json")).items():
            out.append(Stale("tuning choices", name, " and ".join(changed), 0.0))
    return out


def summary(stale: list[Stale]) -> str:
    """The dry run's last line: counts of each kind and the CPU seconds to recompute them
    (a tuning choice costs its runs, counted with the records)."""
    counts = {kind: sum(s.kind == kind for s in stale) for kind in KINDS}
    seconds = sum(s.seconds for s in stale)
    return (f"{counts['records']} records, {counts['solutions']} solutions, {counts['protocols']} protocols, "
            f"{counts['tuning choices']} tuning choices stale ({seconds:.0f} CPU-seconds)")


def explain(stale: list[Stale]) -> list[str]:
    """The stale results grouped by the change that caused them, one line per change, then
    the summary line."""
    groups = defaultdict(list)
    for s in stale:
        groups[s.cause].append(s)
    lines = []
    for cause in sorted(groups, key=lambda c: -sum(s.seconds for s in groups[c])):
        members = groups[cause]
        parts = []
        for kind in KINDS:
            mine = [s for s in members if s.kind == kind]
            if mine:
                named = f" ({', '.join(s.name for s in mine)})" if kind in ("protocols", "tuning choices") else ""
                parts.append(f"{len(mine)} {kind if len(mine) != 1 else kind[:-1]}{named}")
        lines.append(f"{cause}: {', '.join(parts)}; {sum(s.seconds for s in members):.0f} CPU-seconds")
    return lines + [summary(stale)]
