"""The methods. Each update is one short function that takes the model, a batch and the
method's knobs and returns the gradient the optimiser should follow; its chapter shows it
verbatim (book/02_coop to 05_gcscoop). `METHODS` holds one entry per method: how to build
its model, how to step, its knobs.

An update may use only this much of the model (`PromptModel`); how the prompts are built and
what is cached is the model's own business, so a method whose model differs (per-image
prompts, say) is one model class and one entry, and the update functions stay as they are.
Gradients are handled as one flat fp32 vector over `model.params`: dot products, norms and
projections are then plain vector algebra.
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
    zs_text: torch.Tensor          # K x E class features of the hand-written prompt

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
def flat_grad(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False,
              grad_outputs: torch.Tensor | None = None) -> torch.Tensor:
    """The gradient of `loss` (or the vector-Jacobian product with grad_outputs) as one flat fp32 vector."""
    grads = torch.autograd.grad(loss, params, grad_outputs=grad_outputs, retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads]).float()


def assign_grad(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    start = 0
    for p in params:
        p.grad = flat[start:start + p.numel()].view_as(p).to(p.dtype).clone()
        start += p.numel()


def loss_and_grad(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the prompted CLIP on the batch, and its gradient
    w.r.t. the context."""
    loss = F.cross_entropy(model.logits(batch.features), batch.labels)
    return loss, flat_grad(loss, model.params)


@contextmanager
def perturbed(model, epsilon: torch.Tensor):
    """Move the context by epsilon inside the block, then restore it bit
    for bit (04_sam)."""
    saved = [p.detach().clone() for p in model.params]
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
    return rho * grad / (grad.norm() + 1e-12)


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
                      lam: float) -> tuple[torch.Tensor, bool]:
    """Remove (lam times) the part of the domain gradient that conflicts
    with the general one."""
    dot = g_domain @ g_general
    if dot >= 0:
        return g_domain, False
    return g_domain - lam * dot / (g_general @ g_general) * g_general, True


def prograd_gradients(model, batch: Batch, T: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cross-entropy, its gradient G_d, and the gradient G_g of
    T^2 KL(zero-shot || prompt)."""
    logits = model.logits(batch.features)
    ce = F.cross_entropy(logits, batch.labels)
    g_domain = flat_grad(ce, model.params, retain_graph=True)
    # The KL's gradient w.r.t. the logits is T (p - p_zs) / B: exactly zero
    # while the prompt predicts what zero-shot CLIP predicts.
    prompt = (logits.detach() / T).softmax(dim=-1)
    zero_shot = (model.zero_shot_logits(batch.features) / T).softmax(dim=-1)
    g_general = flat_grad(
        logits, model.params,
        grad_outputs=T * (prompt - zero_shot) / len(logits))
    return ce, g_domain, g_general


def prograd_update(model, batch: Batch, knobs: ProGradKnobs) -> Step:
    """ProGrad: follow the CE gradient only where it agrees with the
    zero-shot prediction."""
    ce, g_domain, g_general = prograd_gradients(model, batch, knobs.T)
    grad, conflict = prograd_direction(g_domain, g_general, knobs.lam)
    cos = F.cosine_similarity(g_domain, g_general, dim=0).item()
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
    ce = F.cross_entropy(model.logits(batch.features, text), batch.labels)
    knowledge = 1 - F.cosine_similarity(text, model.zs_text, dim=-1).mean()
    grad = flat_grad(ce + knobs.lam * knowledge, model.params)
    return Step(ce, grad, {"knowledge": knowledge.item()})


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
                           beta_low: float, beta_up: float
                           ) -> tuple[torch.Tensor, str, float]:
    """GCSCoOp's rule: keep the SAM gradient, project it onto
    dir(g_sam + g_erm), or fall back to ERM."""
    cos = (g_sam @ g_erm / (g_sam.norm() * g_erm.norm() + 1e-12)).item()
    if cos >= beta_up:
        return g_sam, "sam", cos
    if cos <= beta_low and beta_low > 0:
        return g_erm, "erm", cos
    direction = (g_sam + g_erm) / ((g_sam + g_erm).norm() + 1e-12)
    return (g_sam @ direction) * direction, "projected", cos


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
           {"lam": (0.25, 0.5, 1.0, 2.0)}),
    Method("kgcoop", "KgCoOp", "#17becf", kgcoop_update, KgCoOpKnobs,
           {"lam": (2.0, 4.0, 8.0, 16.0)}),
    Method("sam", "SAM-CoOp", "#ff7f0e", sam_update, SamKnobs,
           {"rho": (0.02, 0.05, 0.2, 0.5)}),
    Method("gcscoop", "GCSCoOp", "#2ca02c", gcscoop_update, GcsCoOpKnobs,
           {"rho": (0.05, 0.1, 0.2, 0.5)}),
]}


def get(name: str) -> Method:
    """A method by name, or one clear error."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}: choose one of {sorted(METHODS)}")
    return METHODS[name]
