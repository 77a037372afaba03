"""Devices and precision (02_coop): which device 'auto' means, and the precision the text
encoder runs in there."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' means the GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: str | torch.device) -> torch.dtype | None:
    """The precision the text encoder runs in on `device` (02_coop): bf16 autocast on a GPU with
    bf16 in hardware (CUDA compute capability 8.0 or newer, or ROCm), else None, meaning fp32
    without autocast (Colab's free T4, which only emulates bf16, CPUs, MPS); the prompts'
    master parameters stay fp32 either way.

    Never fp16: the update rules take raw gradients with torch.autograd.grad, so fp16 would
    need loss scaling inside every one of them.
    """
    device = torch.device(device)
    if device.type == "cuda" and (torch.version.hip or torch.cuda.get_device_capability(device)[0] >= 8):
        return torch.bfloat16
    return None


def autocast(device: str | torch.device):
    """torch.autocast at autocast_dtype(device), or nothing where that is fp32."""
    device = torch.device(device)
    dtype = autocast_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
