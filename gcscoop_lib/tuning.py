"""Choosing the tiny CLIP's shared recipe and each method's knobs, on the validation split
only (07_benchmark). The grids are in gcscoop_lib.protocol (the recipe's) and in each
method's registry entry (its knobs')."""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import evaluation, methods, protocol, reports, stamps
from .models import weights_fingerprint
from .runs import Runner
from .training import TrainConfig

# Bump when the rule that chooses the recipe or the knobs changes (gcscoop_lib.stamps).
VERSION = 1


def grid(spec: dict) -> list[dict]:
    """Every combination of a {name: values} grid, in order."""
    combos = [{}]
    for key, values in spec.items():
        combos = [dict(c, **{key: v}) for c in combos for v in values]
    return combos


def validation_scores(runner: Runner, configs: list[TrainConfig]) -> dict:
    """Validation base, new and H averaged over datasets, with H's standard error over seeds."""
    done = runner.run_many(configs)
    seeds = sorted({r["seed"] for r in done})
    base = sum(r["val"]["base"] for r in done) / len(done)
    new = sum(r["val"]["new"] for r in done) / len(done)
    per_seed = []
    for s in seeds:
        mine = [r for r in done if r["seed"] == s]
        per_seed.append(evaluation.harmonic_mean(sum(r["val"]["base"] for r in mine) / len(mine),
                                                 sum(r["val"]["new"] for r in mine) / len(mine)))
    std = reports.mean_std(per_seed)[1]
    return {"base": base, "new": new, "H": evaluation.harmonic_mean(base, new), "H_se": std / math.sqrt(len(seeds))}


def choose_knobs(trials: list[dict], defaults: dict) -> dict:
    """The knob values to use: among the trials whose validation H is within one standard error
    of the best, the one closest (in ratio) to the paper's defaults. A tie within noise is thus
    settled by a fixed rule, not by float rounding."""
    best = max(trials, key=lambda t: t["H"])
    close = [t for t in trials if t["H"] >= best["H"] - best["H_se"]]

    # Distances are rounded so that two values equally far from the default in ratio (4 and 16
    # around 8) tie on every machine's libm, and the tie goes to the smaller values.
    def distance(t):
        return (round(sum(abs(math.log2(t[k] / d)) for k, d in defaults.items()), 9), [t[k] for k in defaults])

    chosen = min(close, key=distance)
    return {k: chosen[k] for k in defaults}


def extend_grid(values: list[float], chosen: float) -> float | None:
    """The next value beyond a grid's edge when the chosen one sits on it, at the edge's own
    ratio (8 after a grid ending 2, 4; 1 before one starting 2, 4), else None."""
    if chosen == values[-1]:
        return round(values[-1] * values[-1] / values[-2], 6)
    if chosen == values[0]:
        return round(values[0] * values[0] / values[1], 6)
    return None


