"""Run records: one JSON line per run, stamped with the code and weights that produced it
(06_benchmark).

A record is reused only while its stamp matches the code that would produce it now. The
stamp of a method is a hash of the *syntax* of every library function and class its run
reaches (its update rule, the training loop, the text encoder, data generation, evaluation),
found by following the names the code uses. Comments, docstrings and formatting do not
count; a changed rule does, and only for the methods whose runs reach it.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import sys
import textwrap
import types
from functools import lru_cache
from pathlib import Path

PACKAGE = __name__.rsplit(".", 1)[0]


def read_records(path: Path) -> list[dict]:
    """All records of a JSON-lines file (a missing file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def _referenced(obj) -> list:
    """The library's functions and classes that `obj`'s code names, directly or as module.attribute."""
    submodules = {m.rsplit(".", 1)[1]: sys.modules[m] for m in list(sys.modules) if m.startswith(PACKAGE + ".")}
    found = []
    for function in _functions_of(obj) if inspect.isclass(obj) else [obj]:
        names = _names(function.__code__)
        for name in names:
            value = function.__globals__.get(name, submodules.get(name))  # the latter: imports inside a function
            if isinstance(value, types.ModuleType) and value.__name__.startswith(PACKAGE):
                found += [_own(getattr(value, n, None)) for n in names]
            else:
                found.append(_own(value))
    return [f for f in found if f is not None]


@lru_cache(maxsize=None)
def _import_package() -> None:
    """Import every module of the library, so the names code reaches never depend on import order."""
    package = importlib.import_module(PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "__main__":
            importlib.import_module(f"{PACKAGE}.{info.name}")


def code_fingerprint(*roots) -> str:
    """A hash of the syntax of everything in the library that `roots` reach."""
    _import_package()
    seen, todo = {}, [inspect.unwrap(r) for r in roots]
    while todo:
        obj = todo.pop()
        key = f"{obj.__module__}.{obj.__qualname__}"
        if key in seen:
            continue
        seen[key] = _syntax(obj)
        todo += _referenced(obj)
    text = "\n".join(f"{k}:{seen[k]}" for k in sorted(seen))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_fingerprint(method: str) -> str:
    """The stamp of a method's runs: its update rule plus the loop, the model and the data it uses."""
    from . import evaluation, methods, training

    update = methods.get(method).update
    roots = [training.prepare_task, evaluation.evaluate_prompt, evaluation.evaluate_zero_shot]
    roots += [training.train, update, methods.get(method).knobs] if update else []
    return code_fingerprint(*roots)
