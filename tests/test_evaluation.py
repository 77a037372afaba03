"""Accuracy on base and new classes and their harmonic mean."""
import pytest
import torch

from gcscoop_lib import evaluation
from gcscoop_lib.training import TrainConfig, build_model


def test_harmonic_mean_is_high_only_when_both_halves_are():
    assert evaluation.harmonic_mean(80.0, 80.0) == 80.0
    assert evaluation.harmonic_mean(90.0, 10.0) == pytest.approx(18.0)
    assert evaluation.harmonic_mean(0.0, 0.0) == 0.0


def test_per_class_accuracy_leaves_absent_classes_out():
    predictions, labels = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0])
    accuracy = evaluation.per_class_accuracy(predictions, labels, 3)
    assert accuracy[:2] == [pytest.approx(200 / 3), 100.0] and accuracy[2] != accuracy[2]   # nan


def test_new_classes_are_scored_with_their_own_prompts(clip, task):
    """At the hand-written context the prompted model *is* zero-shot CLIP, on base and on new classes."""
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    prompted, zero_shot = evaluation.evaluate_prompt(model, task), evaluation.evaluate_zero_shot(clip, task)
    for half in ("base", "new"):
        assert prompted[half] == pytest.approx(zero_shot[half], abs=0.5)
        assert len(prompted["per_class"][half]) == 5
    assert prompted["H"] == pytest.approx(evaluation.harmonic_mean(prompted["base"], prompted["new"]))
    assert evaluation.accuracy(model, *task.test["base"]) == pytest.approx(prompted["base"])


def test_zero_shot_uses_the_tasks_own_prompt_unless_given_others(clip, task):
    val, test = (evaluation.evaluate_zero_shot(clip, task, split=split) for split in ("val", "test"))
    assert val["base"] != test["base"]
    assert evaluation.evaluate_zero_shot(clip, task, [task.template]) == test
    drawn = evaluation.evaluate_zero_shot(clip, task, ["a drawing of a {}."])
    assert (drawn["base"], drawn["new"]) != (test["base"], test["new"])
