"""Prompts: hand-written templates, the learnable prompt and CLIP's text encoder run from
embeddings (01_zero_shot, 02_coop)."""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import settings
from .devices import autocast
from .models import Clip

# The text side's version (this module: zero-shot weights, PromptLearner, TextEncoder, PromptedClip);
# bump it when what they compute changes (gcscoop_lib.stamps).
VERSION = 2

SINGLE_TEMPLATE = "a photo of a {}."
# The embedded world's ensemble: wordings its web used, and the styles it knows.
ENSEMBLE_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.",
                      "a photo of the {}.", "a close-up photo of a {}.", "a noisy photo of a {}.",
                      "a blurry photo of a {}.", "a dark photo of a {}.", "an inverted photo of a {}."]
POSITIONS = ("end", "middle", "front")


def tokenize(clip: Clip, texts: list[str]) -> torch.Tensor:
    return clip.tokenizer(texts).to(clip.device)


@torch.no_grad()
def zero_shot_weights(clip: Clip, classnames: list[str],
                      templates: list[str] | str = SINGLE_TEMPLATE
                      ) -> torch.Tensor:
    """Class weights from text (01_zero_shot): normalise each template's
    feature, average over templates, renormalise."""
    if not classnames:
        raise ValueError("empty class list: pass at least one class name")
    templates = ([templates] if isinstance(templates, str)
                 else list(templates))
    per_template = []
    for template in templates:
        texts = [template.format(name.replace("_", " "))
                 for name in classnames]
        per_template.append(F.normalize(
            clip.model.encode_text(tokenize(clip, texts)).float(), dim=-1))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


