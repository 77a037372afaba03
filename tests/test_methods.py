"""Property tests of every gradient rule (chapters 3-6)."""
import math
import shutil

import pytest
import torch

from gcscoop_lib import methods
from gcscoop_lib.methods import Batch, constrain_sam_gradient, prograd_direction
from gcscoop_lib.prompts import PromptedClip
from gcscoop_lib.training import TrainConfig, build_model, train


def pair_with_cosine(cos: float, dim: int = 64, seed: int = 0, ratio: float = 1.3):
    """Two random vectors whose cosine is exactly `cos` (up to float rounding)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, generator=g)
    b = torch.randn(dim, generator=g)
    a_hat = a / a.norm()
    b_perp = b - (b @ a_hat) * a_hat
    b = ratio * a.norm() * (cos * a_hat + math.sqrt(1 - cos**2) * b_perp / b_perp.norm())
    return a, b


@pytest.mark.parametrize("seed", range(20))
def test_prograd_never_conflicts_with_general_direction(seed):
    g = torch.Generator().manual_seed(seed)
    g_domain, g_general = torch.randn(50, generator=g), torch.randn(50, generator=g)
    result, conflict = prograd_direction(g_domain, g_general, lam=1.0)
    assert conflict == bool(g_domain @ g_general < 0)
    assert result @ g_general >= -1e-5 * g_domain.norm() * g_general.norm()


def test_prograd_keeps_agreeing_gradient():
    g_domain, g_general = pair_with_cosine(0.3)
    result, conflict = prograd_direction(g_domain, g_general, lam=1.0)
    assert not conflict and torch.equal(result, g_domain)


def test_prograd_lambda_scales_the_removed_part():
    g_domain, g_general = pair_with_cosine(-0.6)
    half, _ = prograd_direction(g_domain, g_general, lam=0.5)
    full, _ = prograd_direction(g_domain, g_general, lam=1.0)
    assert torch.allclose(half, (g_domain + full) / 2, atol=1e-6)


@pytest.mark.parametrize("cos,regime", [(0.95, "sam"), (0.8, "sam"), (0.65, "projected"), (0.5, "erm"), (-0.4, "erm")])
def test_gcscoop_regimes_match_their_formula(cos, regime):
    g_erm, g_sam = pair_with_cosine(cos)
    if cos in (0.8, 0.5):  # exact boundaries: build them so the computed cosine is exact
        g_erm, g_sam = torch.tensor([1.0, 0.0]), torch.tensor([cos, math.sqrt(1 - cos**2)])
    grad, got, measured = constrain_sam_gradient(g_sam, g_erm, 0.5, 0.8)
    assert got == regime
    assert measured == pytest.approx(cos, abs=1e-6)
    if regime == "sam":
        assert torch.equal(grad, g_sam)
    elif regime == "erm":
        assert torch.equal(grad, g_erm)
    else:
        z = (g_sam + g_erm) / (g_sam + g_erm).norm()
        assert torch.allclose(grad, (g_sam @ z) * z)
        assert torch.allclose(grad / grad.norm(), z, atol=1e-6)  # along the raw sum, not the normalised one


def test_gcscoop_without_lower_bound_never_falls_back_to_erm():
    g_erm, g_sam = pair_with_cosine(-0.5)
    _, regime, _ = constrain_sam_gradient(g_sam, g_erm, 0.0, 0.8)
    assert regime == "projected"


def test_perturbation_is_restored_exactly(clip, task):
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    before = model.learner.ctx.detach().clone()
    with methods.perturbed(model, torch.randn(before.numel()) * 0.3):
        assert not torch.equal(model.learner.ctx, before)
    assert torch.equal(model.learner.ctx, before)


def test_sam_gradient_is_taken_at_the_perturbed_point(clip, task):
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    batch = Batch(task.train_features[0][:8], task.train_labels[:8])
    step = methods.sam_update(model, batch, {"rho": 0.2})
    _, g = methods.loss_and_grad(model, batch)
    with torch.no_grad():
        model.learner.ctx.add_((0.2 * g / (g.norm() + 1e-12)).view_as(model.learner.ctx))
    _, g_at_eps = methods.loss_and_grad(model, batch)
    assert torch.allclose(step.grad, g_at_eps)


def test_gcscoop_with_zero_rho_is_coop_step_for_step(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=4, batch_size=8, lr=0.05)
    coop = train(TrainConfig(method="coop", **common), clip, task)
    gcs = train(TrainConfig(method="gcscoop", hparams={"rho": 0.0}, **common), clip, task)
    assert torch.equal(coop.model.learner.ctx, gcs.model.learner.ctx)
    assert [s["loss"] for s in coop.steps] == [s["loss"] for s in gcs.steps]
    assert {s["regime"] for s in gcs.steps} == {"sam"}


def test_training_records_the_regime_its_cosine_implies(clip, task):
    low, up = 0.5, 0.9
    result = train(TrainConfig(method="gcscoop", dataset="shapes", shots=4, epochs=6, batch_size=8, lr=0.05,
                               hparams={"rho": 2.0, "beta_low": low, "beta_up": up}), clip, task)
    for s in result.steps:
        expected = "sam" if s["cos"] >= up else "erm" if s["cos"] <= low else "projected"
        assert s["regime"] == expected


def test_kgcoop_with_zero_lambda_is_coop(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05)
    coop = train(TrainConfig(method="coop", **common), clip, task)
    kg = train(TrainConfig(method="kgcoop", hparams={"lam": 0.0}, **common), clip, task)
    assert torch.allclose(coop.model.learner.ctx, kg.model.learner.ctx, atol=1e-6)


def test_same_seed_same_result(clip, task):
    config = TrainConfig(method="prograd", dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05)
    a, b = train(config, clip, task), train(config, clip, task)
    assert torch.equal(a.model.learner.ctx, b.model.learner.ctx)
    assert a.history == b.history


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_text_encoder_gives_the_eager_steps(clip, task):
    """ProGrad differentiates one compiled graph twice; GCSCoOp runs it at a perturbed context."""
    batch = Batch(task.train_features[0][:8], task.train_labels[:8])
    eager = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    compiled = PromptedClip(clip, build_model(clip, TrainConfig(dataset="shapes"), task.base_names).learner,
                            compile=True)
    offset = 0.05 * torch.randn(eager.learner.ctx.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # away from zero-shot, where ProGrad's general gradient is only rounding noise
        for model in (eager, compiled):
            model.learner.ctx.add_(offset)
    for method in ("prograd", "gcscoop"):
        update, hp = methods.METHODS[method][0], methods.method_hparams(method)
        a, b = update(eager, batch, hp), update(compiled, batch, hp)
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5 * a.grad.abs().max())
        assert a.info.keys() == b.info.keys()
