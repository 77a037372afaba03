"""The methods. Each update is one short function that takes the model, a batch and the
method's knobs and returns the gradient the optimiser should follow; its chapter shows it
verbatim (book/02_coop to 05_gcscoop). `METHODS` holds one entry per method: how to build
its model, how to step, its knobs.

An update may use only this much of the model (`PromptModel`); how the prompts are built and
what is cached is the model's own business, so a method whose model differs (per-image
prompts, say) is one model class and one entry, and the update functions stay as they are.
Gradients are handled as one flat fp32 vector over `model.params`: dot products, norms and
projections are then plain vector algebra. Many runs can train as one (a population,
training.train_population): each member's loss is its own, a gradient has one row per member
(M x P), and every norm, dot product and decision below is taken along the last dimension, so
the same functions serve one run and many.
"""
from __future__ import annotations

import typing
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from . import cocoop, prompts


class PromptModel(Protocol):
    """What an update rule and the training loop may use of a model (02_coop)."""

    params: list[torch.Tensor]     # the trainable tensors, the optimiser's, in order
    zs_text: torch.Tensor          # K x E class features of the hand-written prompt (M x K x E in a
                                   # population whose members' tasks differ)

    def logits(self, image_features: torch.Tensor,
               text_features: torch.Tensor | None = None) -> torch.Tensor:
        """B x K logits of a batch against the classes."""

    def text_features(self) -> torch.Tensor:
        """K x E class features of the current prompts."""

    def zero_shot_logits(self, image_features: torch.Tensor) -> torch.Tensor:
        """B x K logits of the hand-written prompt (the teacher)."""

    def for_classes(self, classnames: list[str]) -> "PromptModel":
        """The same learned parameters with other class names."""


@dataclass
class Batch:
    features: torch.Tensor   # cached, normalised image features, B x D
    labels: torch.Tensor     # B


@dataclass
class Step:
    loss: torch.Tensor       # the training loss at the current parameters
    grad: torch.Tensor       # flat gradient for the optimiser
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def flat_grad(loss: torch.Tensor, params: list[torch.Tensor],
              retain_graph: bool = False) -> torch.Tensor:
    """The gradient of `loss` as one flat fp32 vector; of one loss per
    member (a population, whose params are member by member), M x P."""
    grads = torch.autograd.grad(loss, params, torch.ones_like(loss),
                                retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads]).float().view(
        *loss.shape, -1)


