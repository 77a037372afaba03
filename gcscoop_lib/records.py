"""Run records: one JSON line per run, stamped with the code and weights that produced it,
and each trained run's solution (its learned parameters and step log) stored beside it under
the same key and stamp (07_benchmark).

A record is reused only while its stamp matches the code that would produce it now. The
stamp of a method is a hash of the *syntax* of every library function and class its run
reaches (its update rule, the training loop, the text encoder, data generation, evaluation),
found by following the names the code uses, and of the values of the library's constants
that code names (the protocol's momentum, the world's task list). Comments, docstrings and
formatting do not count; a changed rule or setting does, and only for the methods whose
runs reach it.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import platform
import sys
import textwrap
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

PACKAGE = __name__.rsplit(".", 1)[0]


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


def _own(obj):
    """obj itself (unwrapped from decorators) if it is a function or class of this library, else None."""
    if callable(obj) and hasattr(obj, "__wrapped__"):
        obj = inspect.unwrap(obj)
    mine = getattr(obj, "__module__", None) or ""
    return obj if mine.startswith(PACKAGE) and (inspect.isfunction(obj) or inspect.isclass(obj)) else None


def _functions_of(cls) -> list:
    out = []
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        member = _own(member) if member is not None else None
        if member is not None and inspect.isfunction(member):
            out.append(member)
    return out


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


@lru_cache(maxsize=None)
def _syntax(obj) -> str:
    tree = _strip_docstrings(ast.parse(textwrap.dedent(inspect.getsource(obj))))
    return ast.dump(tree, annotate_fields=False)


def _referenced(obj) -> tuple[list, dict]:
    """The library's functions and classes that `obj`'s code names, directly or as
    module.attribute, and the library's constants it names (UPPER_CASE plain data, as JSON;
    private caches and a module's own attributes such as its path are no part of a stamp)."""
    found, constants = [], {}

    def note(module: str, name: str, value) -> None:
        mine = _own(value)
        if mine is not None:
            found.append(mine)
        elif module.startswith(PACKAGE) and name.isupper() and not name.startswith("_") \
                and not callable(value) and not isinstance(value, types.ModuleType):
            try:
                constants[f"{module}.{name}"] = json.dumps(value, sort_keys=True)
            except (TypeError, ValueError):   # not plain data (a registry of objects): its parts are code
                pass

    for function in _functions_of(obj) if inspect.isclass(obj) else [obj]:
        names = _names(function.__code__)
        for name in names:
            # imports inside a function are not globals: look such a name up among the modules
            value = function.__globals__[name] if name in function.__globals__ else _submodule(name)
            if isinstance(value, types.ModuleType) and value.__name__.startswith(PACKAGE):
                for attribute in names:
                    if hasattr(value, attribute):
                        note(value.__name__, attribute, getattr(value, attribute))
            elif value is not None:
                note(function.__module__, name, value)
    return found, constants


def _defaults(obj) -> str:
    """A function's default values (a default read from a constant, such as the warm-up rate,
    is a value the syntax alone does not show)."""
    if not inspect.isfunction(obj):
        return ""
    defaults = [obj.__defaults__ or (), sorted((obj.__kwdefaults__ or {}).items())]
    return json.dumps(defaults, default=lambda value: type(value).__name__)


@lru_cache(maxsize=None)
def _submodule(name: str):
    """The library's module of that name (imported if need be), or None: what a name imported
    inside a function refers to, whatever has been imported so far."""
    full = f"{PACKAGE}.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if not name.isidentifier() or name.startswith("_") or importlib.util.find_spec(full) is None:
        return None
    return importlib.import_module(full)


def code_fingerprint(*roots) -> str:
    """A hash of the syntax of everything in the library that `roots` reach."""
    seen, constants, todo = {}, {}, [inspect.unwrap(r) for r in roots]
    while todo:
        obj = todo.pop()
        key = f"{obj.__module__}.{obj.__qualname__}"
        if key in seen:
            continue
        seen[key] = _syntax(obj) + _defaults(obj)
        found, named = _referenced(obj)
        todo += found
        constants.update(named)
    seen.update({f"{k} =": v for k, v in constants.items()})
    text = "\n".join(f"{k}:{seen[k]}" for k in sorted(seen))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_fingerprint(method: str) -> str:
    """The stamp of a method's runs: its update rule and model plus the loop, the task and the
    evaluation they go through."""
    from . import evaluation, methods, tasks, training

    entry = methods.get(method)
    roots = [tasks.prepare_task, evaluation.evaluate_prompt, evaluation.evaluate_zero_shot]
    roots += [training.train, entry.update, entry.knob_type, entry.build] if entry.trains else []
    return code_fingerprint(*roots)


def read_code_now() -> None:
    """Compute every method's code stamp now (cached for the process): stamps read the
    library's source files, so a long run reads them once, before anyone edits them."""
    from . import methods

    for name in methods.METHODS:
        method_fingerprint(name)


def stamp(config) -> dict:
    """What a run's record must carry to be reused: the code that makes the run and the weights
    it runs on (read without loading a model)."""
    from .models import weights_fingerprint

    return {"code": method_fingerprint(config.method), "weights": weights_fingerprint(config.model, config.pretrained)}


def versions() -> dict:
    """The versions a record was made with."""
    import open_clip

    from . import __version__

    return {"gcscoop_lib": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version()}


def make_record(run, scores: dict, val: dict, seconds: float, device) -> dict:
    """A run's record: its key, stamp and config, test scores (base, new, H, per class),
    validation scores, time and versions."""
    config = run.config
    return {"key": run.key, "stamp": stamp(config), "method": config.method, "dataset": config.dataset,
            "seed": config.seed, "shots": config.shots, "config": dataclasses.asdict(config),
            "base": scores["base"], "new": scores["new"], "H": scores["H"], "per_class": scores["per_class"],
            "val": {k: val[k] for k in ("base", "new", "H")}, "seconds": seconds, "device": str(device),
            "versions": versions()}


# ----------------------------------------------------------------------------- solutions
@dataclass
class StoredSolution:
    """A trained run's learned parameters and logs, as stored beside its record."""

    learned: dict            # parameter name -> tensor
    steps: list[dict]        # one row per optimiser step
    history: list[dict]      # one row per epoch (with test accuracies when the run was tracked)
    tracked: bool


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
    tmp.replace(path)
    return path


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
