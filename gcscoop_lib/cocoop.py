"""CoCoOp (02_coop): the context conditioned on the image. A small meta-network turns each
image's feature into a shift that is added to every context vector, so each image gets its
own prompts for all the classes; the meta-network learns together with the context.

Encoding B images' prompts for K classes is B x K prompts, in one batched call of the text
encoder (prompts.TextEncoder): each image's prompts share their first positions (the start
token and the image's context), so those are encoded once per image, and positions after
the last end-of-text token are dropped, as for one prompt set.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .devices import autocast
from .models import Clip
from .prompts import SINGLE_TEMPLATE, PromptedClip, PromptLearner


class MetaNet(nn.Module):
    """CoCoOp's meta-network: Linear(E, E/16) -> ReLU -> Linear(E/16, W), from the normalised
    image feature (E) to a shift of the context vectors (W, the token embedding width)."""

    def __init__(self, feature_dim: int, width: int):
        super().__init__()
        self.linear1 = nn.Linear(feature_dim, max(feature_dim // 16, 1))
        self.linear2 = nn.Linear(max(feature_dim // 16, 1), width)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.relu(self.linear1(image_features)))


class CoCoOpModel(PromptedClip):
    """A prompted CLIP whose prompts depend on the image: ctx + meta_net(f) before every class
    name. Holds no class-level text features (each image has its own)."""

    text_features = None      # per image, not per class: see logits
    UNIT, VERSION = "cocoop", 1   # bump when the meta-network or the per-image prompts change (stamps)
    image_chunk = 64          # images whose prompts are encoded at once (memory and speed, not results)

    def __init__(self, clip: Clip, learner: PromptLearner, template: str = SINGLE_TEMPLATE,
                 meta_net: MetaNet | None = None):
        super().__init__(clip, learner, template)
        if learner.class_specific or learner.position != "end":
            raise ValueError("CoCoOp conditions one shared context before the class name: use "
                             "class_specific=False and position='end'")
        width = learner.ctx.shape[-1]
        self.meta_net = meta_net or MetaNet(self.zs_text.shape[-1], width).to(clip.device)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.learner.ctx, *self.meta_net.parameters()]

    def image_prompts(self, image_features: torch.Tensor) -> torch.Tensor:
        """Prompt embeddings B x K x L x W: each image's shifted
        context before every class name."""
        shift = self.meta_net(image_features)[:, None, :]
        ctx = self.learner.ctx + shift                # B x M x W
        b, k = len(ctx), len(self.learner.classnames)
        prefix = self.learner.token_prefix.expand(b, -1, -1, -1)
        suffix = self.learner.token_suffix.expand(b, -1, -1, -1)
        ctx = ctx[:, None].expand(-1, k, -1, -1)      # B x K x M x W
        return torch.cat([prefix, ctx, suffix], dim=2)

    def image_text_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """Normalised class features of each image's prompts, B x K x E."""
        tokens = self.learner.token_ids()
        with autocast(self.clip.device):
            features = self.text_encoder(self.image_prompts(image_features), tokens, self.learner.shared)
        return F.normalize(features.float(), dim=-1)

    def logits(self, image_features: torch.Tensor,
               text_features: torch.Tensor | None = None) -> torch.Tensor:
        if text_features is not None:
            raise ValueError("CoCoOp's text features depend on the image: "
                             "call logits(image_features)")
        out = []
        for chunk in image_features.split(self.image_chunk):
            text = self.image_text_features(chunk)        # B x K x E
            scores = torch.einsum("be,bke->bk", chunk, text)
            out.append(self.logit_scale * scores)
        return torch.cat(out)

    def learned(self) -> dict[str, torch.Tensor]:
        return {"ctx": self.learner.ctx.detach().cpu().clone(),
                **{f"meta_net.{k}": v.detach().cpu().clone() for k, v in self.meta_net.state_dict().items()}}

    def load_learned(self, learned: dict[str, torch.Tensor]) -> "CoCoOpModel":
        with torch.no_grad():
            self.learner.ctx.copy_(learned["ctx"].to(self.learner.ctx.device))
        self.meta_net.load_state_dict({k[len("meta_net."):]: v for k, v in learned.items()
                                       if k.startswith("meta_net.")})
        return self

    def for_classes(self, classnames: list[str]) -> "CoCoOpModel":
        """The same context and meta-network with other class names."""
        return CoCoOpModel(self.clip, self.learner.for_classes(classnames), self.template, self.meta_net)


def build(clip: Clip, config, classnames: list[str], template: str = SINGLE_TEMPLATE) -> CoCoOpModel:
    """CoCoOp's model for a run (its registry entry's build)."""
    learner = PromptLearner(clip, classnames, config.n_ctx, config.ctx_init, config.position,
                            config.class_specific, seed=config.seed)
    return CoCoOpModel(clip, learner, template)