def assign_grad(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    flat, start = flat.reshape(-1), 0
    for p in params:
        p.grad = flat[start:start + p.numel()].view_as(p).to(p.dtype).clone()
        start += p.numel()


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch (B x K logits), or over each
    member's batch (M x B x K logits: one loss per member)."""
    per_example = F.cross_entropy(logits.movedim(-1, 1), labels, reduction="none")
    return per_example.mean(-1)


def loss_and_grad(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the prompted CLIP on the batch, and its gradient
    w.r.t. the context."""
    loss = cross_entropy(model.logits(batch.features), batch.labels)
    return loss, flat_grad(loss, model.params)


@contextmanager
def perturbed(model, epsilon: torch.Tensor):
    """Move the context by epsilon inside the block, then restore it bit
    for bit (04_sam)."""
    saved = [p.detach().clone() for p in model.params]
    epsilon = epsilon.reshape(-1)
    with torch.no_grad():
        start = 0
        for p in model.params:
            p.add_(epsilon[start:start + p.numel()].view_as(p).to(p.dtype))
            start += p.numel()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, old in zip(model.params, saved):
                p.copy_(old)


def sam_epsilon(grad: torch.Tensor, rho: float) -> torch.Tensor:
    """SAM's first-order worst-case perturbation of radius rho."""
    return rho * grad / (grad.norm(dim=-1, keepdim=True) + 1e-12)


# ----------------------------------------------------------------------------- CoOp (02_coop)
@dataclass(frozen=True)
class NoKnobs:
    """Zero-shot CLIP and CoOp have no knob of their own."""


def coop_update(model, batch: Batch, knobs: NoKnobs) -> Step:
    """CoOp: plain empirical risk minimisation of the cross-entropy."""
    loss, grad = loss_and_grad(model, batch)
    return Step(loss, grad)


# ----------------------------------------------------------------------------- ProGrad (03_prograd)
@dataclass(frozen=True)
class ProGradKnobs:
    lam: float = 1.0    # how much of the conflicting component to remove (1: all of it)
    T: float = 1.0      # distillation temperature

    def __post_init__(self):
        if not self.T > 0:
            raise ValueError(f"the temperature T must be > 0, got {self.T}")
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")


def prograd_direction(g_domain: torch.Tensor, g_general: torch.Tensor,
                      lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove (lam times) the part of the domain gradient that conflicts
    with the general one; also says whether it conflicted."""
    dot = (g_domain * g_general).sum(-1, keepdim=True)
    conflict = dot < 0
    projected = (g_domain - lam * dot / (g_general * g_general).sum(
        -1, keepdim=True) * g_general)
    return (torch.where(conflict, projected, g_domain),
            conflict.squeeze(-1))


def prograd_gradients(model, batch: Batch, T: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cross-entropy, its gradient G_d, and the gradient G_g of
    T^2 KL(zero-shot || prompt)."""
    logits = model.logits(batch.features)
    ce = cross_entropy(logits, batch.labels)
    g_domain = flat_grad(ce, model.params, retain_graph=True)
    # The KL's gradient w.r.t. the logits is T (p - p_zs) / B: exactly zero
    # while the prompt predicts what zero-shot CLIP predicts. Weighting the
    # logits by it gives the KL's gradient w.r.t. the context.
    prompt = (logits.detach() / T).softmax(dim=-1)
    zero_shot = (model.zero_shot_logits(batch.features) / T).softmax(dim=-1)
    kl_logits = T * (prompt - zero_shot) / logits.shape[-2]
    g_general = flat_grad((logits * kl_logits).sum((-2, -1)), model.params)
    return ce, g_domain, g_general


def prograd_update(model, batch: Batch, knobs: ProGradKnobs) -> Step:
    """ProGrad: follow the CE gradient only where it agrees with the
    zero-shot prediction."""
    ce, g_domain, g_general = prograd_gradients(model, batch, knobs.T)
    grad, conflict = prograd_direction(g_domain, g_general, knobs.lam)
    cos = F.cosine_similarity(g_domain, g_general, dim=-1)
    return Step(ce, grad, {"conflict": conflict, "cos": cos})


# ----------------------------------------------------------------------------- KgCoOp (03_prograd)
@dataclass(frozen=True)
class KgCoOpKnobs:
    lam: float = 8.0    # weight of the distance to the hand-written prompt's class features

    def __post_init__(self):
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")


def kgcoop_update(model, batch: Batch, knobs: KgCoOpKnobs) -> Step:
    """KgCoOp: CE plus lam * (1 - cosine) between learned and hand-written
    class text features."""
    text = model.text_features()
    ce = cross_entropy(model.logits(batch.features, text), batch.labels)
    knowledge = 1 - F.cosine_similarity(text, model.zs_text, dim=-1).mean(-1)
    grad = flat_grad(ce + knobs.lam * knowledge, model.params)
    return Step(ce, grad, {"knowledge": knowledge.detach()})


# ----------------------------------------------------------------------------- SAM (04_sam)
@dataclass(frozen=True)
class SamKnobs:
    rho: float = 0.05   # radius of the worst-case neighbourhood

    def __post_init__(self):
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")


def sam_gradient(model, batch: Batch, rho: float, loss_fn=loss_and_grad
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's two passes on any loss (04_sam): the loss and its gradient g at
    the context, then the gradient at the worst nearby context, rho along g.
    loss_fn(model, batch) gives (loss, flat gradient)."""
    loss, grad = loss_fn(model, batch)
    with perturbed(model, sam_epsilon(grad, rho)):
        _, g_sam = loss_fn(model, batch)
    return loss, grad, g_sam


def sam_update(model, batch: Batch, knobs: SamKnobs) -> Step:
    """SAM-CoOp: the gradient at the worst nearby context, applied at the
    current one."""
    loss, _, g_sam = sam_gradient(model, batch, knobs.rho)
    return Step(loss, g_sam)


# ----------------------------------------------------------------------------- GCSCoOp (05_gcscoop)
REGIMES = ("sam", "projected", "erm")


def named(names: tuple[str, ...], index: torch.Tensor):
    """names[i] for an index, or the list of them for one index per member."""
    return names[int(index)] if index.dim() == 0 else [names[i] for i in index.tolist()]


@dataclass(frozen=True)
class GcsCoOpKnobs:
    rho: float = 0.1
    beta_low: float = 0.5   # at or below this cosine: plain ERM gradient
    beta_up: float = 0.8    # at or above this cosine: plain SAM gradient

    def __post_init__(self):
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        if self.beta_low > self.beta_up:
            raise ValueError(f"beta_low ({self.beta_low}) must not exceed beta_up ({self.beta_up})")


def constrain_sam_gradient(g_sam: torch.Tensor, g_erm: torch.Tensor,
                           beta_low: float, beta_up: float):
    """GCSCoOp's rule: keep the SAM gradient, project it onto
    dir(g_sam + g_erm), or fall back to ERM. Returns the gradient, the
    regime taken and the cosine."""
    def norm(g):
        return g.norm(dim=-1, keepdim=True)

    cos = (g_sam * g_erm).sum(-1, keepdim=True) / (norm(g_sam) * norm(g_erm)
                                                   + 1e-12)
    direction = (g_sam + g_erm) / (norm(g_sam + g_erm) + 1e-12)
    projected = (g_sam * direction).sum(-1, keepdim=True) * direction
    keep_sam = cos >= beta_up
    use_erm = (cos <= beta_low) & (beta_low > 0) & ~keep_sam
    grad = torch.where(keep_sam, g_sam,
                       torch.where(use_erm, g_erm, projected))
    regime = torch.where(keep_sam, 0, torch.where(use_erm, 2, 1)).squeeze(-1)
    return grad, named(REGIMES, regime), cos.squeeze(-1)


def gcscoop_update(model, batch: Batch, knobs: GcsCoOpKnobs) -> Step:
    """GCSCoOp: the SAM gradient, constrained by its agreement with the
    ERM gradient."""
    loss, g_erm, g_sam = sam_gradient(model, batch, knobs.rho)
    grad, regime, cos = constrain_sam_gradient(g_sam, g_erm, knobs.beta_low,
                                               knobs.beta_up)
    return Step(loss, grad, {"regime": regime, "cos": cos})


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Method:
    """Everything the library knows about a method: adding one is an
    update function and an entry (plus a model class if its model differs)."""

    name: str
    label: str
    colour: str                     # the same colour in every figure of the book
    update: Callable | None         # None: evaluated, never trained (zero-shot)
    knob_type: type = NoKnobs       # frozen dataclass: typed defaults, checks
    grid: dict = field(default_factory=dict)   # knob -> validation grid
    build: Callable = prompts.prompted_clip    # (clip, config, classnames,
    #                                             template) -> PromptModel
    version: int = 1                # bump when its update or knobs change
    #                                 what they compute (gcscoop_lib.stamps)
    per_member: tuple = ()          # knobs that may differ inside a population (the update uses them per row, M x 1)

    @property
    def trains(self) -> bool:
        return self.update is not None

    def knobs(self, overrides: dict | None = None):
        """The method's knobs with overrides applied, each converted to the
        type its dataclass declares and checked (one clear error if bad)."""
        types = typing.get_type_hints(self.knob_type)
        unknown = sorted(set(overrides or {}) - set(types))
        if unknown:
            raise ValueError(f"{self.name} has no knob {unknown[0]!r}: it takes "
                             f"{', '.join(types) or 'none'}")
        return self.knob_type(**{k: _as(types[k], k, v) for k, v in (overrides or {}).items()})

    def describe_knobs(self) -> str:
        """'lam=1.0, T=1.0': the knobs and their defaults (the command line's help)."""
        return ", ".join(f"{f.name}={f.default}" for f in fields(self.knob_type)) or "none"


def _as(kind: type, name: str, value):
    """A knob's value as its declared type; text from the command line is parsed."""
    if kind is bool and isinstance(value, str):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"knob {name} is true or false, got {value!r}")
        return value.lower() in ("true", "1")
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        converted = None
    if converted is None or (kind is int and not isinstance(value, str) and converted != value):  # int(2.5) is 2
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        raise ValueError(f"knob {name} must be {article} {kind.__name__}, got {value!r}")
    return converted


METHODS = {m.name: m for m in [
    Method("zeroshot", "Zero-shot CLIP", "#7f7f7f", None),
    Method("coop", "CoOp", "#d62728", coop_update),
    Method("cocoop", "CoCoOp", "#9467bd", coop_update, build=cocoop.build),
    Method("prograd", "ProGrad", "#1f77b4", prograd_update, ProGradKnobs,
           {"lam": (0.25, 0.5, 1.0, 2.0)}, per_member=("lam",)),
    Method("kgcoop", "KgCoOp", "#17becf", kgcoop_update, KgCoOpKnobs,
           {"lam": (2.0, 4.0, 8.0, 16.0)}),
    Method("sam", "SAM-CoOp", "#ff7f0e", sam_update, SamKnobs,
           {"rho": (0.02, 0.05, 0.2, 0.5)}, per_member=("rho",)),
    Method("gcscoop", "GCSCoOp", "#2ca02c", gcscoop_update, GcsCoOpKnobs,
           {"rho": (0.05, 0.1, 0.2, 0.5)},
           per_member=("rho", "beta_low", "beta_up")),
]}


def get(name: str) -> Method:
    """A method by name, or one clear error."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {sorted(METHODS)}")
    return METHODS[name]
