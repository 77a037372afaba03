"""The training loop against an independent re-implementation of Dassl's SGD recipe, and its inputs."""
import dataclasses

import pytest
import torch

from gcscoop_lib import data, methods, training
from gcscoop_lib.methods import Batch
from gcscoop_lib.training import TrainConfig, build_model, fit, lr_at, prepare_task, train


def reference_sgd(model, config, features, labels):
    """Dassl's loop written out: shuffled drop-last batches, one random view per example and
    epoch, SGD with momentum 0.9 and weight decay 5e-4 at the epoch's learning rate."""
    ctx = model.learner.ctx
    generator = torch.Generator().manual_seed(config.seed)
    views, n = features.shape[:2]
    velocity, history, steps = None, [], []
    for epoch in range(config.epochs):
        lr = lr_at(epoch, config.epochs, config.lr)
        order, view = torch.randperm(n, generator=generator), torch.randint(views, (n,), generator=generator)
        losses = []
        for s in range(n // config.batch_size):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size]
            loss = torch.nn.functional.cross_entropy(model.logits(features[view[idx], idx]), labels[idx])
            grad = torch.autograd.grad(loss, ctx)[0] + 5e-4 * ctx.detach()
            velocity = grad if velocity is None else 0.9 * velocity + grad
            with torch.no_grad():
                ctx -= lr * velocity
            losses.append(loss.item())
            steps.append(epoch)
        history.append({"epoch": epoch + 1, "lr": lr, "loss": sum(losses) / len(losses)})
    return history, steps


@pytest.fixture
def two_views(task):
    """The task with a second, different view of every training image."""
    features = torch.cat([task.train_features, task.train_features.flip(-1)])
    return dataclasses.replace(task, train_features=features)


def test_fit_is_dassl_sgd(clip, two_views):
    config = TrainConfig(method="coop", dataset="shapes", shots=4, epochs=4, batch_size=6, lr=0.3).resolved()
    ours, theirs = build_model(clip, config, two_views.base_names), build_model(clip, config, two_views.base_names)
    features, labels = two_views.train_features, two_views.train_labels
    torch.manual_seed(1234)   # the loop's shuffling must not depend on the global generator
    history, steps = fit(ours, config, 2, len(labels), lambda view, idx: Batch(features[view, idx], labels[idx]))
    expected_history, expected_steps = reference_sgd(theirs, config, features, labels)
    assert torch.allclose(ours.learner.ctx, theirs.learner.ctx, atol=1e-5)
    assert [s["epoch"] for s in steps] == expected_steps and len(steps) == 4 * (20 // 6)
    for got, want in zip(history, expected_history, strict=True):
        assert got["epoch"] == want["epoch"] and got["lr"] == pytest.approx(want["lr"])
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_train_is_fit_on_the_task(clip, task):
    config = TrainConfig(method="coop", dataset="shapes", shots=4, epochs=3, batch_size=8)
    result = train(config, clip, task)
    model = build_model(clip, config.resolved(), task.base_names)
    fit(model, config.resolved(), 1, len(task.train_labels),
        lambda view, idx: Batch(task.train_features[view, idx], task.train_labels[idx]))
    assert torch.equal(result.model.learner.ctx, model.learner.ctx)
    assert set(result.history[0]) == {"epoch", "lr", "loss"}   # no per-epoch evaluation unless asked


def test_train_loads_what_it_is_not_given(clip, tmp_path, capsys):
    config = TrainConfig(method="coop", dataset="shapes", shots=2, epochs=1, batch_size=4, seed=2)
    alone = train(config, split_dir=tmp_path)
    given = train(config, clip, prepare_task(clip, "shapes", 2, 2, split_dir=tmp_path))
    assert torch.equal(alone.model.learner.ctx, given.model.learner.ctx)
    assert alone.model.learner.classnames == data.SHAPE_CLASSES[:5]
    assert capsys.readouterr().err == ""   # no progress bar unless asked


def test_tracking_and_progress(clip, task, capsys):
    result = train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=2, batch_size=8), clip, task,
                   track=True, progress=True)
    assert all(0 <= row[half] <= 100 for row in result.history for half in ("base", "new"))
    assert "coop on shapes" in capsys.readouterr().err


