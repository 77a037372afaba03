"""Image features: the frozen image encoder run once per image set (and per augmented view),
kept on disk and in memory, so training loops never see an image (02_coop)."""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from . import settings
from .imagesets import images_to_tensor
from .models import Clip

# Bump when the features or the augmented views change (gcscoop_lib.stamps); it keys the cache too.
VERSION = 1


def normalise_images(clip: Clip, images: torch.Tensor) -> torch.Tensor:
    """float N x 3 x H x W in [0, 1] -> the model's input size and normalisation."""
    if images.shape[-1] != clip.image_size:
        images = F.interpolate(images, size=(clip.image_size, clip.image_size), mode="bicubic",
                               align_corners=False).clamp(0, 1)
    mean = torch.tensor(clip.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(clip.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


# The crops an augmented view can take (06_protocols): "square" keeps 60-100 % of the image's
# area at its aspect; "papers" is the random resized crop of CoOp's and its successors' code
# (torchvision's defaults: 8-100 % of the area, aspect 3/4 to 4/3). Both flip half the views.
CROPS = ("square", "papers")


def augment(images: torch.Tensor, generator: torch.Generator, crop: str = "square") -> torch.Tensor:
    """One augmented view: a random crop (CROPS), resized back, and a random horizontal flip."""
    n, _, h, w = images.shape
    if crop == "square":
        width = height = torch.empty(n).uniform_(0.6, 1.0, generator=generator).sqrt()
    elif crop == "papers":
        area = torch.empty(n).uniform_(0.08, 1.0, generator=generator)
        aspect = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator).exp()
        # a side longer than the image is cut to it (torchvision retries, then crops the centre)
        width, height = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
    else:
        raise ValueError(f"unknown crop {crop!r}: choose one of {list(CROPS)}")
    offset = (1 - torch.stack([width, height], 1)) * (torch.rand(n, 2, generator=generator) * 2 - 1)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width * flip, height
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, (n, 3, h, w), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@torch.no_grad()
def encode_images(clip: Clip, images, views: int = 1, seed: int = 0, batch_size: int = 512,
                  crop: str = "square") -> torch.Tensor:
    """Normalised image features of uint8 N x H x W x 3 images (02_coop).

    images is an array or anything that slices into one (an ImageSet, a FileImageSet).

    views=1 encodes each image once as it is; views=K>1 encodes K augmented views and
    returns K x N x D, so training can draw a different view each epoch without ever
    running the image encoder again; `crop` picks the views' crop (CROPS).
    """
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(views):
        chunks = []
        for start in range(0, len(images), batch_size):
            x = images_to_tensor(images[start:start + batch_size])
            if views > 1:
                x = augment(x, generator, crop)
            x = normalise_images(clip, x.to(clip.device))
            chunks.append(F.normalize(clip.model.encode_image(x).float(), dim=-1).cpu())
        out.append(torch.cat(chunks))
    return out[0] if views == 1 else torch.stack(out)


_FEATURE_MEMO: dict[str, torch.Tensor] = {}


def cached_features(clip: Clip, images, views: int = 1, seed: int = 0, crop: str = "square") -> torch.Tensor:
    """encode_images, computed once per (weights, images, views, crop, seed) and kept on disk and
    in memory.

    images is an ImageSet or FileImageSet: its fingerprint() keys the cache.
    """
    kind = "" if views == 1 or crop == "square" else crop   # the first crop's files keep their names
    full_key = f"{clip.fingerprint}_{images.fingerprint()}_v{views}{kind}_s{seed}_f{VERSION}"
    if full_key in _FEATURE_MEMO:
        return _FEATURE_MEMO[full_key]
    path = settings.current().cache / f"{full_key}.pt"
    features = _load_tensor(path)
    if features is None:
        features = encode_images(clip, images, views, seed, crop=crop)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(features, tmp)
        tmp.replace(path)
    _FEATURE_MEMO[full_key] = features
    return features


def _load_tensor(path) -> torch.Tensor | None:
    """A cached tensor, read as tensors only (never code from a pickle); None when the file is
    missing or does not load (a truncated write, another format): it is then recomputed."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:   # a broken cache file is a cache miss, not an error
        return None
