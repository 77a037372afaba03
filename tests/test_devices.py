"""Which device 'auto' means and the precision the text encoder runs in there."""
import contextlib

import pytest
import torch

from gcscoop_lib import devices


@pytest.mark.parametrize("device,hip,capability,expected", [
    ("cuda", None, (8, 0), torch.bfloat16),     # A100, L4, H100: bf16 in hardware
    ("cuda:1", None, (9, 0), torch.bfloat16),   # the capability of the device asked for
    ("cuda", None, (7, 5), None),               # T4, Colab's free GPU: bf16 only emulated, so fp32
    ("cuda", "6.2", (9, 4), torch.bfloat16),    # ROCm
    ("cpu", None, (9, 0), None),
    ("mps", None, (9, 0), None)])
def test_precision_follows_the_device(monkeypatch, device, hip, capability, expected):
    asked = []
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    assert devices.autocast_dtype(device) == expected
    assert asked in ([], [torch.device(device)])


def test_fp32_devices_run_without_autocast_and_bf16_ones_with_it(monkeypatch):
    assert isinstance(devices.autocast("cpu"), contextlib.nullcontext)
    monkeypatch.setattr(devices, "autocast_dtype", lambda device: torch.bfloat16)
    with devices.autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_auto_is_the_gpu_when_there_is_one(monkeypatch):
    for available, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert devices.resolve_device("auto") == torch.device(expected)
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")
