"""The training loop against an independent re-implementation of Dassl's SGD recipe, the run's
config and its checks, and the warnings of a run that learned nothing."""
import dataclasses

import numpy as np
import pytest
import torch

from gcscoop_lib import evaluation, methods, world
from gcscoop_lib.methods import Batch
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.training import Run, TrainConfig, build_model, fit, lr_at, train


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
    run = TrainConfig(method="coop", dataset="shapes", shots=4, epochs=4, batch_size=6, lr=0.3).resolve()
    ours, theirs = build_model(clip, run, two_views.base_names), build_model(clip, run, two_views.base_names)
    features, labels = two_views.train_features, two_views.train_labels
    torch.manual_seed(1234)   # the loop's shuffling must not depend on the global generator
    history, steps = fit(ours, run, 2, len(labels), lambda view, idx: Batch(features[view, idx], labels[idx]))
    expected_history, expected_steps = reference_sgd(theirs, run.config, features, labels)
    # torch's SGD rounds p + alpha * g once (a fused multiply-add on AVX2), the reference twice: after
    # 12 steps at lr 0.3 the contexts (|ctx| up to 1.2) differ by up to 2e-5, a few hundred float32 ulps
    assert torch.allclose(ours.learner.ctx, theirs.learner.ctx, rtol=1e-4, atol=1e-4)
    assert [s["epoch"] for s in steps] == expected_steps and len(steps) == 4 * (20 // 6)
    for got, want in zip(history, expected_history, strict=True):
        assert got["epoch"] == want["epoch"] and got["lr"] == pytest.approx(want["lr"])
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_schedule_is_constant_warmup_then_cosine():
    assert lr_at(0, 10, 0.1) == 1e-5
    assert lr_at(1, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(6, 10, 0.1) == pytest.approx(0.05)
    assert lr_at(10, 10, 0.1) == pytest.approx(0.05 * (1 + np.cos(np.pi * 0.9)))


def test_training_fits_the_base_classes_and_evaluates_only_when_asked(clip, task):
    result = train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=6, batch_size=8, lr=0.05), clip, task)
    before = build_model(clip, TrainConfig(dataset="shapes"), task.base_names, task.template)
    features, labels = task.train_features[0], task.train_labels
    loss = [torch.nn.functional.cross_entropy(m.logits(features), labels).item() for m in (before, result.model)]
    assert loss[1] < 0.8 * loss[0] and result.history[-1]["loss"] < result.history[0]["loss"]
    assert evaluation.accuracy(result.model, features, labels) >= evaluation.accuracy(before, features, labels)
    assert all(set(row) == {"epoch", "lr", "loss"} for row in result.history)
    assert len(result.steps) == 6 * (20 // 8) and result.seconds > 0


def test_train_loads_what_it_is_not_given(clip, tmp_path, capsys):
    config = TrainConfig(method="coop", dataset="shapes", shots=2, epochs=2, batch_size=4, seed=2)
    alone = train(config, split_dir=tmp_path)
    given = train(config, clip, prepare_task(clip, "shapes", 2, 2, split_dir=tmp_path))
    assert torch.equal(alone.model.learner.ctx, given.model.learner.ctx)
    assert alone.model.learner.classnames == world.SHAPE_CLASSES[:5]
    assert capsys.readouterr().err == ""   # no progress bar unless asked


def test_tracking_and_progress(clip, task, capsys):
    result = train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=2, batch_size=8), clip, task,
                   track=True, progress=True)
    assert all(0 <= row[half] <= 100 for row in result.history for half in ("base", "new"))
    assert "coop on shapes" in capsys.readouterr().err


def test_training_on_augmented_views(clip):
    views = prepare_task(clip, "shapes", shots=2, seed=1, views=2)
    assert views.train_features.shape[0] == 2
    result = train(TrainConfig(method="coop", dataset="shapes", shots=2, epochs=2, batch_size=4, views=2), clip, views)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["loss"])


def test_zero_shot_is_not_trained(clip, task):
    with pytest.raises(ValueError, match="^Zero-shot CLIP is not trained: evaluate it with evaluate_zero_shot$"):
        train(TrainConfig(method="zeroshot", dataset="shapes"), clip, task)


def test_non_finite_loss_stops_training(clip, task):
    broken = dataclasses.replace(task, train_features=task.train_features * float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=2, batch_size=8), clip, broken)


def with_update(config: TrainConfig, update) -> Run:
    """The run of a config, stepped by another update rule."""
    run = config.resolve()
    return dataclasses.replace(run, method=dataclasses.replace(run.method, update=update))


def test_a_non_finite_gradient_alone_stops_training(clip, task):
    def broken(model, batch, knobs):
        loss, grad = methods.loss_and_grad(model, batch)
        return methods.Step(loss, grad * float("nan"))

    run = with_update(TrainConfig(dataset="shapes", shots=4, epochs=2, batch_size=8, lr=0.05), broken)
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient .* in coop \(seed 1\) at epoch 0, step 0: "
                                                 r"lower the learning rate \(now 0.05\)"):
        train(run, clip, task)


