"""The embedded world (intro, 09_appendix_tiny_clip): five small downstream tasks that run
offline on a CPU. Two hold real images (Fashion-MNIST, scikit-learn's handwritten digits),
three are drawn procedurally (shapes, textures, and twenty colour-shape pairs).

Every downstream task is shown in a *style* that the tiny CLIP's pretraining "web" saw
rarely and that the generic prompt "a photo of a {}." does not mention, which is what
leaves room for prompt learning, as with real CLIP and real downstream datasets. The
renderers here also draw the web's images (gcscoop_lib.tiny).
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import torch

from . import downloads, settings
from .imagesets import Dataset, ImageSet

# Bump when this module's results change (a record stamped with the old version is recomputed):
# a refactor keeps it; tests/test_golden.py says when a change of behaviour did not bump it.
VERSION = 1


IMAGE_SIZE = 32


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle boot"]


DIGIT_CLASSES = ["zero", "one", "two", "three", "four",
                 "five", "six", "seven", "eight", "nine"]


SHAPE_CLASSES = ["circle", "square", "triangle", "star", "cross",
                 "ring", "diamond", "hexagon", "heart", "crescent"]


TEXTURE_CLASSES = ["horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard",
                   "polka dots", "grid", "waves", "concentric circles", "speckles", "gradient"]


# 20 colour-shape pairs, ordered so that CoOp's rule (first half base) puts every colour and
# every shape on both sides: the new classes are new combinations of known words.
PAIR_COLOURS = ["red", "green", "blue", "yellow"]


PAIR_SHAPES = ["circle", "square", "triangle", "star", "heart"]


COLOURED_SHAPE_CLASSES = [f"{c} {s}" for side in (0, 1) for c in PAIR_COLOURS for s in PAIR_SHAPES
                          if (PAIR_COLOURS.index(c) + PAIR_SHAPES.index(s)) % 2 == side]


COLOURS = {"red": (1.0, 0.15, 0.1), "green": (0.1, 0.85, 0.2), "blue": (0.15, 0.3, 1.0),
           "yellow": (1.0, 0.9, 0.1), "purple": (0.65, 0.2, 0.9), "orange": (1.0, 0.55, 0.05),
           "white": (1.0, 1.0, 1.0), "pink": (1.0, 0.5, 0.75)}


# ----------------------------------------------------------------------------- sources
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as (N x 28 x 28 uint8 images, labels); split is 'train' or 't10k'."""
    config = settings.current()

    def files(root: Path) -> tuple[Path, Path]:
        return root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"

    images, labels = files(config.fashion_dir)
    if not images.exists() or not labels.exists():
        root = config.cache / "fashion-mnist"

        def fetch() -> tuple[Path, Path]:
            import torchvision  # Colab and other online machines: the same four files from the web

            torchvision.datasets.FashionMNIST(root, train=split == "train", download=True)
            return files(root / "FashionMNIST" / "raw")

        images, labels = downloads.fetch(
            f"Fashion-MNIST in {config.fashion_dir}", fetch,
            "run `make data` (Debian package dataset-fashion-mnist), or set GCSCOOP_FASHION_DIR to a folder "
            "with the four idx .gz files")
    return _read_idx(images), _read_idx(labels).astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits, upsampled from 8x8 to 28x28 grey."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    big = torch.nn.functional.interpolate(small, size=(24, 24), mode="bilinear", align_corners=False)
    big = torch.nn.functional.pad(big, (2, 2, 2, 2))
    return (big[:, 0].clamp(0, 1).numpy() * 255).astype(np.uint8), digits.target.astype(np.int64)


