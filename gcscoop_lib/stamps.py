"""What a stored result must carry to be reused: the versions of the units that computed it
(07_benchmark, CONTRIBUTING.md).

Each unit that decides a run's numbers carries an explicit version beside its code: the
world's images, the tasks' make-up, the image features, the text side, the training loop,
the evaluation, each method (its registry entry's `version`) and each model class that
differs from CoOp's (its `UNIT` and `VERSION`). A run's stamp is the versions of the units
it uses, the loop's settings and the weights' fingerprint; its config is in its key. A
rename, a new helper or a new reported field changes no version and stales nothing; a
change of behaviour bumps the version of its unit and stales exactly the results that use
it. tests/test_golden.py fails, naming the version, when a unit's behaviour changed and its
version did not.
"""
from __future__ import annotations

import typing

from . import diagnostics, evaluation, features, methods, prompts, protocol, tasks, training, world
from .models import weights_fingerprint

# unit -> where its version lives and what it covers (the dry run's and CONTRIBUTING.md's words)
UNITS = {
    "world": ("world.VERSION", "the embedded tasks' images, labels and styles"),
    "data": ("tasks.VERSION", "a task's make-up: base/new partitions, few-shot draws, validation and test halves"),
    "features": ("features.VERSION", "image encoding and the augmented views"),
    "text": ("prompts.VERSION", "hand-written prompts, the prompt learner and the text encoder (CoOp's model)"),
    "evaluation": ("evaluation.VERSION", "accuracies and H"),
    "loop": ("training.VERSION", "the training loop: batches, schedule, SGD, initial state"),
    "tracking": ("diagnostics.VERSION", "what a tracked run records per epoch (drift, curves)"),
    "method.NAME": ("methods.METHODS[NAME].version", "a method's update rule and knobs"),
    "model.UNIT": ("MODEL.VERSION", "a model class other than CoOp's (CoCoOp's)"),
    "protocol.NAME": ("protocols.VERSIONS[NAME]", "how a protocol turns runs into rows"),
    "tuning": ("tuning.VERSION", "how the recipe and the knobs are chosen"),
}


def loop_settings() -> dict:
    """The loop's numbers that live in gcscoop_lib.protocol (a changed value stales the runs)."""
    return {"loop.momentum": protocol.MOMENTUM, "loop.weight_decay": protocol.WEIGHT_DECAY,
            "loop.warmup_lr": protocol.WARMUP_LR}


def model_units(method: methods.Method) -> dict:
    """The units of a method's model class beyond CoOp's, read from its build's return type."""
    model = typing.get_type_hints(method.build).get("return")
    return {f"model.{cls.UNIT}": cls.VERSION for cls in getattr(model, "__mro__", ())
            if "UNIT" in vars(cls)}


def data_units() -> dict:
    """The units of a task's images and features, which every run and protocol reads."""
    return {"world": world.VERSION, "data": tasks.VERSION, "features": features.VERSION}


def method_units(name: str) -> dict:
    """The versions of every unit a method's runs use."""
    method = methods.get(name)
    units = {**data_units(), "text": prompts.VERSION, "evaluation": evaluation.VERSION}
    if method.trains:
        units.update({"loop": training.VERSION, **loop_settings(), f"method.{name}": method.version,
                      **model_units(method)})
    return units


def run_stamp(config) -> dict:
    """A run's stamp: the units it uses and the weights it runs on (read without loading a model)."""
    return {"units": method_units(config.method), "weights": weights_fingerprint(config.model, config.pretrained)}


def tracking_version() -> int:
    """The version of what a tracked run records per epoch (a stored tracked solution's)."""
    return diagnostics.VERSION


def all_units() -> dict:
    """Every unit's version now (the golden trajectories are stored with them)."""
    out = {}
    for name in methods.METHODS:
        out.update(method_units(name))
    return dict(sorted({**out, "tracking": diagnostics.VERSION}.items()))


def where(unit: str) -> str:
    """Where a unit's version lives, to bump it ("methods.METHODS['sam'].version")."""
    kind, _, name = unit.partition(".")
    if kind == "method":
        return f"methods.METHODS[{name!r}].version"
    if kind == "protocol":
        return f"protocols.VERSIONS[{name!r}]"
    if kind == "model":
        return f"VERSION of the model class whose UNIT is {name!r}"
    if kind == "loop" and name:
        return f"protocol.{name.upper()}, stamped by its value"
    return UNITS[unit][0]


def changes(stored, current: dict) -> list[str]:
    """Why a stored stamp is not the current one, unit by unit ("method.kgcoop 1 -> 2")."""
    if not isinstance(stored, dict) or "units" not in stored:
        return ["stored without a stamp of versions"]
    out = []
    old, new = stored["units"], current["units"]
    for unit in sorted(set(old) | set(new)):
        if old.get(unit) != new.get(unit):
            out.append(f"{unit} {old.get(unit, '-')} -> {new.get(unit, '-')}")
    out += [f"{key} changed" for key in sorted((set(stored) | set(current)) - {"units"})
            if stored.get(key) != current.get(key)]
    return out