def test_zero_shot_is_not_trained(clip, task):
    with pytest.raises(ValueError, match="zeroshot is not trained: evaluate it with evaluate_zero_shot"):
        train(TrainConfig(method="zeroshot", dataset="shapes"), clip, task)


def test_a_non_finite_gradient_alone_stops_training(clip, task, monkeypatch):
    def broken(model, batch, hp):
        loss, grad = methods.loss_and_grad(model, batch)
        return methods.Step(loss, grad * float("nan"))

    monkeypatch.setitem(methods.METHODS, "coop", dataclasses.replace(methods.METHODS["coop"], update=broken))
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient .* in coop at epoch 0, step 0: "
                                                 r"lower the learning rate \(now 0.05\)"):
        train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=1, batch_size=8), clip, task)


@pytest.mark.parametrize("field", ["shots", "batch_size", "views"])
def test_counts_must_be_positive(field):
    with pytest.raises(ValueError, match=f"^{field} must be positive, got 0$"):
        TrainConfig(**{field: 0}).resolved()
    TrainConfig(**{field: 1}).resolved()


def test_zero_epochs_is_allowed_but_not_fewer():
    assert TrainConfig(epochs=0).resolved().epochs == 0
    with pytest.raises(ValueError, match="^epochs must be positive, got -1$"):
        TrainConfig(epochs=-1).resolved()


def test_resolved_fills_the_method_defaults_and_keys_them():
    config = TrainConfig(method="prograd", hparams={"lam": 0.5})
    assert config.resolved().hparams == {"lam": 0.5, "T": 1.0}
    assert config.key() == TrainConfig(method="prograd", hparams={"T": 1, "lam": 0.5}).key()
    assert config.key() != TrainConfig(method="prograd").key() and len(config.key()) == 12
    with pytest.raises(ValueError, match=r"^n_ctx=8 with ctx_init='a photo of a': the initial words set the "
                                         r"context length, so give n_ctx only with ctx_init=None$"):
        TrainConfig(n_ctx=8).resolved()


def test_random_context_follows_n_ctx_class_specific_and_seed(clip, task):
    def ctx(**kwargs):
        config = TrainConfig(ctx_init=None, **kwargs).resolved()
        return build_model(clip, config, task.base_names).learner.ctx

    assert ctx(n_ctx=1).shape == (1, clip.model.token_embedding.weight.shape[1])
    assert ctx(n_ctx=6, class_specific=True).shape[:2] == (5, 6)
    assert not torch.equal(ctx(n_ctx=2, seed=1), ctx(n_ctx=2, seed=2))
    assert torch.equal(ctx(n_ctx=2, seed=1), ctx(n_ctx=2, seed=1))


def test_prepare_task_draws_by_seed_stores_the_split_and_encodes_each_half(clip, tmp_path):
    a = prepare_task(clip, "shapes", 4, 1, split_dir=tmp_path)
    again = prepare_task(clip, "shapes", 4, 1)
    other = prepare_task(clip, "shapes", 4, 2)
    assert (tmp_path / "shapes_shot4_seed1.json").exists()
    assert a.train_features.shape[:2] == (1, 20) and torch.equal(a.train_features, again.train_features)
    assert not torch.equal(a.train_features, other.train_features)
    assert a.base_names == data.SHAPE_CLASSES[:5] and a.new_names == data.SHAPE_CLASSES[5:]
    dataset = data.load_dataset("shapes")
    for split, name in ((a.val, "val"), (a.test, "test")):
        for half, classes in zip(("base", "new"), data.base_new_classes(10)):
            subset = data.select_classes(getattr(dataset, name), classes)
            assert torch.equal(split[half][1], torch.from_numpy(subset.labels))
            assert len(split[half][0]) == len(subset)
    assert not torch.equal(a.val["base"][0][:10], a.test["base"][0][:10])