class TextEncoder(nn.Module):
    """CLIP's text tower run from token embeddings instead of token ids (02_coop).

    Three shortcuts, each exact because CLIP's text transformer is causal (no position
    attends to a later one):

    - positions after the batch's last end-of-text token never reach the features: dropped;
    - the first `shared` positions (the start token and, with the class name at the end, the
      context) are the same in every class's prompt, so they are encoded once, not per class:
      the prompts run as one sequence, the shared positions and then each prompt's rest, and
      an attention mask keeps each prompt's rest from seeing the others';
    - only the end-of-text positions are read out, so the last block's queries and its
      feed-forward half run on those alone.

    reference=True runs open_clip's own blocks over the full context instead, as the
    published code does (benchmarks/speed.py compares the two). Models whose blocks are not
    plain causal self-attention take that path too.
    """

    # Prompts per sequence: as many as fit in this many positions (a longer sequence wastes
    # more of its attention on masked pairs). It sets how the sums are grouped, so changing it
    # changes rounding: bump VERSION with it.
    SEQUENCE = 96

    def __init__(self, clip: Clip, reference: bool = False):
        super().__init__()
        model = clip.model
        self.transformer = model.transformer
        self.positional_embedding = model.positional_embedding
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        plain = all(isinstance(block.attn, nn.MultiheadAttention) for block in self.transformer.resblocks)
        self.reference = reference or self.attn_mask is None or not plain
        if self.reference and not reference:
            warnings.warn("this CLIP's text blocks are not plain causal self-attention (another open_clip "
                          "version?): the text encoder takes the slower full-context path; results are unchanged",
                          stacklevel=2)

    def forward(self, embeddings: torch.Tensor, tokens: torch.Tensor,
                shared: int = 0) -> torch.Tensor:
        """K x L x D prompt embeddings -> K x E features; or B groups of
        the K prompts, B x K x L x D (CoCoOp's per-image prompts, a
        population's members) -> B x K x E. `tokens` are the K prompts'
        ids (K x L), or each group's own (B x K x L)."""
        grouped = embeddings.dim() == 4
        x = embeddings if grouped else embeddings[None]
        b, k = x.shape[:2]
        eot = tokens.argmax(dim=-1).expand(b, k)   # end-of-text positions
        if self.reference:
            x = x.flatten(0, 1) + self.positional_embedding.to(x.dtype)
            x = self.transformer(x, attn_mask=self.attn_mask)
            out = self.project(self.ln_final(
                x[torch.arange(len(x), device=x.device), eot.reshape(-1)]))
            out = out.view(b, k, -1)
        else:
            length = int(eot.max()) + 1
            shared = min(shared, int(eot.min()))
            positions = self.positional_embedding[:length].to(x.dtype)
            out = self.encode(x[:, :, :length] + positions, eot, shared)
        return out if grouped else out[0]

    def encode(self, x: torch.Tensor, eot: torch.Tensor,
               shared: int) -> torch.Tensor:
        """B x K x L x D prompt states and their B x K end-of-text
        positions -> B x K x E features. A group's K prompts run as
        sequences of `per` prompts: the group's first `shared`
        positions, then each prompt's rest (R positions) in turn. The
        mask (visible) lets a prompt's rest see the shared positions
        and, causally, its own, so each prompt's states are what they
        would be alone; the shared positions are encoded once a
        sequence."""
        b, k, _, d = x.shape
        rest = x.shape[2] - shared
        # as few sequences of at most SEQUENCE positions as hold the K
        # prompts, spread evenly; the last prompt repeated to fill them
        sequences = -(-k // max(1, self.SEQUENCE // rest))
        per = -(-k // sequences)
        fill = sequences * per - k
        x = torch.cat([x, x[:, -1:].expand(-1, fill, -1, -1)], 1)
        eot = torch.cat([eot, eot[:, -1:].expand(-1, fill)], 1)
        prefix = x[:, :1, :shared].expand(-1, sequences, -1, -1)
        rests = x[:, :, shared:].reshape(b, sequences, per * rest, d)
        states = torch.cat([prefix, rests], 2).flatten(0, 1)
        mask = self.visible(shared, per, rest, x.device)
        # each prompt's end-of-text position in its sequence
        offsets = torch.arange(per, device=x.device) * rest
        ends = offsets + eot.reshape(-1, per)
        rows = torch.arange(len(states), device=x.device)[:, None]
        blocks = self.transformer.resblocks
        for block in blocks[:-1]:
            attended = self.attend(block.attn, block.ln_1(states), mask)
            states = self.feed_forward(block, states, attended)
        # only the end-of-text states are read out: the last block's
        # queries and feed-forward half run on those alone
        last = blocks[-1]
        attended = self.attend(last.attn, last.ln_1(states), mask[ends],
                               ends)
        states = self.feed_forward(last, states[rows, ends], attended)
        features = states.view(b, sequences * per, -1)[:, :k]
        return self.project(self.ln_final(features))

    @staticmethod
    def visible(shared: int, per: int, rest: int,
                device) -> torch.Tensor:
        """Which positions each position may attend to in a sequence of
        `shared` positions followed by `per` prompts' rests of `rest`
        positions: earlier or equal ones, of the shared part or of its
        own prompt."""
        position = torch.arange(shared + per * rest, device=device)
        prompt = torch.where(position < shared, -1,
                             (position - shared) // rest)
        own = prompt[None, :] == prompt[:, None]
        of_shared = prompt[None, :] == -1
        earlier = position[None, :] <= position[:, None]
        return (own | of_shared) & earlier

    @staticmethod
    def feed_forward(block, states: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The rest of a block after its attention: the residual, then the MLP and its residual."""
        states = states + block.ls_1(F.linear(
            attended, block.attn.out_proj.weight, block.attn.out_proj.bias))
        return states + block.ls_2(block.mlp(block.ln_2(states)))

    @staticmethod
    def attend(attn: nn.MultiheadAttention, states: torch.Tensor, mask: torch.Tensor,
               queries: torch.Tensor | None = None) -> torch.Tensor:
        """Masked self-attention of N sequences (N x T x D) before the output
        projection; `queries` (N x Q positions) asks for those rows alone."""
        qkv = F.linear(states, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4)
        if queries is not None:
            q = q[torch.arange(len(q), device=q.device)[:, None], :, queries].transpose(1, 2)
            mask = mask[:, None]                      # N x 1 x Q x T
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).flatten(-2)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.text_projection is None:
            return x
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


class PromptLearner(nn.Module):
    """CoOp's learnable context (02_coop): M vectors shared by all classes, or one set per class.

    The prompt for class i is [SOS] [V]_1 ... [V]_M [CLASS_i] [.] [EOS] with the class token
    at the end (or in the middle, or at the front). Only `ctx` learns, kept in fp32.
    """

    def __init__(self, clip: Clip, classnames: list[str], n_ctx: int = 4, ctx_init: str | None = "a photo of a",
                 position: str = "end", class_specific: bool = False, seed: int = 0):
        super().__init__()
        if not classnames:
            raise ValueError("empty class list: pass at least one class name")
        if position not in POSITIONS:
            raise ValueError(f"unknown class token position {position!r}: choose one of {POSITIONS}")
        embed = clip.model.token_embedding
        if ctx_init:
            init_tokens = tokenize(clip, [ctx_init])
            n_ctx = int(init_tokens.argmax(-1)) - 1          # count BPE tokens, not words
            with torch.no_grad():
                ctx = embed(init_tokens)[0, 1:1 + n_ctx].float()
            ctx = ctx.expand(len(classnames), -1, -1).clone() if class_specific else ctx.clone()
        else:
            if n_ctx < 1:
                raise ValueError(f"n_ctx must be at least 1, got {n_ctx}")
            shape = (len(classnames), n_ctx, embed.weight.shape[1]) if class_specific else (n_ctx, embed.weight.shape[1])
            generator = torch.Generator().manual_seed(seed)
            ctx = (torch.randn(shape, generator=generator) * 0.02).to(clip.device)
        self.ctx = nn.Parameter(ctx)
        self.register_buffer("initial_ctx", ctx.detach().clone(), persistent=False)
        self.n_ctx, self.position, self.class_specific, self.ctx_init = n_ctx, position, class_specific, ctx_init
        self.classnames = list(classnames)
        self.clip = clip
        # Leading positions that are the same in every class's prompt: the start token, and
        # the context before the class name when all classes share one (TextEncoder's `shared`).
        before_name = 0 if class_specific else {"end": n_ctx, "middle": n_ctx // 2, "front": 0}[position]
        self.shared = 1 + before_name
        names = [name.replace("_", " ") for name in classnames]
        placeholder = " ".join(["X"] * n_ctx)
        self.register_buffer("tokens", tokenize(clip, [f"{placeholder} {name}." for name in names]), persistent=False)
        self.name_lens = [int(tokenize(clip, [name]).argmax(-1)) - 1 for name in names]
        with torch.no_grad():
            frozen = embed(self.tokens).float()
        self.register_buffer("token_prefix", frozen[:, :1], persistent=False)             # SOS
        self.register_buffer("token_suffix", frozen[:, 1 + n_ctx:], persistent=False)     # CLASS . EOS pad

    def for_classes(self, classnames: list[str]) -> "PromptLearner":
        """The same learned context with other class names (how new classes are evaluated)."""
        if self.class_specific:
            raise ValueError("a class-specific context cannot be moved to other classes: use class_specific=False")
        other = PromptLearner(self.clip, classnames, self.n_ctx, self.ctx_init, self.position, False)
        other.ctx = self.ctx
        return other

    def speaks(self, template: str) -> bool:
        """Whether the initial prompt is exactly `template` ("a photo of a {}." for "a photo of a" + end)."""
        return (self.ctx_init is not None and self.position == "end" and not self.class_specific
                and template == f"{self.ctx_init} {{}}.")

    def forward(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings, K x L x D, with the learned context
        (or another one of its shape)."""
        k = len(self.classnames)
        ctx = self.ctx if ctx is None else ctx
        ctx = (ctx if self.class_specific
               else ctx.unsqueeze(0).expand(k, -1, -1))
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i, n in enumerate(self.name_lens):
            name, rest = suffix[i:i + 1, :n], suffix[i:i + 1, n:]
            c = ctx[i:i + 1]
            if self.position == "front":
                rows.append(torch.cat([prefix[i:i + 1], name, c, rest],
                                      dim=1))
            else:
                rows.append(torch.cat([prefix[i:i + 1], c[:, :half], name,
                                       c[:, half:], rest], dim=1))
        return torch.cat(rows, dim=0)

    def token_ids(self) -> torch.Tensor:
        """Token ids laid out like forward()'s embeddings (only the EOT position matters)."""
        return self.tokens


class PromptedClip(nn.Module):
    """Logits from cached image features and learned prompts (02_coop).

    Holds what the training loop needs and nothing else: the prompt learner (the only
    thing that learns), the text encoder, the frozen logit scale and the zero-shot text
    features of the hand-written prompt (computed once, used by ProGrad and KgCoOp).
    """

    def __init__(self, clip: Clip, learner: PromptLearner, template: str = SINGLE_TEMPLATE,
                 text_chunk: int | None = None, compile: bool | None = None):
        super().__init__()
        self.clip, self.learner, self.template = clip, learner, template
        # Memory, not results: encode the class prompts this many at a time, recomputing each
        # chunk's activations in the backward pass, so memory stops growing with the number
        # of classes (ImageNet's 500 base classes). 0: all classes at once.
        self.text_chunk = settings.pick(text_chunk, "text_chunk")
        self.text_encoder = TextEncoder(clip)
        # Speed, not results: torch.compile fuses the text encoder's many small operations
        # (benchmarks/speed.py measures the gain); the first call of each new shape compiles.
        self.compiled = settings.pick(compile, "compile")
        if self.compiled:
            self.text_encoder.encode = compiled_for_two_backwards(self.text_encoder.encode)
        self.register_buffer("logit_scale", clip.logit_scale.float(), persistent=False)
        # The teacher of ProGrad and KgCoOp. When the hand-written prompt is the learner's own
        # initial prompt, it goes through the very same code path, so at the start the learned
        # and the teacher's features are equal bit for bit (and the KL gradient is exactly zero).
        with torch.no_grad():
            if learner.speaks(template):
                zs_text = self.encode_prompts(learner(learner.initial_ctx))
            else:
                zs_text = zero_shot_weights(clip, learner.classnames, template)
        self.register_buffer("zs_text", zs_text, persistent=False)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.learner.ctx]

    def learned(self) -> dict[str, torch.Tensor]:
        """What training changed, by name (a solution as it is stored)."""
        return {"ctx": self.learner.ctx.detach().cpu().clone()}

    def load_learned(self, learned: dict[str, torch.Tensor]) -> "PromptedClip":
        """Put a stored solution in place; returns the model."""
        with torch.no_grad():
            self.learner.ctx.copy_(learned["ctx"].to(self.learner.ctx.device))
        return self

    def text_features(self) -> torch.Tensor:
        """Normalised class features of the current prompts, K x E."""
        return self.encode_prompts(self.learner())

    def encode_prompts(self, embeddings: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """K x L x D prompt embeddings (or M x K x L x D, one set per member of a population)
        -> normalised features, K x E (M x K x E). `tokens`: the prompts' ids, K x L (or each
        member's own, M x K x L), by default this model's."""
        tokens = self.learner.token_ids() if tokens is None else tokens
        classes = tokens.shape[-2]
        with autocast(self.clip.device):
            if self.text_chunk and classes > self.text_chunk:
                features = torch.cat([
                    checkpoint(self.text_encoder, embeddings[..., i:i + self.text_chunk, :, :],
                               tokens[..., i:i + self.text_chunk, :], self.learner.shared, use_reentrant=False)
                    for i in range(0, classes, self.text_chunk)], dim=-2)
            else:
                features = self.text_encoder(embeddings, tokens, self.learner.shared)
        return F.normalize(features.float(), dim=-1)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        text = self.text_features() if text_features is None else text_features
        return self.logit_scale * image_features @ text.T

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * image_features @ self.zs_text.T

    def for_classes(self, classnames: list[str]) -> "PromptedClip":
        """The same learned context with other class names (how new classes are evaluated)."""
        return PromptedClip(self.clip, self.learner.for_classes(classnames), self.template, self.text_chunk,
                            self.compiled)


def prompted_clip(clip: Clip, config, classnames: list[str],
                  template: str = SINGLE_TEMPLATE) -> PromptedClip:
    """The model of CoOp and of every method that only changes the step (02_coop): a learned
    context shared by the classes (or one per class) in front of each class name."""
    learner = PromptLearner(clip, classnames, config.n_ctx, config.ctx_init, config.position,
                            config.class_specific, seed=config.seed)
    return PromptedClip(clip, learner, template)


def compiled_for_two_backwards(function):
    """torch.compile(function), set up so that one graph can be differentiated twice (ProGrad).

    Compiled graphs may donate their saved buffers to the backward pass, which forbids a second
    backward; building a compiled model therefore turns donation off in this process.
    """
    torch._functorch.config.donated_buffer = False
    return torch.compile(function, dynamic=False)


@torch.no_grad()
def nearest_words(learner: PromptLearner, words: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """For each context vector, the k words whose token embedding is closest in cosine (02_coop).

    Multi-token words are skipped. Real CLIP has 49k meaningful tokens; the tiny CLIP only
    learned the words of its web, so pass those.
    """
    clip = learner.clip
    singles = [w for w in dict.fromkeys(words) if int(tokenize(clip, [w]).argmax(-1)) == 2]
    ids = tokenize(clip, singles)[:, 1]
    table = F.normalize(clip.model.token_embedding.weight[ids].float(), dim=-1)
    ctx = learner.ctx.detach().reshape(-1, learner.ctx.shape[-1]).float()
    similarity = F.normalize(ctx, dim=-1) @ table.T
    top = similarity.topk(min(k, len(singles)), dim=-1)
    return [[(singles[j], round(v, 2)) for v, j in zip(vals.tolist(), idx.tolist())]
            for vals, idx in zip(top.values, top.indices)]
