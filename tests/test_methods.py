"""Property tests of every gradient rule (chapters 3-6), the methods' knobs, and a second model
through the build slot."""
import math
import shutil
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from gcscoop_lib import evaluation, methods
from gcscoop_lib.methods import Batch, constrain_sam_gradient, prograd_direction
from gcscoop_lib.prompts import PromptedClip, PromptLearner
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


def test_gcscoop_agreement_exactly_at_the_upper_bound_is_sam():
    g = torch.tensor([1.0, 0.0])
    grad, regime, cos = constrain_sam_gradient(2 * g, g, 0.5, 1.0)
    assert cos == 1.0 and regime == "sam" and torch.equal(grad, 2 * g)


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
    step = methods.sam_update(model, batch, methods.SamKnobs(rho=0.2))
    _, g = methods.loss_and_grad(model, batch)
    with torch.no_grad():
        model.learner.ctx.add_((0.2 * g / (g.norm() + 1e-12)).view_as(model.learner.ctx))
    _, g_at_eps = methods.loss_and_grad(model, batch)
    assert torch.allclose(step.grad, g_at_eps)


def test_gcscoop_with_zero_rho_is_coop_step_for_step(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=4, batch_size=8, lr=0.05)
    coop = train(TrainConfig(method="coop", **common), clip, task)
    gcs = train(TrainConfig(method="gcscoop", knobs={"rho": 0.0}, **common), clip, task)
    assert torch.equal(coop.model.learner.ctx, gcs.model.learner.ctx)
    assert [s["loss"] for s in coop.steps] == [s["loss"] for s in gcs.steps]
    assert {s["regime"] for s in gcs.steps} == {"sam"}


def test_training_records_the_regime_its_cosine_implies(clip, task):
    low, up = 0.5, 0.9
    result = train(TrainConfig(method="gcscoop", dataset="shapes", shots=4, epochs=6, batch_size=8, lr=0.05,
                               knobs={"rho": 2.0, "beta_low": low, "beta_up": up}), clip, task)
    for s in result.steps:
        expected = "sam" if s["cos"] >= up else "erm" if s["cos"] <= low else "projected"
        assert s["regime"] == expected


def test_kgcoop_with_zero_lambda_is_coop(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05)
    coop = train(TrainConfig(method="coop", **common), clip, task)
    kg = train(TrainConfig(method="kgcoop", knobs={"lam": 0.0}, **common), clip, task)
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
        update, knobs = methods.get(method).update, methods.get(method).knobs()
        a, b = update(eager, batch, knobs), update(compiled, batch, knobs)
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5 * a.grad.abs().max())
        assert a.info.keys() == b.info.keys()


