"""Loading a frozen CLIP (01_zero_shot, 09_appendix_tiny_clip).

`load_clip("tiny")` gives the embedded tiny CLIP that ships inside this package and needs
no network; any other name is an open_clip architecture loaded with its pretrained tag
(e.g. `load_clip("ViT-B-16", "openai")`), which needs internet on first use.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from . import settings
from .devices import resolve_device


@dataclass
class Clip:
    """A frozen CLIP with what is needed around it: tokenizer, image normalisation, identity."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    fingerprint: str          # identifies the weights, so cached features never go stale
    image_size: int
    mean: tuple
    std: tuple
    device: torch.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().exp()


def verify_checksum(folder: Path) -> str:
    """Check the tiny weights against the sha256 recorded beside them; return it."""
    weights, record = folder / "open_clip_model.safetensors", folder / "checksums.json"
    if not weights.exists() or not record.exists():
        raise FileNotFoundError(f"tiny CLIP weights missing in {folder}: reinstall the package or "
                                "regenerate them with `python -m gcscoop_lib.tiny`")
    expected = json.loads(record.read_text())["sha256"]
    actual = hashlib.sha256(weights.read_bytes()).hexdigest()
    if actual != expected:
        raise ValueError(f"checksum mismatch for {weights} (expected {expected[:12]}…, got {actual[:12]}…): "
                         "the file is corrupt or a Git LFS pointer; restore it or regenerate with "
                         "`python -m gcscoop_lib.tiny`")
    return actual


def weights_fingerprint(name: str, pretrained: str | None = None) -> str:
    """What identifies a model's weights, without loading them: the shipped sha256 for the tiny
    CLIP (load_clip checks the file against it), the architecture and tag for open_clip's."""
    if name != "tiny":
        return f"{name}-{pretrained}"
    record = settings.current().tiny_dir / "checksums.json"
    if not record.exists():
        raise FileNotFoundError(f"tiny CLIP weights missing in {record.parent}: reinstall the package or "
                                "regenerate them with `python -m gcscoop_lib.tiny`")
    return f"tiny-{json.loads(record.read_text())['sha256'][:16]}"


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to url's host (or to the proxy the environment puts in front of
    it) opens within `timeout` seconds."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def download_blocked(name: str, pretrained: str | None) -> tuple[str | None, bool]:
    """Why open_clip cannot download (name, pretrained)'s weights now (None when it can, or need
    not), and whether they are already in the local cache (Hugging Face's, or open_clip's
    ~/.cache/clip for plain URLs).

    A quick look before open_clip's own download, which offline retries for about a minute:
    HF_HUB_OFFLINE=1 blocks the hub, and otherwise the host (the hub, HF_ENDPOINT's mirror, or
    the weights' URL) must answer within seconds.
    """
    import open_clip
    from open_clip import pretrained as known

    cfg = open_clip.get_pretrained_cfg(name, pretrained) if pretrained else {}
    if not cfg or "file" in cfg:          # no weights, a local file, or a tag open_clip will reject
        return None, False
    if cfg.get("hf_hub") and known.has_hf_hub():
        import huggingface_hub
        from huggingface_hub import constants

        repo, filename = os.path.split(cfg["hf_hub"])
        filename = filename or known.HF_WEIGHTS_NAME
        safe = known.HF_SAFE_WEIGHTS_NAME if filename == known.HF_WEIGHTS_NAME else \
            os.path.splitext(filename)[0] + ".safetensors"
        cached = any(isinstance(huggingface_hub.try_to_load_from_cache(repo, f), str) for f in (safe, filename))
        if constants.HF_HUB_OFFLINE:
            return "HF_HUB_OFFLINE=1", cached
        url = constants.ENDPOINT
    else:
        url = cfg["url"]
        cached = os.path.isfile(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url)))
    return (None if reachable(url) else f"{urllib.parse.urlsplit(url).hostname} cannot be reached"), cached


@contextlib.contextmanager
def hub_offline(offline: bool):
    """While loading, tell huggingface_hub it is offline (it then reads its cache at once)."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def load_clip(name: str = "tiny", pretrained: str | None = None, device: str | torch.device = "auto") -> Clip:
    """Load a frozen CLIP in eval mode (01_zero_shot). 'tiny' is offline; others use open_clip."""
    import open_clip

    device = resolve_device(device)
    if name == "tiny":
        folder = settings.current().tiny_dir
        verify_checksum(folder)
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    else:
        if name not in open_clip.list_models():
            raise ValueError(f"unknown model {name!r}: use 'tiny' (offline) or one of open_clip.list_models(), "
                             "e.g. 'ViT-B-16'")
        blocked, cached = download_blocked(name, pretrained)
        if blocked and not cached:
            raise RuntimeError(f"could not load {name} with pretrained={pretrained!r} ({blocked} and its weights "
                               "are not in the local cache): this needs internet; offline, use load_clip('tiny')")
        try:
            with hub_offline(blocked is not None):
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except Exception as error:  # hub downloads fail offline with many exception types
            raise RuntimeError(f"could not load {name} with pretrained={pretrained!r} ({type(error).__name__}): "
                               "this needs internet; offline, use load_clip('tiny')") from error
        tokenizer = open_clip.get_tokenizer(name)
    model = model.to(device).eval().requires_grad_(False)
    cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    return Clip(model, tokenizer, name, weights_fingerprint(name, pretrained), int(size), mean, std, device)
