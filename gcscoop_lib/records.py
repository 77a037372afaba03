"""Run records: one JSON line per run, stamped with the versions of the units and the
weights that produced it (gcscoop_lib.stamps), and each trained run's solution (its learned
parameters and logs) stored beside it under the same key and stamp (07_benchmark).

A record is reused only while its stamp is the one the library would give it now.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .stamps import run_stamp


def read_records(path: Path) -> list[dict]:
    """All records of a JSON-lines file (a missing file has none); a line that is not a record
    stops with one error naming the file and the line, never skipped in silence."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {number}, is not a run record ({error.msg}): delete that line "
                             "(its run is redone when next asked for)") from None
        if not isinstance(record, dict) or "key" not in record or "config" not in record:
            raise ValueError(f"{path}, line {number}, is not a run record (no key or config): delete that line "
                             "(its run is redone when next asked for)")
        out.append(record)
    return out


def append_record(path: Path, record: dict) -> None:
    """Append one record as one line in a single write, so a killed run leaves no half line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def rewrite_records(path: Path, records: list[dict]) -> None:
    """Replace a records file in one rename (never half-written)."""
    path = Path(path)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    tmp.replace(path)


def versions() -> dict:
    """The versions a record was made with."""
    import open_clip

    from . import __version__

    return {"gcscoop_lib": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


def make_record(run, scores: dict, val: dict, seconds: float, device, population: int = 1) -> dict:
    """A run's record: its key, stamp and config, test scores (base, new, H, per class),
    validation scores, time (its share of its population's, when it trained in one) and
    versions."""
    config = run.config
    return {"key": run.key, "stamp": run_stamp(config), "method": config.method, "dataset": config.dataset,
            "seed": config.seed, "shots": config.shots, "config": dataclasses.asdict(config),
            "base": scores["base"], "new": scores["new"], "H": scores["H"], "per_class": scores["per_class"],
            "val": {k: val[k] for k in ("base", "new", "H")}, "seconds": seconds, "population": population,
            "device": str(device),
            "versions": versions()}


# ----------------------------------------------------------------------------- solutions
@dataclass
class StoredSolution:
    """A trained run's learned parameters and logs, as stored beside its record."""

    learned: dict            # parameter name -> tensor
    steps: list[dict]        # one row per optimiser step
    history: list[dict]      # one row per epoch (with accuracies and drift when the run was tracked)
    tracked: int | None      # what a tracked run recorded per epoch (stamps.tracking_version), None: untracked


def solution_path(folder: Path, key: str) -> Path:
    return Path(folder) / "solutions" / f"{key}.safetensors"


def save_solution(folder: Path, key: str, stamp_: dict, solution: StoredSolution) -> Path:
    """Store a solution under its run's key and stamp in one rename (never half-written)."""
    from safetensors.torch import save_file

    path = solution_path(folder, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    meta = {"key": key, "stamp": json.dumps(stamp_, sort_keys=True), "steps": json.dumps(solution.steps),
            "history": json.dumps(solution.history), "tracked": json.dumps(solution.tracked)}
    save_file({k: v.contiguous() for k, v in solution.learned.items()}, str(tmp), metadata=meta)
    _sort_header(tmp)
    tmp.replace(path)
    return path


def _sort_header(path: Path) -> None:
    """Rewrite a safetensors file's header with its keys sorted. safetensors writes them in a
    hash map's order, which differs from one process to the next, so a regeneration that
    reproduces a solution would otherwise still change its bytes."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)       # the format pads its header to 8 bytes with spaces
    path.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + size:])


def load_solution(folder: Path, key: str, stamp_: dict) -> StoredSolution | None:
    """The stored solution of a run if it is there, loads, and carries the current stamp."""
    from safetensors import safe_open

    path = solution_path(folder, key)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            learned = {name: f.get_tensor(name) for name in f.keys()}
    except Exception:   # missing, truncated or another format: the run is trained again
        return None
    if meta.get("key") != key or json.loads(meta.get("stamp", "null")) != stamp_:
        return None
    return StoredSolution(learned, json.loads(meta["steps"]), json.loads(meta["history"]),
                          json.loads(meta["tracked"]))
