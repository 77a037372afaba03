"""Choosing the tiny CLIP's recipe and each method's knobs on the validation split only, and
reading the choice back."""
import dataclasses
import json
import math
import types

import pytest

from gcscoop_lib import methods, protocol, tuning
from gcscoop_lib.training import TrainConfig


def test_grid_is_every_combination_in_order():
    assert tuning.grid({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                                          {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert tuning.grid({}) == [{}]


class Runs:
    """A stand-in runner: each run's validation scores come from `score(config)` (base, new);
    `asked` lists each config once, as a runner does each run once."""

    def __init__(self, score):
        self.score, self.asked = score, []

    def run(self, config):
        if repr(config) not in map(repr, self.asked):
            self.asked.append(config)
        base, new = self.score(config)
        return {"seed": config.seed, "val": {"base": base, "new": new}}

    def run_many(self, configs):
        return [self.run(c) for c in configs]


def test_validation_scores_average_datasets_and_give_h_a_standard_error_over_seeds():
    runs = Runs(lambda c: ({"shapes": 80.0, "digits": 60.0}[c.dataset] + c.seed, 50.0))
    configs = [TrainConfig(dataset=d, seed=s) for d in ("shapes", "digits") for s in (1, 2)]
    scores = tuning.validation_scores(runs, configs)
    assert scores["base"] == 71.5 and scores["new"] == 50.0
    assert scores["H"] == pytest.approx(2 * 71.5 * 50 / 121.5)
    per_seed = [2 * b * 50 / (b + 50) for b in (71.0, 72.0)]
    assert scores["H_se"] == pytest.approx(abs(per_seed[1] - per_seed[0]) / math.sqrt(2) / math.sqrt(2))


def test_knob_choice_prefers_the_default_within_noise():
    trials = [{"rho": 0.05, "H": 75.0, "H_se": 0.3}, {"rho": 0.2, "H": 75.5, "H_se": 0.3},
              {"rho": 0.5, "H": 75.4, "H_se": 0.3}]
    assert tuning.choose_knobs(trials, {"rho": 0.1}) == {"rho": 0.2}      # 0.05 is outside the best's error bar
    assert tuning.choose_knobs(trials, {"rho": 0.5}) == {"rho": 0.5}
    trials[1]["H_se"] = 0.6
    assert tuning.choose_knobs(trials, {"rho": 0.05}) == {"rho": 0.05}


def test_knob_choice_breaks_a_ratio_tie_towards_the_smaller_value():
    trials = [{"lam": 4.0, "H": 74.1, "H_se": 1.1}, {"lam": 16.0, "H": 74.7, "H_se": 0.8}]
    assert tuning.choose_knobs(trials, {"lam": 8.0}) == {"lam": 4.0}


def test_two_knobs_are_chosen_together_nearest_both_defaults():
    trials = [{"rho": r, "beta_low": b, "H": 75.0 + (r == 0.5) * 2, "H_se": 0.5}
              for r in (0.05, 0.1, 0.5) for b in (0.25, 0.5, 1.0)]
    assert tuning.choose_knobs(trials, {"rho": 0.1, "beta_low": 0.5}) == {"rho": 0.5, "beta_low": 0.5}
    for t in trials:
        t["H"] = 75.0
    assert tuning.choose_knobs(trials, {"rho": 0.1, "beta_low": 0.5}) == {"rho": 0.1, "beta_low": 0.5}
    assert tuning.choose_knobs(trials, {"rho": 0.2, "beta_low": 0.7}) == {"rho": 0.1, "beta_low": 0.5}


def test_extend_grid_steps_beyond_the_edge_at_its_own_ratio():
    assert tuning.extend_grid([2.0, 4.0, 8.0, 16.0], 16.0) == 32.0
    assert tuning.extend_grid([0.25, 0.5, 1.0, 2.0], 0.25) == 0.125
    assert tuning.extend_grid([0.02, 0.05, 0.2, 0.5], 0.2) is None


def test_tune_extends_a_grid_whose_choice_sits_on_its_edge(monkeypatch):
    """Validation H that keeps rising with KgCoOp's lambda: tune must look beyond 16, at most twice."""
    def scores(runner, configs):
        c = configs[0]
        lam = c.knobs.get("lam", 0.0) if c.method == "kgcoop" else 0.0
        rise = math.log2(lam) if lam else 0.0
        return {"base": 70.0 + (c.lr == 0.01), "new": 70.0, "H": 70.0 + rise, "H_se": 0.01}

    monkeypatch.setattr(tuning, "validation_scores", scores)
    tuned = tuning.tune(["fashion"], runner=types.SimpleNamespace(run_many=lambda configs: []), seeds=(1,),
                        log=lambda line: None)
    tried = [t["lam"] for t in tuned["knob_trials"]["kgcoop"]]
    assert tried == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert tuned["knobs"]["kgcoop"] == {"lam": 64.0}
    assert tuned["recipe"]["lr"] == 0.01
    assert set(tuned["knobs"]) == {m.name for m in methods.METHODS.values() if m.grid}


def test_tune_searches_the_product_of_a_methods_grids_on_validation_runs(monkeypatch):
    """A method with two knobs on its grid: every pair is run, each over every dataset and seed."""
    gcscoop = methods.METHODS["gcscoop"]
    monkeypatch.setitem(methods.METHODS, "gcscoop", dataclasses.replace(
        gcscoop, grid={"rho": (0.05, 0.1, 0.2, 0.5), "beta_low": (0.25, 0.5, 0.75)}))

    def score(c):
        if c.method != "gcscoop":
            return 70.0 + (c.lr == 0.05 and c.epochs == 50), 70.0
        best = c.knobs.get("rho") == 0.2 and c.knobs.get("beta_low") == 0.5
        return 70.0 + c.seed, 70.0 + 5 * best

    runs = Runs(score)
    tuned = tuning.tune(["shapes", "digits"], runs, seeds=(1, 2), log=lambda line: None)
    assert tuned["recipe"] == {"lr": 0.05, "epochs": 50, "batch_size": 32}
    assert tuned["knobs"]["gcscoop"] == {"rho": 0.2, "beta_low": 0.5}
    pairs = [(t["rho"], t["beta_low"]) for t in tuned["knob_trials"]["gcscoop"]]
    assert pairs == [(r, b) for r in (0.05, 0.1, 0.2, 0.5) for b in (0.25, 0.5, 0.75)]
    asked = [c for c in runs.asked if c.method == "gcscoop"]
    assert len(asked) == 12 * 2 * 2 and {c.lr for c in asked} == {0.05}
    assert {(c.dataset, c.seed) for c in asked} == {(d, s) for d in ("shapes", "digits") for s in (1, 2)}
    assert len([c for c in runs.asked if c.method == "coop"]) == len(tuning.grid(protocol.RECIPE_GRID)) * 4


def test_a_tuned_file_is_read_back(tmp_path):
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"recipe": {"lr": 0.01}, "knobs": {"sam": {"rho": 0.2}}, "seeds": [1]}))
    assert tuning.load_tuning(path)["knobs"] == {"sam": {"rho": 0.2}}


@pytest.mark.parametrize("text,error,message", [
    (None, FileNotFoundError, "no tuned recipe at {path}: restore it"),
    ('{"recipe": {"lr": 0.01},\n "knobs": {', ValueError, "{path}, line 2, is not valid JSON"),
    ('{"recipe": {"lr": 0.01}}', ValueError, "{path} has no 'knobs': restore it"),
    ('[1, 2]', ValueError, "{path} has no 'recipe': restore it"),
])
def test_a_missing_or_broken_tuned_file_stops_in_one_line_naming_it(tmp_path, text, error, message):
    path = tmp_path / "tuning.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(error) as stop:
        tuning.load_tuning(path)
    assert str(stop.value).startswith(message.format(path=path)) and "\n" not in str(stop.value)
    assert str(stop.value).endswith("write a new one with `python -m gcscoop_lib tune`")