def test_a_run_whose_loss_rises_warns_that_it_diverged(clip, task):
    config = TrainConfig(dataset="shapes", shots=4, epochs=3, batch_size=8, lr=1e4)
    with pytest.warns(UserWarning, match=r"CoOp on shapes diverged: its training loss rose from .*; "
                                         r"lower the learning rate \(now 10000\)"):
        result = train(config, clip, task)
    assert np.isfinite(result.history[-1]["loss"]) and result.history[-1]["loss"] > result.history[0]["loss"]


def test_a_run_whose_loss_stays_put_warns_that_it_learned_nothing(clip, task):
    config = TrainConfig(dataset="shapes", shots=4, epochs=2, lr=1e-9)   # one full batch: the same every epoch
    with pytest.warns(UserWarning, match=r"CoOp on shapes learned nothing: .* raise the learning rate \(now 1e-09\)"):
        train(config, clip, task)


def test_gradient_ascent_warns_that_the_run_diverged(clip, task):
    def ascent(model, batch, knobs):
        loss, grad = methods.loss_and_grad(model, batch)
        return methods.Step(loss, -grad)

    with pytest.warns(UserWarning, match="diverged"):
        train(with_update(TrainConfig(dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05), ascent), clip, task)


# ----------------------------------------------------------------------------- the config
@pytest.mark.parametrize("kwargs,message", [
    (dict(method="adam"), "unknown method 'adam'"),
    (dict(dataset="cifar10"), "unknown dataset 'cifar10'"),
    (dict(method="sam", knobs={"rho": -0.1}), "rho must be >= 0"),
    (dict(method="gcscoop", knobs={"beta_low": 0.9, "beta_up": 0.8}), "must not exceed beta_up"),
    (dict(method="coop", knobs={"rho": 0.1}), "coop has no knob 'rho'"),
    (dict(method="sam", knobs={"rho": "wide"}), "knob rho must be a float, got 'wide'"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(n_ctx=8), "give n_ctx only with ctx_init=None"),
    (dict(ctx_init=None), "a random context needs n_ctx >= 1"),
])
def test_bad_config_raises_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        TrainConfig(**kwargs).resolve()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("field", ["shots", "batch_size", "views"])
def test_counts_must_be_at_least_one(field):
    with pytest.raises(ValueError, match=f"^{field} must be at least 1, got 0$"):
        TrainConfig(**{field: 0}).resolve()
    TrainConfig(**{field: 1}).resolve()


@pytest.mark.parametrize("epochs", [-1, 0, 1])
def test_a_trained_method_needs_two_epochs_since_the_first_is_the_warm_up(epochs):
    with pytest.raises(ValueError) as error:
        TrainConfig(method="gcscoop", epochs=epochs).resolve()
    assert str(error.value) == (f"epochs must be at least 2 to train GCSCoOp, got {epochs}: epoch 0 is the warm-up "
                                "at lr 1e-05, so fewer leave the context where it started")
    assert TrainConfig(method="gcscoop", epochs=2).resolve().config.epochs == 2
    assert TrainConfig(method="zeroshot", epochs=epochs).resolve().config.epochs == epochs


def test_the_defaults_are_the_papers_protocol():
    config = TrainConfig()
    assert (config.lr, config.epochs, config.batch_size, config.shots) == (0.002, 200, 128, 16)
    assert config.ctx_init == "a photo of a" and config.knobs == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.1


def test_resolve_fills_in_the_method_defaults_and_keys_them():
    run = TrainConfig(method="prograd", knobs={"lam": 0.5}).resolve()
    assert run.config.knobs == {"lam": 0.5, "T": 1.0} and run.knobs == methods.ProGradKnobs(lam=0.5)
    assert run.method is methods.get("prograd")
    assert run.key == TrainConfig(method="prograd", knobs={"T": 1, "lam": 0.5}).resolve().key
    assert run.key == TrainConfig(method="prograd", knobs={"lam": "0.5"}).resolve().key   # the command line's text
    assert run.key != TrainConfig(method="prograd").resolve().key and len(run.key) == 12
    assert int(run.key, 16) >= 0
    with pytest.raises(ValueError, match=r"^n_ctx=8 with ctx_init='a photo of a': the initial words set the "
                                         r"context length, so give n_ctx only with ctx_init=None$"):
        TrainConfig(n_ctx=8).resolve()


def test_a_field_added_at_its_earlier_value_keeps_every_stored_key():
    """`crop` came after runs were recorded: at "square" a run's key is the hash of the config
    without it, as every stored key was made; another crop is another run."""
    import hashlib
    import json

    run = TrainConfig(dataset="digits", views=8).resolve()
    before = {k: v for k, v in dataclasses.asdict(run.config).items() if k != "crop"}
    assert run.key == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert TrainConfig(dataset="digits", views=8, crop="papers").resolve().key != run.key
    with pytest.raises(ValueError, match=r"^unknown crop 'round': choose one of \['square', 'papers'\]$"):
        TrainConfig(crop="round").resolve()


def test_build_model_takes_a_config_or_its_run(clip, task):
    config = TrainConfig(dataset="shapes", ctx_init=None, n_ctx=3)
    a, b = build_model(clip, config, task.base_names), build_model(clip, config.resolve(), task.base_names)
    assert torch.equal(a.learner.ctx, b.learner.ctx) and a.learner.n_ctx == 3
