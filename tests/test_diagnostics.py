"""Measurements of a solution: loss slices around it and per-epoch shares of step events."""
import pytest
import torch
import torch.nn.functional as F

from gcscoop_lib import diagnostics, methods
from gcscoop_lib.training import TrainConfig, build_model
from test_methods import shifted_clip


def test_loss_slices_leave_the_context_untouched(clip, task):
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    before = model.learner.ctx.detach().clone()
    losses = diagnostics.loss_along(model, task.train_features[0], task.train_labels, torch.randn(2, before.numel()),
                                    [-0.2, 0.0, 0.2])
    assert losses.shape == (2, 3) and torch.equal(model.learner.ctx, before)
    assert losses[0, 1] == losses[1, 1]  # radius 0 is the solution itself


def test_slice_radii_are_relative_to_the_norm_of_every_learned_parameter(clip, task):
    model = shifted_clip(clip, TrainConfig(dataset="shapes"), task.base_names, task.template)
    with torch.no_grad():
        model.shift.fill_(0.5)   # a second parameter as large as the context
    features, labels = task.train_features[0], task.train_labels
    direction = torch.randn(1, sum(p.numel() for p in model.params), generator=torch.Generator().manual_seed(0))
    got = diagnostics.loss_along(model, features, labels, direction, [0.3])[0, 0].item()
    theta = torch.cat([p.detach().reshape(-1) for p in model.params])
    with methods.perturbed(model, 0.3 * theta.norm() * direction[0] / direction[0].norm()):
        expected = F.cross_entropy(model.logits(features), labels).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert theta.norm() > 1.5 * model.learner.ctx.norm()   # the context's norm alone is another radius


def test_a_given_scale_probes_every_solution_at_the_same_absolute_distance(clip, task):
    small = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    large = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    with torch.no_grad():
        large.learner.ctx.mul_(3.0)
    assert diagnostics.context_norm(large) == pytest.approx(3 * diagnostics.context_norm(small), rel=1e-6)
    features, labels = task.train_features[0], task.train_labels
    direction = torch.randn(1, small.learner.ctx.numel(), generator=torch.Generator().manual_seed(1))
    for model in (small, large):
        got = diagnostics.loss_along(model, features, labels, direction, [0.5], scale=0.2)[0, 0].item()
        with methods.perturbed(model, 0.1 * direction[0] / direction[0].norm()):
            expected = F.cross_entropy(model.logits(features), labels).item()
        assert got == pytest.approx(expected, rel=1e-6)


def test_flatness_reads_the_loss_at_the_solution_and_its_rise(clip, task):
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    directions = diagnostics.random_directions(3, model.learner.ctx.numel())
    assert torch.equal(directions, diagnostics.random_directions(3, model.learner.ctx.numel()))
    flat = diagnostics.flatness(model, task.train_features[0], task.train_labels, directions, [-0.5, 0.0, 0.5])
    curves = flat["curves"]
    assert curves.shape == (3, 3) and flat["loss"] == pytest.approx(curves[:, 1].mean())
    assert flat["rise"] == pytest.approx(curves[:, [0, 2]].mean() - curves[:, 1].mean())


def test_per_epoch_share():
    steps = [{"epoch": 0, "conflict": True}, {"epoch": 0, "conflict": False}, {"epoch": 1, "conflict": True}]
    assert diagnostics.per_epoch_share(steps, "conflict") == ([1, 2], [0.5, 1.0])
    assert diagnostics.per_epoch_share([{"epoch": 0, "regime": "sam"}, {"epoch": 0, "regime": "erm"}], "regime",
                                       "erm") == ([1], [0.5])
