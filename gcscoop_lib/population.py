"""Many runs trained as one (07_benchmark): a population.

A run is hundreds of small operations whose fixed cost dominates on a CPU, so runs that share
a method, its knobs, a number of classes and a number of steps (ten seeds of one method on the
tasks of five classes, the learning rates of a recipe grid) train together: their contexts are
stacked, every member's prompts (each with its own task's class names) go through one call of
the text encoder, and each member's loss is its own, so the gradient of their sum is, member by
member, the gradient of each run alone.

Each member keeps its own learned tensors (its own leaves, so the optimiser gives each its own
learning rate) and its own solo model, which is what is evaluated and stored afterwards. The
update rules of gcscoop_lib.methods are written along the last dimension, so they take a
population as they take one run.

Why a leading member dimension and not torch.func.vmap over the one-run update: the updates
differentiate with torch.autograd.grad and read decisions back into Python (ProGrad's
conflict, GCSCoOp's regime), neither of which vmap can trace; a vmap version would need every
update rewritten in torch.func's functional style.
"""
from __future__ import annotations

import dataclasses
import types

import torch
import torch.nn.functional as F

from . import world
from .cocoop import CoCoOpModel
from .devices import autocast
from .prompts import PromptedClip
from .splits import base_new_classes

# A run's config fields that members of one population may not differ in (they may differ in
# seed, learning rate, the knobs their method lets differ (Method.per_member) and, among the
# embedded tasks, task: those of one number of classes give every member as many steps).
SHARED_FIELDS = ("method", "model", "pretrained", "shots", "epochs", "batch_size", "n_ctx", "ctx_init",
                 "position", "class_specific", "views", "crop", "partition", "knobs")


def population_key(run) -> str:
    """What runs must share to train as one population: the shared fields, and the number of
    classes they train on (an embedded task's is known without loading it; any other dataset
    trains only with runs on itself)."""
    values = dataclasses.asdict(run.config)
    values["knobs"] = {k: v for k, v in values["knobs"].items() if k not in run.method.per_member}
    return repr([(name, values[name]) for name in SHARED_FIELDS]
                + [("classes", class_count(run.config) or run.config.dataset)])


def class_count(config) -> int | None:
    """How many classes a run trains on, for an embedded task (known without loading it); None
    for any other dataset."""
    spec = world.EMBEDDED.get(config.dataset)
    return len(base_new_classes(len(spec["classnames"]), config.partition)[0]) if spec else None


def populations(runs: list, size: int) -> list[list]:
    """Runs grouped into populations of at most `size` members, in their first-seen order; a
    group too large for one is cut into as few as can hold it, of even sizes (40 runs: 13, 13, 14)."""
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(population_key(run), []).append(run)
    out = []
    for members in groups.values():
        parts = -(-len(members) // size)
        cuts = [len(members) * i // parts for i in range(parts + 1)]
        out += [members[a:b] for a, b in zip(cuts, cuts[1:])]
    return out


def member_knobs(runs: list, device="cpu"):
    """The knobs an update is handed for these members: the run's own when they all share them;
    else each knob that differs as an M x 1 column on the gradients' device, one row per member,
    which the update uses against each member's own row of the gradient (a knob grid trained as
    one population)."""
    first = runs[0].knobs
    if all(run.knobs == first for run in runs):
        return first
    values = {f.name: getattr(first, f.name) for f in dataclasses.fields(first)}
    for name in values:
        column = [getattr(run.knobs, name) for run in runs]
        if len(set(column)) > 1:
            if name not in runs[0].method.per_member:
                raise ValueError(f"{runs[0].method.label}'s members differ in {name}, which its update uses "
                                 "as a whole: train them as populations of their own (population.populations)")
            values[name] = torch.tensor(column, dtype=torch.float32, device=device)[:, None]
    return types.SimpleNamespace(**values)


class Population:
    """M solo models of as many classes each trained as one (07_benchmark): what the update rules
    use of a model (methods.PromptModel), with a leading member dimension. Image features and
    labels come in as M x B x D and M x B; logits go out as M x B x K."""

    def __init__(self, members: list):
        first = members[0]
        for other in members[1:]:
            if len(other.learner.classnames) != len(first.learner.classnames) or type(other) is not type(first):
                raise ValueError("a population's members must be models of one kind over as many classes")
        self.members = members
        self.clip, self.learner, self.logit_scale = first.clip, first.learner, first.logit_scale
        same = all(m.learner.classnames == first.learner.classnames for m in members)
        # the class names' token ids (K x L), or each member's own (M x K x L); the hand-written
        # prompt's class features likewise (K x E, or M x K x E)
        self.tokens = first.learner.token_ids() if same else torch.stack([m.learner.token_ids() for m in members])
        self.zs_text = first.zs_text if same else torch.stack([m.zs_text for m in members])
        # CoOp's and CoCoOp's models are batched here; any other model class runs member by member
        self.kind = {PromptedClip: "shared", CoCoOpModel: "per_image"}.get(type(first), "own")

    @property
    def params(self) -> list[torch.Tensor]:
        """Every member's learned tensors, member by member (flat gradients are M x P)."""
        return [p for member in self.members for p in member.params]

    def text_features(self) -> torch.Tensor:
        """Each member's class features, M x K x E: every member's prompts in one encoder call."""
        if self.kind == "per_image":
            raise ValueError("CoCoOp's text features depend on the image: call logits(image_features)")
        if self.kind == "own":
            return torch.stack([member.text_features() for member in self.members])
        return self.members[0].encode_prompts(torch.stack([member.learner() for member in self.members]),
                                              self.tokens)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "per_image":
            return self.image_logits(image_features)
        if self.kind == "own" and text_features is None:
            return torch.stack([m.logits(f) for m, f in zip(self.members, image_features)])
        text = self.text_features() if text_features is None else text_features
        return self.logit_scale * image_features @ text.transpose(-1, -2)

    def image_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """CoCoOp: every member's per-image prompts (M x B images) in one encoder call."""
        prompts = torch.stack([m.image_prompts(f) for m, f in zip(self.members, image_features)])
        members, images, classes = prompts.shape[:3]
        tokens = self.tokens if self.tokens.dim() == 2 else self.tokens.repeat_interleave(images, 0)
        with autocast(self.clip.device):
            text = self.members[0].text_encoder(prompts.flatten(0, 1), tokens, self.learner.shared)
        text = F.normalize(text.float(), dim=-1).view(members, images, classes, -1)
        return self.logit_scale * torch.einsum("mbe,mbke->mbk", image_features, text)

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logit_scale * image_features @ self.zs_text.transpose(-1, -2)
