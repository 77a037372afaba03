"""CoCoOp's model: its batched per-image prompts against a written-out loop over images, its
meta-network, and its place in the registry (a method whose model differs)."""
import pytest
import torch
import torch.nn.functional as F

from gcscoop_lib import cocoop, methods
from gcscoop_lib.methods import Batch
from gcscoop_lib.prompts import TextEncoder
from gcscoop_lib.training import TrainConfig, build_model, train


def cocoop_model(clip, task, scale=0.5):
    torch.manual_seed(0)
    model = cocoop.build(clip, TrainConfig(method="cocoop", dataset="shapes"), task.base_names, task.template)
    with torch.no_grad():
        for p in model.meta_net.parameters():
            p.normal_(0, scale)
    return model


def loop_logits(model, clip, features):
    """What CoCoOp's public code does: one image at a time, its prompts through the full text encoder."""
    full = TextEncoder(clip, reference=True)
    rows = []
    for f in features:
        ctx = model.learner.ctx + model.meta_net(f[None])[0]
        text = F.normalize(full(model.learner(ctx), model.learner.token_ids()).float(), dim=-1)
        rows.append(model.logit_scale * f @ text.T)
    return torch.stack(rows)


def test_batched_per_image_prompts_equal_a_loop_over_images_in_value_and_gradient(clip, task):
    model = cocoop_model(clip, task)
    features = task.train_features[0][:6]
    ours, theirs = model.logits(features), loop_logits(model, clip, features)
    assert torch.allclose(ours, theirs, atol=1e-4)
    for a, b in zip(torch.autograd.grad(ours.logsumexp(-1).sum(), model.params),
                    torch.autograd.grad(theirs.logsumexp(-1).sum(), model.params)):
        assert torch.allclose(a, b, atol=1e-4)


def test_images_get_different_prompts(clip, task):
    model = cocoop_model(clip, task)
    prompts = model.image_prompts(task.train_features[0][:2])
    assert prompts.shape[:2] == (2, len(task.base_names))
    assert not torch.equal(prompts[0], prompts[1])


def test_chunked_images_give_the_same_logits(clip, task, monkeypatch):
    model = cocoop_model(clip, task)
    features = task.train_features[0][:10]
    whole = model.logits(features)
    monkeypatch.setattr(cocoop.CoCoOpModel, "image_chunk", 3)
    assert torch.allclose(model.logits(features), whole, atol=1e-5)


def test_the_meta_network_learns_with_the_context(clip, task):
    config = TrainConfig(method="cocoop", dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05)
    torch.manual_seed(config.seed)
    start = build_model(clip, config, task.base_names, task.template).learned()
    result = train(config, clip, task)
    learned = result.model.learned()
    assert set(learned) == set(start) and len(learned) == 5
    assert all(not torch.equal(learned[k], start[k]) for k in learned), "a parameter never moved"


class ZeroShift(cocoop.CoCoOpModel):
    """CoCoOp with the meta-network's output held at zero: its last layer zero and out of the optimiser."""

    @property
    def params(self):
        return [self.learner.ctx]


def zero_shift(clip, config, classnames, template):
    model = cocoop.build(clip, config, classnames, template)
    with torch.no_grad():
        model.meta_net.linear2.weight.zero_()
        model.meta_net.linear2.bias.zero_()
    return ZeroShift(clip, model.learner, template, model.meta_net)


def test_with_its_shift_fixed_at_zero_cocoop_is_coop_step_for_step(clip, task):
    common = dict(dataset="shapes", shots=4, epochs=3, batch_size=8, lr=0.05)
    coop = train(TrainConfig(method="coop", **common), clip, task)
    entry = methods.Method("zero_shift", "CoCoOp, shift at zero", "#000000", methods.coop_update, build=zero_shift)
    run = TrainConfig(method="cocoop", **common).resolve()
    result = train(type(run)(run.config, entry, run.knobs, run.key), clip, task)
    assert torch.allclose(result.model.learner.ctx, coop.model.learner.ctx, atol=1e-4)
    assert [round(s["loss"], 3) for s in result.steps] == [round(s["loss"], 3) for s in coop.steps]


def test_a_solution_round_trips_with_its_meta_network(clip, task):
    model = cocoop_model(clip, task)
    other = cocoop_model(clip, task, scale=0.0)
    other.load_learned(model.learned())
    features = task.train_features[0][:4]
    assert torch.equal(other.logits(features), model.logits(features))


def test_new_classes_keep_the_context_and_the_meta_network(clip, task):
    model = cocoop_model(clip, task)
    new = model.for_classes(task.new_names)
    assert new.meta_net is model.meta_net and new.learner.ctx is model.learner.ctx
    assert new.logits(task.test["new"][0][:3]).shape == (3, len(task.new_names))


def test_cocoop_has_no_class_level_text_features_and_says_so(clip, task):
    model = cocoop_model(clip, task)
    assert model.text_features is None
    with pytest.raises(ValueError, match="depend on the image"):
        model.logits(task.train_features[0][:2], model.zs_text)


def test_cocoop_is_one_registry_entry_that_builds_its_own_model():
    entry = methods.get("cocoop")
    assert entry.build is cocoop.build and entry.update is methods.coop_update and entry.trains


def test_a_step_through_the_registry_moves_every_parameter(clip, task):
    model = cocoop_model(clip, task)
    batch = Batch(task.train_features[0][:8], task.train_labels[:8])
    step = methods.get("cocoop").update(model, batch, methods.get("cocoop").knobs())
    assert step.grad.numel() == sum(p.numel() for p in model.params) and step.grad.abs().sum() > 0