# ----------------------------------------------------------------------------- each rule, re-derived independently
def moved_model(clip, task, scale=0.05, seed=0):
    """A model whose context has left the hand-written prompt (where ProGrad's and KgCoOp's extra terms vanish)."""
    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    offset = scale * torch.randn(model.learner.ctx.shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model.learner.ctx.add_(offset)
    return model


def small_batch(task, n=16):
    return Batch(task.train_features[0][:n], task.train_labels[:n])


def grad_of(loss, model):
    return torch.autograd.grad(loss, model.params, retain_graph=True)[0].reshape(-1)


def test_kgcoop_gradient_is_ce_plus_lambda_times_distance(clip, task):
    model, batch = moved_model(clip, task), small_batch(task)
    step = methods.kgcoop_update(model, batch, methods.KgCoOpKnobs(lam=8.0))
    text = model.text_features()
    ce = F.cross_entropy(model.logit_scale * batch.features @ text.T, batch.labels)
    distance = (1 - (text * model.zs_text).sum(-1)).mean()   # unit vectors: cosine is the dot product
    expected = grad_of(ce + 8.0 * distance, model)
    assert torch.allclose(step.grad, expected, rtol=1e-4, atol=1e-6)
    assert step.info["knowledge"] == pytest.approx(distance.item(), abs=1e-6)


def test_kgcoop_pulls_the_class_features_towards_the_hand_written_ones(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=6, batch_size=8, lr=0.2)
    coop = train(TrainConfig(method="coop", **common), clip, task).model
    kg = train(TrainConfig(method="kgcoop", knobs={"lam": 8.0}, **common), clip, task).model
    distance = [(1 - (m.text_features() * m.zs_text).sum(-1)).mean().item() for m in (coop, kg)]
    assert distance[1] < 0.5 * distance[0]


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_prograd_step_projects_the_ce_gradient_against_the_kl_gradient(clip, task, T):
    model, batch = moved_model(clip, task, scale=0.1), small_batch(task)
    logits = model.logit_scale * batch.features @ model.text_features().T
    ce = F.cross_entropy(logits, batch.labels)
    teacher = (model.logit_scale * batch.features @ model.zs_text.T / T).softmax(-1)
    kl = (teacher * (teacher.log() - (logits / T).log_softmax(-1))).sum(-1).mean() * T ** 2
    g_d, g_g = grad_of(ce, model), grad_of(kl, model)
    step = methods.prograd_update(model, batch, methods.ProGradKnobs(lam=1.0, T=T))
    dot = g_d @ g_g
    expected = g_d if dot >= 0 else g_d - dot / (g_g @ g_g) * g_g
    assert step.info["conflict"] == bool(dot < 0)
    assert step.info["cos"] == pytest.approx((dot / (g_d.norm() * g_g.norm())).item(), abs=1e-4)
    assert torch.allclose(step.grad, expected, rtol=1e-3, atol=1e-5 * g_d.abs().max())
    _, got_d, got_g = methods.prograd_gradients(model, batch, T)
    assert torch.allclose(got_d, g_d, rtol=1e-4, atol=1e-7) and torch.allclose(got_g, g_g, rtol=1e-3, atol=1e-7)


def test_prograd_removes_exactly_the_conflicting_component():
    g_domain, g_general = pair_with_cosine(-0.6)
    result, conflict = prograd_direction(g_domain, g_general, lam=1.0)
    assert conflict
    assert abs(result @ g_general) < 1e-4 * g_domain.norm() * g_general.norm()   # orthogonal to G_g
    assert torch.allclose(g_domain - result, ((g_domain @ g_general) / g_general.norm() ** 2) * g_general, atol=1e-5)


def test_prograd_treats_a_zero_dot_product_as_no_conflict():
    g_domain = torch.tensor([1.0, 0.0])
    result, conflict = prograd_direction(g_domain, torch.tensor([0.0, 2.0]), lam=1.0)
    assert not conflict and torch.equal(result, g_domain)


def test_at_the_hand_written_prompt_the_teacher_is_the_student(clip, task):
    """Same code path for teacher and student: ProGrad's general gradient is exactly zero at the start."""
    model, batch = build_model(clip, TrainConfig(dataset="shapes"), task.base_names), small_batch(task)
    assert torch.equal(model.text_features(), model.zs_text)
    _, g_d, g_g = methods.prograd_gradients(model, batch, 1.0)
    assert torch.count_nonzero(g_g) == 0 and g_d.norm() > 0.01
    step = methods.kgcoop_update(model, batch, methods.KgCoOpKnobs())
    assert abs(step.info["knowledge"]) < 1e-6


@pytest.mark.parametrize("low,up", [(0.5, 0.8), (0.3, 0.9)])
@pytest.mark.parametrize("offset", [-1e-3, 1e-3])
def test_gcscoop_regime_changes_exactly_at_each_bound(low, up, offset):
    for bound, below, above in ((low, "erm", "projected"), (up, "projected", "sam")):
        g_erm, g_sam = pair_with_cosine(bound + offset, seed=3)
        _, regime, cos = constrain_sam_gradient(g_sam, g_erm, low, up)
        assert cos == pytest.approx(bound + offset, abs=1e-5)
        assert regime == (above if offset > 0 else below)


def test_gcscoop_projection_keeps_the_sam_component_along_the_sum():
    g_erm, g_sam = pair_with_cosine(0.7, ratio=2.0, seed=5)
    grad, regime, _ = constrain_sam_gradient(g_sam, g_erm, 0.5, 0.8)
    z = g_sam + g_erm
    assert regime == "projected"
    assert torch.allclose(grad, (g_sam @ z) / (z @ z) * z, atol=1e-5)
    assert grad.norm() < g_sam.norm()


def test_sam_perturbs_by_rho_along_the_normalised_gradient():
    g = torch.tensor([3.0, 4.0])
    assert torch.allclose(methods.sam_epsilon(g, 0.5), torch.tensor([0.3, 0.4]))


def test_gcscoop_uses_the_gradient_at_the_perturbed_point_when_they_agree(clip, task):
    model, batch = moved_model(clip, task), small_batch(task)
    step = methods.gcscoop_update(model, batch, methods.GcsCoOpKnobs(rho=0.05, beta_low=-1.0, beta_up=-1.0))
    sam = methods.sam_update(model, batch, methods.SamKnobs(rho=0.05))
    assert step.info["regime"] == "sam" and torch.equal(step.grad, sam.grad)
    erm = methods.gcscoop_update(model, batch, methods.GcsCoOpKnobs(rho=0.05, beta_low=0.99999, beta_up=1.0))
    assert erm.info["regime"] == "erm" and torch.equal(erm.grad, methods.loss_and_grad(model, batch)[1])


def test_the_step_loss_is_taken_at_the_unperturbed_context(clip, task):
    model, batch = moved_model(clip, task), small_batch(task)
    loss, _ = methods.loss_and_grad(model, batch)
    for method, knobs in (("sam", methods.SamKnobs(rho=0.5)), ("gcscoop", methods.GcsCoOpKnobs(rho=0.5))):
        assert methods.get(method).update(model, batch, knobs).loss.item() == pytest.approx(loss.item(), rel=1e-6)


def test_assign_grad_puts_the_flat_gradient_on_each_parameter():
    a, b, c = (torch.zeros(shape, requires_grad=True) for shape in ((2, 3), (4,), (5,)))
    flat = torch.arange(15.0)
    methods.assign_grad([a, b, c], flat)
    assert torch.equal(a.grad, flat[:6].view(2, 3)) and torch.equal(b.grad, flat[6:10])
    assert torch.equal(c.grad, flat[10:])


# ----------------------------------------------------------------------------- knobs
def test_knobs_are_checked():
    with pytest.raises(ValueError, match="^the temperature T must be > 0, got 0.0$"):
        methods.ProGradKnobs(T=0.0)
    for knobs in (methods.KgCoOpKnobs, methods.ProGradKnobs):
        with pytest.raises(ValueError, match="^lam must be >= 0, got -1.0$"):
            knobs(lam=-1.0)
        assert knobs(lam=0.0).lam == 0.0 and knobs(lam=0.5).lam == 0.5
    for knobs in (methods.SamKnobs, methods.GcsCoOpKnobs):
        with pytest.raises(ValueError, match="^rho must be >= 0, got -0.1$"):
            knobs(rho=-0.1)
        assert knobs(rho=0.0).rho == 0.0
    with pytest.raises(ValueError, match="^coop has no knob 'rho': it takes none$"):
        methods.get("coop").knobs({"rho": 0.1})
    with pytest.raises(ValueError, match="^sam has no knob 'lam': it takes rho$"):
        methods.get("sam").knobs({"lam": 0.1})
    assert methods.get("gcscoop").knobs({"rho": 1}) == methods.GcsCoOpKnobs(rho=1.0)
    assert methods.get("prograd").knobs() == methods.ProGradKnobs()


@dataclass(frozen=True)
class ToyKnobs:
    rounds: int = 1
    symmetric: bool = False
    scale: float = 1.0


TOY = methods.Method("toy", "Toy", "#000000", methods.coop_update, ToyKnobs)


def test_knob_values_become_the_types_their_dataclass_declares():
    knobs = TOY.knobs({"rounds": "3", "symmetric": "true", "scale": "2"})
    assert knobs == ToyKnobs(rounds=3, symmetric=True, scale=2.0)
    assert [type(v) for v in (knobs.rounds, knobs.symmetric, knobs.scale)] == [int, bool, float]
    assert TOY.knobs({"symmetric": "0"}).symmetric is False and TOY.knobs({"symmetric": "1"}).symmetric is True
    assert TOY.knobs({"symmetric": "False"}).symmetric is False and TOY.knobs({"rounds": 4.0}).rounds == 4
    assert TOY.describe_knobs() == "rounds=1, symmetric=False, scale=1.0"
    assert methods.get("coop").describe_knobs() == "none"


@pytest.mark.parametrize("overrides,message", [
    ({"symmetric": "yes"}, "knob symmetric is true or false, got 'yes'"),
    ({"rounds": "2.5"}, "knob rounds must be an int, got '2.5'"),
    ({"rounds": 2.5}, "knob rounds must be an int, got 2.5"),
    ({"scale": "much"}, "knob scale must be a float, got 'much'"),
    ({"depth": 1}, "toy has no knob 'depth': it takes rounds, symmetric, scale"),
])
def test_a_bad_knob_value_or_name_is_one_line_error(overrides, message):
    with pytest.raises(ValueError) as error:
        TOY.knobs(overrides)
    assert str(error.value) == message


def test_only_zero_shot_is_not_trained():
    assert [m.name for m in methods.METHODS.values() if not m.trains] == ["zeroshot"]
    with pytest.raises(ValueError, match=r"^unknown method 'adam': choose one of \["):
        methods.get("adam")


# ----------------------------------------------------------------------------- a second model through the build slot
class ShiftedClip(PromptedClip):
    """CoOp's prompts plus one learned shift added to every image feature: a model with an
    extra parameter that moves to new classes with the context."""

    def __init__(self, clip, learner, template, shift=None):
        super().__init__(clip, learner, template)
        width = clip.model.text_projection.shape[1]
        self.shift = torch.nn.Parameter(torch.zeros(width)) if shift is None else shift

    @property
    def params(self):
        return [self.learner.ctx, self.shift]

    def learned(self):
        return {**super().learned(), "shift": self.shift.detach().cpu().clone()}

    def load_learned(self, learned):
        super().load_learned(learned)
        with torch.no_grad():
            self.shift.copy_(learned["shift"])
        return self

    def logits(self, image_features, text_features=None):
        return super().logits(F.normalize(image_features + self.shift, dim=-1), text_features)

    def for_classes(self, classnames):
        return ShiftedClip(self.clip, self.learner.for_classes(classnames), self.template, self.shift)


def shifted_clip(clip, config, classnames, template):
    learner = PromptLearner(clip, classnames, config.n_ctx, config.ctx_init, config.position,
                            config.class_specific, seed=config.seed)
    return ShiftedClip(clip, learner, template)


SHIFTED = methods.Method("shifted", "Shifted CoOp", "#000000", methods.coop_update, build=shifted_clip)


def test_a_method_with_its_own_model_is_trained_by_the_same_loop(clip, task, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "shifted", SHIFTED)
    config = TrainConfig(method="shifted", dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.005)
    result = train(config, clip, task, track=True)
    assert type(result.model) is ShiftedClip and result.model.shift.norm() > 0
    assert not torch.equal(result.model.learner.ctx, result.model.learner.initial_ctx)
    assert all("new" in row for row in result.history)   # the new classes' model carries the shift
    unshifted = PromptedClip(clip, result.model.learner, task.template)
    features = task.test["base"][0]
    assert not torch.allclose(result.model.logits(features), unshifted.logits(features))
    assert 0 <= evaluation.evaluate_prompt(result.model, task)["new"] <= 100
