"""The learnable prompt and the text encoder run from embeddings: equal to CLIP's own encoder,
in value and gradient, whatever the shortcuts, chunks and precision."""
import pytest
import torch

from gcscoop_lib import devices, world
from gcscoop_lib.prompts import PromptedClip, PromptLearner, TextEncoder, nearest_words, prompted_clip
from gcscoop_lib.tiny import web_vocabulary
from gcscoop_lib.training import TrainConfig, build_model

NAMES = ["t-shirt", "ankle boot", "concentric circles", "one"]


@pytest.mark.parametrize("position,layout", [("end", "a photo of a {}."), ("front", "{} a photo of a."),
                                             ("middle", "a photo {} of a.")])
def test_text_encoder_equals_encode_text(clip, position, layout):
    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a", position=position)
    ours = TextEncoder(clip)(learner(), learner.token_ids(), learner.shared)
    reference = clip.model.encode_text(clip.tokenizer([layout.format(n) for n in NAMES]))
    assert learner.shared == {"end": 5, "middle": 3, "front": 1}[position]
    assert torch.allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize("class_specific", [False, True])
def test_shortcuts_match_the_full_context_in_value_and_gradient(clip, class_specific):
    learner = PromptLearner(clip, NAMES, ctx_init=None, class_specific=class_specific, seed=3)
    features, grads = [], []
    for encoder, shared in [(TextEncoder(clip, reference=True), 0), (TextEncoder(clip), learner.shared)]:
        out = encoder(learner(), learner.token_ids(), shared)
        features.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), learner.ctx)[0])
    assert learner.shared == (1 if class_specific else 5)
    assert torch.allclose(features[0], features[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5 * grads[0].abs().max())


def test_text_encoder_warns_when_it_cannot_take_the_fast_path(clip):
    class OtherAttention(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    block = clip.model.transformer.resblocks[0]
    original = block.attn
    block.attn = OtherAttention(original)
    try:
        with pytest.warns(UserWarning, match="slower full-context path; results are unchanged"):
            encoder = TextEncoder(clip)
    finally:
        block.attn = original
    assert encoder.reference and isinstance(clip.model.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)


def test_context_counts_bpe_tokens_not_words(clip):
    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a")
    assert learner.n_ctx == 4 and learner.ctx.dtype == torch.float32
    assert PromptLearner(clip, NAMES, ctx_init="a noisy, dark photo of a").n_ctx == 7  # "noisy," is 2 tokens


def test_class_specific_and_random_context_shapes(clip):
    learner = PromptLearner(clip, NAMES, n_ctx=6, ctx_init=None, class_specific=True)
    assert learner().shape[:2] == (len(NAMES), clip.model.context_length)
    assert learner.ctx.shape[:2] == (len(NAMES), 6)


def test_random_context_follows_n_ctx_class_specific_and_seed(clip, task):
    def ctx(**kwargs):
        return build_model(clip, TrainConfig(ctx_init=None, **kwargs), task.base_names).learner.ctx

    assert ctx(n_ctx=1).shape == (1, clip.model.token_embedding.weight.shape[1])
    assert ctx(n_ctx=6, class_specific=True).shape[:2] == (5, 6)
    assert not torch.equal(ctx(n_ctx=2, seed=1), ctx(n_ctx=2, seed=2))
    assert torch.equal(ctx(n_ctx=2, seed=1), ctx(n_ctx=2, seed=1))


def test_empty_class_list_and_unknown_position_are_refused(clip):
    with pytest.raises(ValueError, match="empty class list"):
        PromptLearner(clip, [])
    with pytest.raises(ValueError, match="unknown class token position 'left'"):
        PromptLearner(clip, NAMES, position="left")


def test_nearest_words_of_the_initial_context_are_its_own_words(clip):
    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a")
    assert [row[0][0] for row in nearest_words(learner, web_vocabulary())] == ["a", "photo", "of", "a"]


def test_chunked_text_encoding_gives_the_same_features_and_gradients(clip):
    names = world.SHAPE_CLASSES + world.TEXTURE_CLASSES
    whole = PromptedClip(clip, PromptLearner(clip, names), text_chunk=0)
    chunked = PromptedClip(clip, PromptLearner(clip, names), text_chunk=3)
    features = torch.randn(8, clip.model.text_projection.shape[1])
    labels = torch.arange(8)
    grads = []
    for model in (whole, chunked):
        loss = torch.nn.functional.cross_entropy(model.logits(features), labels)
        grads.append(torch.autograd.grad(loss, model.params)[0])
    assert torch.allclose(whole.text_features(), chunked.text_features(), atol=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)   # gradients are O(1) at logit scale 100


def test_prompts_run_in_the_precision_chosen_for_the_device(clip, monkeypatch):
    model = PromptedClip(clip, PromptLearner(clip, NAMES))
    fp32 = model.text_features()
    monkeypatch.setattr(devices, "autocast_dtype", lambda device: torch.bfloat16)  # as on a GPU with bf16
    bf16 = model.text_features()
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.05)


def test_the_learned_context_is_stored_and_put_back_by_name(clip, task):
    config = TrainConfig(dataset="shapes")
    trained, fresh = (prompted_clip(clip, config, task.base_names) for _ in range(2))
    with torch.no_grad():
        trained.learner.ctx.add_(0.1)
    learned = trained.learned()
    assert list(learned) == ["ctx"] and learned["ctx"].device.type == "cpu"
    with torch.no_grad():
        trained.learner.ctx.add_(1.0)   # the stored copy does not follow the model
    assert fresh.load_learned(learned) is fresh and torch.equal(fresh.learner.ctx, learned["ctx"])


def test_new_classes_share_the_learned_context(clip, task):
    model = prompted_clip(clip, TrainConfig(dataset="shapes"), task.base_names)
    other = model.for_classes(task.new_names)
    assert other.learner.ctx is model.learner.ctx and other.learner.classnames == task.new_names
    assert other.zs_text.shape[0] == len(task.new_names)
    specific = prompted_clip(clip, TrainConfig(dataset="shapes", class_specific=True), task.base_names)
    with pytest.raises(ValueError, match="use class_specific=False"):
        specific.for_classes(task.new_names)