def _grid(n: int, rng: np.random.Generator, max_rotation: float, scale=(0.55, 0.85), shift=0.15):
    """Per-image rotated, shifted, scaled coordinates in [-1, 1] (n x 32 x 32 each)."""
    axis = (np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE * 2 - 1
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    angle = rng.uniform(-max_rotation, max_rotation, size=(n, 1, 1))
    size = rng.uniform(*scale, size=(n, 1, 1))
    cx, cy = rng.uniform(-shift, shift, size=(2, n, 1, 1))
    x, y = xx[None] - cx, yy[None] - cy
    xr = (np.cos(angle) * x + np.sin(angle) * y) / size
    yr = (-np.sin(angle) * x + np.cos(angle) * y) / size
    return xr, yr


def render_shapes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey masks (N x 32 x 32 in [0, 1]) of the SHAPE_CLASSES, one per label."""
    n = len(labels)
    x, y = _grid(n, rng, max_rotation=math.radians(15))
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    hexagon = np.max([np.abs(x * math.cos(a) + y * math.sin(a)) for a in (0, math.pi / 3, 2 * math.pi / 3)], axis=0)
    heart_x, heart_y = x * 1.25, -y * 1.25 + 0.25
    masks = [
        r < 0.8,                                                        # circle
        np.maximum(np.abs(x), np.abs(y)) < 0.7,                         # square
        (y < 0.55) & (y > -0.75 + 1.75 * np.abs(x)),                    # triangle
        r < 0.45 + 0.45 * np.cos(5 * theta) ** 2,                       # star
        ((np.abs(x) < 0.22) | (np.abs(y) < 0.22)) & (np.maximum(np.abs(x), np.abs(y)) < 0.85),  # cross
        (r > 0.5) & (r < 0.85),                                         # ring
        np.abs(x) + np.abs(y) < 0.9,                                    # diamond
        hexagon < 0.75,                                                 # hexagon
        (heart_x**2 + heart_y**2 - 0.6) ** 3 - heart_x**2 * heart_y**3 < 0,  # heart
        (r < 0.85) & (np.hypot(x - 0.4, y) > 0.65),                     # crescent
    ]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for k, mask in enumerate(masks):
        chosen = labels == k
        out[chosen] = mask[chosen]
    return out


def render_textures(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey patterns (N x 32 x 32 in [0, 1]) of the TEXTURE_CLASSES, one per label."""
    n = len(labels)
    x, y = _grid(n, rng, max_rotation=math.radians(10), scale=(0.9, 1.1), shift=1.0)
    freq = rng.uniform(2.5, 4.5, size=(n, 1, 1)) * math.pi
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    speckle = rng.random((n, IMAGE_SIZE, IMAGE_SIZE)) < 0.12
    patterns = [
        np.sin(freq * y + phase) > 0,                                   # horizontal stripes
        np.sin(freq * x + phase) > 0,                                   # vertical stripes
        np.sin(freq * (x + y) / math.sqrt(2) + phase) > 0,              # diagonal stripes
        np.sin(freq * x / 1.5 + phase) * np.sin(freq * y / 1.5 + phase) > 0,  # checkerboard
        np.hypot(((x * freq / math.pi + phase) % 2) - 1, ((y * freq / math.pi) % 2) - 1) < 0.45,  # polka dots
        (np.abs(np.sin(freq * x / 2 + phase)) < 0.3) | (np.abs(np.sin(freq * y / 2 + phase)) < 0.3),  # grid
        np.sin(freq * y + 2.0 * np.sin(freq * x / 2) + phase) > 0,      # waves
        np.sin(freq * np.hypot(x, y) + phase) > 0,                      # concentric circles
        speckle,                                                        # speckles
        np.clip((x + 1.5) / 3, 0, 1),                                   # gradient
    ]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for k, pattern in enumerate(patterns):
        chosen = labels == k
        out[chosen] = pattern[chosen]
    return out


def colourise(grey: np.ndarray, rng: np.random.Generator, colour_names=None):
    """Paint grey masks in named colours on a dark background; returns float N x 32 x 32 x 3."""
    names = list(COLOURS)
    if colour_names is None:
        colour_names = [names[i] for i in rng.integers(len(names), size=len(grey))]
    rgb = np.array([COLOURS[c] for c in colour_names], dtype=np.float32)[:, None, None, :]
    background = rng.uniform(0.0, 0.2, size=(len(grey), 1, 1, 1)).astype(np.float32)
    image = background + (rgb - background) * grey[..., None]
    return image, colour_names


def to_canvas(grey28: np.ndarray) -> np.ndarray:
    """Pad 28 x 28 grey images to the 32 x 32 canvas, as floats in [0, 1]."""
    return np.pad(grey28.astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))


STYLES = ("clean", "noisy", "blurry", "dark", "inverted")


def apply_style(images: np.ndarray, styles, rng: np.random.Generator) -> np.ndarray:
    """Apply a style ('clean', 'noisy', 'blurry', 'dark' or 'inverted') per image to float RGB images in [0, 1]; returns uint8."""
    out = images.copy()
    styles = np.asarray(styles)
    noisy = styles == "noisy"
    out[noisy] += rng.normal(0, 0.3, size=out[noisy].shape).astype(np.float32)
    blurry = styles == "blurry"
    if blurry.any():
        t = torch.from_numpy(out[blurry]).permute(0, 3, 1, 2)
        kernel = torch.ones(3, 1, 5, 5) / 25
        t = torch.nn.functional.conv2d(torch.nn.functional.pad(t, (2, 2, 2, 2), mode="replicate"), kernel, groups=3)
        out[blurry] = t.permute(0, 2, 3, 1).numpy()
    out[styles == "dark"] *= 0.3
    inverted = styles == "inverted"
    out[inverted] = 1.0 - out[inverted]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- downstream tasks
