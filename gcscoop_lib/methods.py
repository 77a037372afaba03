"""The methods. Each update is one short function that takes the model and a batch and
returns the gradient the optimiser should follow; its chapter shows it verbatim (book/02_coop to 05_gcscoop).

The only trainable tensor is the prompt context, so gradients are handled as one flat
fp32 vector: dot products, norms and projections are then plain vector algebra.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


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
def flat_grad(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph)
    return torch.cat([g.reshape(-1) for g in grads]).float()


def assign_grad(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    start = 0
    for p in params:
        p.grad = flat[start:start + p.numel()].view_as(p).to(p.dtype).clone()
        start += p.numel()


def loss_and_grad(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the prompted CLIP on the batch, and its gradient w.r.t. the context."""
    loss = F.cross_entropy(model.logits(batch.features), batch.labels)
    return loss, flat_grad(loss, model.params)


@contextmanager
def perturbed(model, epsilon: torch.Tensor):
    """Move the context by epsilon inside the block, then restore it bit for bit (04_sam)."""
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
def coop_update(model, batch: Batch, hp: dict) -> Step:
    """CoOp: plain empirical risk minimisation of the cross-entropy."""
    loss, grad = loss_and_grad(model, batch)
    return Step(loss, grad)


# ----------------------------------------------------------------------------- ProGrad (03_prograd)
def prograd_direction(g_domain: torch.Tensor, g_general: torch.Tensor, lam: float) -> tuple[torch.Tensor, bool]:
    """Remove (lam times) the part of the domain gradient that conflicts with the general one."""
    dot = g_domain @ g_general
    if dot >= 0:
        return g_domain, False
    return g_domain - lam * dot / (g_general @ g_general) * g_general, True


def prograd_update(model, batch: Batch, hp: dict) -> Step:
    """ProGrad: follow the CE gradient only where it agrees with the zero-shot prediction."""
    logits = model.logits(batch.features)
    ce = F.cross_entropy(logits, batch.labels)
    teacher = (model.zero_shot_logits(batch.features) / hp["T"]).softmax(dim=-1)
    kl = F.cross_entropy(logits / hp["T"], teacher) * hp["T"] ** 2  # soft-target CE: KL up to a constant
    g_domain = flat_grad(ce, model.params, retain_graph=True)
    g_general = flat_grad(kl, model.params)
    grad, conflict = prograd_direction(g_domain, g_general, hp["lam"])
    cos = F.cosine_similarity(g_domain, g_general, dim=0).item()
    return Step(ce, grad, {"conflict": conflict, "cos": cos})


# ----------------------------------------------------------------------------- KgCoOp (03_prograd)
def kgcoop_update(model, batch: Batch, hp: dict) -> Step:
    """KgCoOp: CE plus lam * (1 - cosine) between learned and hand-written class text features."""
    text = model.text_features()
    ce = F.cross_entropy(model.logits(batch.features, text), batch.labels)
    knowledge = 1 - F.cosine_similarity(text, model.zs_text, dim=-1).mean()
    grad = flat_grad(ce + hp["lam"] * knowledge, model.params)
    return Step(ce, grad, {"knowledge": knowledge.item()})


# ----------------------------------------------------------------------------- SAM (04_sam)
def sam_update(model, batch: Batch, hp: dict) -> Step:
    """SAM-CoOp: the gradient at the worst nearby context, applied at the current one."""
    loss, g_erm = loss_and_grad(model, batch)
    with perturbed(model, sam_epsilon(g_erm, hp["rho"])):
        _, g_sam = loss_and_grad(model, batch)
    return Step(loss, g_sam)


# ----------------------------------------------------------------------------- GCSCoOp (05_gcscoop)
REGIMES = ("sam", "projected", "erm")


def constrain_sam_gradient(g_sam: torch.Tensor, g_erm: torch.Tensor, beta_low: float,
                           beta_up: float) -> tuple[torch.Tensor, str, float]:
    """GCSCoOp's rule: keep the SAM gradient, project it onto dir(g_sam + g_erm), or fall back to ERM."""
    cos = (g_sam @ g_erm / (g_sam.norm() * g_erm.norm() + 1e-12)).item()
    if cos >= beta_up:
        return g_sam, "sam", cos
    if cos <= beta_low and beta_low > 0:
        return g_erm, "erm", cos
    direction = (g_sam + g_erm) / ((g_sam + g_erm).norm() + 1e-12)
    return (g_sam @ direction) * direction, "projected", cos


def gcscoop_update(model, batch: Batch, hp: dict) -> Step:
    """GCSCoOp: the SAM gradient, constrained by its agreement with the ERM gradient."""
    loss, g_erm = loss_and_grad(model, batch)
    with perturbed(model, sam_epsilon(g_erm, hp["rho"])):
        _, g_sam = loss_and_grad(model, batch)
    grad, regime, cos = constrain_sam_gradient(g_sam, g_erm, hp["beta_low"], hp["beta_up"])
    return Step(loss, grad, {"regime": regime, "cos": cos})


# ----------------------------------------------------------------------------- registry
# name -> (update function, default hyper-parameters). Zero-shot has no update: it is
# evaluated, never trained.
METHODS = {
    "zeroshot": (None, {}),
    "coop": (coop_update, {}),
    "prograd": (prograd_update, {"lam": 1.0, "T": 1.0}),
    "kgcoop": (kgcoop_update, {"lam": 8.0}),
    "sam": (sam_update, {"rho": 0.05}),
    "gcscoop": (gcscoop_update, {"rho": 0.1, "beta_low": 0.5, "beta_up": 0.8}),
}
LABELS = {"zeroshot": "Zero-shot CLIP", "coop": "CoOp", "prograd": "ProGrad", "kgcoop": "KgCoOp",
          "sam": "SAM-CoOp", "gcscoop": "GCSCoOp"}


def method_hparams(method: str, overrides: dict | None = None) -> dict:
    """Defaults of a method merged with overrides, validated (bad values raise one clear error)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {sorted(METHODS)}")
    hp = dict(METHODS[method][1])
    for key, value in (overrides or {}).items():
        if key not in hp:
            raise ValueError(f"{method} has no hyper-parameter {key!r}: it takes {sorted(hp) or 'none'}")
        hp[key] = float(value)
    if hp.get("rho", 0) < 0:
        raise ValueError(f"rho must be >= 0, got {hp['rho']}")
    if hp.get("beta_low", 0) > hp.get("beta_up", 1):
        raise ValueError(f"beta_low ({hp['beta_low']}) must not exceed beta_up ({hp['beta_up']})")
    if hp.get("T", 1) <= 0:
        raise ValueError(f"the temperature T must be > 0, got {hp['T']}")
    return hp