def tune(datasets: list[str], runner: Runner, seeds=protocol.TUNING_SEEDS, log=print, prefetch=None) -> dict:
    """Choose the shared recipe, then each method's knobs, on the validation split only.

    1. The recipe (lr, epochs, batch size) maximises CoOp's base validation accuracy,
       averaged over datasets and seeds; every method then uses it.
    2. Each method's knobs are chosen on validation H from its grid (`choose_knobs`: the
       best, or the values nearest the paper's defaults among those within one standard
       error of the best). A choice on a grid's edge extends the grid beyond it, up to
       protocol.MAX_EXTENSIONS values. No test image is used.

    prefetch(configs) trains a whole grid's runs first (default: runner.run_many, as
    populations in this process; the command line's --jobs spreads them over processes).
    """
    prefetch = prefetch or runner.run_many
    def configs(method, recipe, knobs=None):
        return [TrainConfig(method=method, dataset=d, seed=s, knobs=knobs or {}, **recipe)
                for d in datasets for s in seeds]

    # the whole grid first, so that its learning rates and seeds train together as populations
    prefetch([c for recipe in grid(protocol.RECIPE_GRID) for c in configs("coop", recipe)])
    recipes = []
    for recipe in grid(protocol.RECIPE_GRID):
        score = validation_scores(runner, configs("coop", recipe))
        recipes.append({**recipe, **score})
        log(f"recipe {recipe}: CoOp val base {score['base']:.1f}")
    best = max(recipes, key=lambda r: r["base"])
    recipe = {k: best[k] for k in protocol.RECIPE_GRID}
    chosen, trials = {}, {}
    for method in methods.METHODS.values():
        if not method.grid:
            continue
        values = {k: list(v) for k, v in method.grid.items()}
        defaults = {k: getattr(method.knobs(), k) for k in values}
        trials[method.name] = []
        prefetch([c for knobs in grid(values) for c in configs(method.name, recipe, knobs)])
        while True:
            tried = [{k: t[k] for k in values} for t in trials[method.name]]
            for knobs in grid(values):
                if knobs in tried:
                    continue
                score = validation_scores(runner, configs(method.name, recipe, knobs))
                trials[method.name].append({**knobs, **score})
                shown = " ".join(f"{k}={v}" for k, v in knobs.items())
                log(f"{method.name} {shown}: val base {score['base']:.1f} new {score['new']:.1f} "
                    f"H {score['H']:.1f} ± {score['H_se']:.1f}")
            choice = choose_knobs(trials[method.name], defaults)
            beyond = {k: extend_grid(sorted(values[k]), choice[k]) for k in values}
            beyond = {k: v for k, v in beyond.items() if v is not None}
            if not beyond:
                break
            full = [k for k in beyond if len(values[k]) >= len(method.grid[k]) + protocol.MAX_EXTENSIONS]
            if full:
                log(f"note: {method.name}'s {full[0]} = {choice[full[0]]} is still on the edge of "
                    f"{sorted(values[full[0]])}")
                break
            for k, v in beyond.items():
                log(f"{method.name}'s {k} = {choice[k]} is on the edge of {sorted(values[k])}: trying {v}")
                values[k].append(v)
        chosen[method.name] = choice
    tuned = {"recipe": recipe, "knobs": chosen, "recipe_trials": recipes, "knob_trials": trials,
             "datasets": datasets, "seeds": list(seeds)}
    return {**tuned, "stamps": choice_stamps(tuned)}


def choice_stamps(tuned: dict) -> dict:
    """What each choice of a tuning was made from (gcscoop_lib.stamps): the recipe from CoOp's
    runs over its grid, each method's knobs from its own runs under that recipe over its grid.
    A choice whose stamp is no longer this is stale, and `tune` makes it again."""
    common = {"datasets": tuned.get("datasets"), "seeds": list(tuned.get("seeds", [])),
              "weights": weights_fingerprint("tiny")}
    out = {"recipe": {"units": {"tuning": VERSION, **stamps.method_units("coop")},
                      "grid": protocol.RECIPE_GRID, **common}}
    for name in tuned["knobs"]:
        if name in methods.METHODS:
            grid_ = {k: list(v) for k, v in methods.get(name).grid.items()}
            out[name] = {"units": {"tuning": VERSION, **stamps.method_units(name)}, "grid": grid_,
                         "recipe": tuned["recipe"], **common}
    return json.loads(json.dumps(out))


def stale_choices(tuned: dict) -> dict:
    """The stored choices (the recipe, then each method's knobs) that are no longer current,
    each with why (stamps.changes). A recipe written by hand (no stamps: `tune` did not make
    it) has nothing to choose again."""
    if "stamps" not in tuned:
        return {}
    current, stored = choice_stamps(tuned), tuned["stamps"]
    return {name: stamps.changes(stored.get(name), current[name]) if name in current
            else [f"{name} is no longer a method"]
            for name in ["recipe", *tuned["knobs"]] if stored.get(name) != current.get(name)}


def load_tuning(path) -> dict:
    """A tuned recipe and knobs (results/tuning.json); a missing or broken file stops with one
    line that names it and the fix."""
    path = Path(path)
    fix = f"restore it (`git checkout -- {path}` in a clone) or write a new one with `python -m gcscoop_lib tune`"
    if not path.exists():
        raise FileNotFoundError(f"no tuned recipe at {path}: {fix}")
    try:
        tuning = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}, is not valid JSON ({error.msg}): {fix}") from None
    missing = [k for k in ("recipe", "knobs") if not isinstance(tuning, dict) or k not in tuning]
    if missing:
        raise ValueError(f"{path} has no {missing[0]!r}: {fix}")
    return tuning
