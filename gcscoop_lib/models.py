"""Loading CLIP models and encoding images once (01_zero_shot, 07_appendix_tiny_clip).

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
import torch.nn.functional as F

from . import settings

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
        digest = verify_checksum(folder)
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        fingerprint = f"tiny-{digest[:16]}"
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
        fingerprint = f"{name}-{pretrained}"
    model = model.to(device).eval().requires_grad_(False)
    cfg = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
    std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
    return Clip(model, tokenizer, name, fingerprint, int(size), mean, std, device)


def normalise_images(clip: Clip, images: torch.Tensor) -> torch.Tensor:
    """float N x 3 x H x W in [0, 1] -> the model's input size and normalisation."""
    if images.shape[-1] != clip.image_size:
        images = F.interpolate(images, size=(clip.image_size, clip.image_size), mode="bicubic",
                               align_corners=False).clamp(0, 1)
    mean = torch.tensor(clip.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(clip.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One augmented view: a random resized crop (scale 0.6-1) and a random horizontal flip."""
    n, _, h, w = images.shape
    scale = torch.empty(n).uniform_(0.6, 1.0, generator=generator).sqrt()
    offset = (1 - scale)[:, None] * (torch.rand(n, 2, generator=generator) * 2 - 1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@torch.no_grad()
def encode_images(clip: Clip, images, views: int = 1, seed: int = 0, batch_size: int = 512) -> torch.Tensor:
    """Normalised image features of uint8 N x H x W x 3 images (02_coop).

    images is an array or anything that slices into one (an ImageSet, a FileImageSet).

    views=1 encodes each image once as it is; views=K>1 encodes K augmented views and
    returns K x N x D, so training can draw a different view each epoch without ever
    running the image encoder again.
    """
    from .data import images_to_tensor

    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(views):
        chunks = []
        for start in range(0, len(images), batch_size):
            x = images_to_tensor(images[start:start + batch_size])
            if views > 1:
                x = augment(x, generator)
            x = normalise_images(clip, x.to(clip.device))
            chunks.append(F.normalize(clip.model.encode_image(x).float(), dim=-1).cpu())
        out.append(torch.cat(chunks))
    return out[0] if views == 1 else torch.stack(out)


_FEATURE_MEMO: dict[str, torch.Tensor] = {}


def cached_features(clip: Clip, images, views: int = 1, seed: int = 0) -> torch.Tensor:
    """encode_images, computed once per (weights, images, views, seed) and kept on disk and in memory.

    images is an ImageSet or FileImageSet: its fingerprint() keys the cache.
    """
    full_key = f"{clip.fingerprint}_{images.fingerprint()}_v{views}_s{seed}"
    if full_key in _FEATURE_MEMO:
        return _FEATURE_MEMO[full_key]
    path = settings.current().cache / f"{full_key}.pt"
    if path.exists():
        features = torch.load(path)
    else:
        features = encode_images(clip, images, views, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(features, tmp)
        tmp.replace(path)
    _FEATURE_MEMO[full_key] = features
    return features