# Each embedded task: its classes, the style it is shown in, and the seed of its images
# (fixed per task, so adding a task changes no other).
EMBEDDED = {
    "fashion": dict(seed=1001, classnames=FASHION_CLASSES, style="inverted"),
    "digits": dict(seed=1000, classnames=DIGIT_CLASSES, style="noisy"),
    "shapes": dict(seed=1002, classnames=SHAPE_CLASSES, style="blurry"),
    "textures": dict(seed=1003, classnames=TEXTURE_CLASSES, style="dark"),
    "coloured_shapes": dict(seed=1004, classnames=COLOURED_SHAPE_CLASSES, style="noisy"),
}


DIGITS_WEB_FRACTION = 1 / 3  # the first third of the digits feeds the web, the rest the task


def _split(images, masks, labels, classnames, sizes, order) -> tuple[ImageSet, ImageSet, ImageSet]:
    parts, start = [], 0
    for size in sizes:
        index = order[start:start + size]
        parts.append(ImageSet(images[index], labels[index], classnames, None if masks is None else masks[index]))
        start += size
    return tuple(parts)


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(web images, web labels, task images, task labels): a fixed, disjoint split."""
    images, labels = load_digits_arrays()
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(len(labels) * DIGITS_WEB_FRACTION)
    web, task = order[:cut], order[cut:]
    return images[web], labels[web], images[task], labels[task]


def _draw(name: str, spec: dict, rng: np.random.Generator):
    """A task's images before their style: float RGB images, their foreground masks (None for
    textures, which have no object), labels and split sizes."""
    masks = None
    if name == "fashion":
        grey, labels = load_fashion("t10k")
        canvas = to_canvas(grey)
        colour, masks = np.repeat(canvas[..., None], 3, axis=-1), canvas > 0.2
        sizes = (3000, 1000, 6000)
    elif name == "digits":
        _, _, grey, labels = digits_split()
        canvas = to_canvas(grey)
        colour, masks = np.repeat(canvas[..., None], 3, axis=-1), canvas > 0.2
        sizes = (500, 200, len(labels) - 700)
    elif name == "coloured_shapes":
        n = 10000
        labels = np.arange(n) % len(spec["classnames"])
        colour_of = [c.split()[0] for c in spec["classnames"]]
        shape_of = [SHAPE_CLASSES.index(c.split()[1]) for c in spec["classnames"]]
        grey = render_shapes(np.array([shape_of[k] for k in labels]), rng)
        colour, _ = colourise(grey, rng, [colour_of[k] for k in labels])
        masks = grey > 0.5
        sizes = (4000, 2000, 4000)
    else:
        n = 5000
        labels = np.arange(n) % 10
        render = render_shapes if name == "shapes" else render_textures
        grey = render(labels, rng)
        colour, _ = colourise(grey, rng)
        masks = grey > 0.5 if name == "shapes" else None
        sizes = (2000, 1000, 2000)
    return colour, masks, labels, sizes


def build_embedded(name: str, style: str | None = None) -> Dataset:
    """Build one embedded downstream task (01_zero_shot onwards). Deterministic.

    `style` shows the same images, in the same train/val/test split, in another style
    (06_protocols: domain shift); its noise comes from a generator of its own.
    """
    if name not in EMBEDDED:
        raise ValueError(f"unknown dataset {name!r}: choose one of {sorted(EMBEDDED)}")
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}: choose one of {list(STYLES)}")
    spec = EMBEDDED[name]
    rng = np.random.default_rng(spec["seed"])
    colour, masks, labels, sizes = _draw(name, spec, rng)
    images = apply_style(colour, [spec["style"]] * len(labels), rng)
    order = rng.permutation(len(labels))
    if style is not None and style != spec["style"]:
        own = np.random.default_rng([spec["seed"], STYLES.index(style)])
        images = apply_style(colour, [style] * len(labels), own)
    train, val, test = _split(images, masks, labels, spec["classnames"], sizes, order)
    return Dataset(name, list(spec["classnames"]), train, val, test, style=style or spec["style"])
