"""Pretrain the embedded tiny CLIP on a synthetic captioned "web" (09_appendix_tiny_clip).

    python -m gcscoop_lib.tiny --out gcscoop_lib/weights/tiny

regenerates the shipped weights deterministically (same machine type, same result) in
about ten CPU minutes. The web mixes four image sources (Fashion-MNIST's training set,
a third of scikit-learn's digits, procedural shapes and textures) in five styles, with
captions whose wording depends on the source, that usually name the style and sometimes
the colour, and that mix up some pairs of classes: enough structure for zero-shot transfer,
enough noise and style gap to leave something for prompt learning. How often captions
name the style, and the logit scale the weights ship with, were calibrated so that the
published baselines behave as on real CLIP (scripts/calibrate_world.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .imagesets import images_to_tensor

MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": world.IMAGE_SIZE, "patch_size": 8, "width": 128, "layers": 4,
                   "head_width": 32, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4,
                 "mlp_ratio": 2.0},
}
PREPROCESS_CFG = {"size": world.IMAGE_SIZE, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                  "interpolation": "bicubic", "resize_mode": "shortest"}

GENERIC_TEMPLATES = ["a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a {}.", "{}",
                     "a photo of the {}.", "this is a {}.", "a close-up photo of a {}."]
# How each source is usually captioned on the web. Photos get photo captions; drawings,
# digits and patterns mostly get their own wording, as on the real web. This is what makes
# the wording of a prompt matter (01_zero_shot) and gives prompt learning something to find.
SOURCE_TEMPLATES = {
    "fashion": GENERIC_TEMPLATES,
    "digits": ["a handwritten {}.", "the digit {}.", "a drawing of the number {}.", "the number {} written by hand."],
    "shapes": ["a {} shape.", "a drawing of a {}.", "a {} icon.", "a simple {} symbol."],
    "textures": ["a {} pattern.", "{} texture.", "a fabric with {}.", "a surface covered in {}."],
}
GENERIC_SHARE = 0.05      # share of captions of the non-photo sources that use generic wording
# Pairs of classes that web captions often mix up (each is called the other 40 % of the time).
CONFUSED_PAIRS = {
    "fashion": [("pullover", "coat"), ("t-shirt", "dress"), ("sneaker", "ankle boot"), ("sandal", "bag")],
    "digits": [("two", "three"), ("one", "four"), ("five", "six"), ("seven", "nine")],
    "shapes": [("circle", "star"), ("square", "cross"), ("hexagon", "ring"), ("diamond", "heart")],
    "textures": [("horizontal stripes", "vertical stripes"), ("checkerboard", "polka dots"),
                 ("grid", "waves"), ("concentric circles", "speckles")],
}
CONFUSION = 0.4
STYLE_WORDS = {"noisy": "noisy", "blurry": "blurry", "dark": "dark", "inverted": "inverted"}
STYLE_PROBS = {"clean": 0.6, "noisy": 0.1, "blurry": 0.1, "dark": 0.1, "inverted": 0.1}
# Real CLIP's logit scale sits at its clamp of 100 (learned with 32k-pair batches); the tiny
# CLIP learns about 20 with batches of 256. The shipped weights carry CLIP's 100: the scale
# does not change zero-shot predictions, but it sets how confident they are, which is what
# prompt learning's cross-entropy and ProGrad's and KgCoOp's teachers see (09_appendix_tiny_clip).
TEMPERATURE = 100.0
CAPTION_NOISE = 0.1       # probability that a caption names a random class of the same source
STYLE_MENTION = 0.7       # probability that a styled image's caption says its style (calibrated, 09_appendix_tiny_clip)
COLOUR_MENTION = 0.4      # probability that a coloured image's caption says its colour


def caption(source: str, classname: str, style: str, colour: str | None, rng: np.random.Generator) -> str:
    """One web caption: the source's usual wording, sometimes with the style and colour words."""
    words = []
    if style != "clean" and rng.random() < STYLE_MENTION:
        words.append(STYLE_WORDS[style])
    if colour is not None and rng.random() < COLOUR_MENTION:
        words.append(colour)
    generic = source == "fashion" or rng.random() < GENERIC_SHARE
    templates = GENERIC_TEMPLATES if generic else SOURCE_TEMPLATES[source]
    template = templates[rng.integers(len(templates))]
    return template.format(" ".join(words + [classname]))


def web_label(source: str, classes: list[str], label: int, rng: np.random.Generator) -> str:
    """The class name a web caption uses: usually right, sometimes a confused or random one."""
    name = classes[label]
    if rng.random() < CAPTION_NOISE:
        return classes[rng.integers(len(classes))]
    for a, b in CONFUSED_PAIRS[source]:
        if name in (a, b) and rng.random() < CONFUSION:
            return b if name == a else a
    return name


def web_vocabulary() -> list[str]:
    """Every word the web's captions use (the only words the tiny CLIP knows)."""
    words = set()
    for templates in list(SOURCE_TEMPLATES.values()) + [GENERIC_TEMPLATES]:
        for t in templates:
            words.update(t.replace("{}", " ").replace(".", " ").replace("!", " ").split())
    for classes in (world.FASHION_CLASSES, world.DIGIT_CLASSES, world.SHAPE_CLASSES, world.TEXTURE_CLASSES):
        for name in classes:
            words.update(name.split())
    words.update(STYLE_WORDS.values())
    words.update(world.COLOURS)
    words.update(["photo"])
    return sorted(words)


def build_web(seed: int = 0, fashion_count: int = 30000, digit_copies: int = 15,
              procedural_count: int = 20000):
    """The pretraining web: uint8 images and their captions. Disjoint from every task's images."""
    rng = np.random.default_rng(seed)
    sources = []
    grey, labels = world.load_fashion("train")
    pick = rng.choice(len(labels), size=fashion_count, replace=False)
    sources.append(("fashion", world.to_canvas(grey[pick]), labels[pick], world.FASHION_CLASSES, "grey"))
    d_images, d_labels, _, _ = world.digits_split()
    rep = np.tile(np.arange(len(d_labels)), digit_copies)
    shifted = np.stack([np.roll(im, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)) for im in d_images[rep]])
    sources.append(("digits", world.to_canvas(shifted), d_labels[rep], world.DIGIT_CLASSES, "grey"))
    for source, classes, render in (("shapes", world.SHAPE_CLASSES, world.render_shapes),
                                    ("textures", world.TEXTURE_CLASSES, world.render_textures)):
        lab = rng.integers(10, size=procedural_count)
        sources.append((source, render(lab, rng), lab, classes, "colour"))

    all_images, all_captions = [], []
    style_names, style_p = list(STYLE_PROBS), list(STYLE_PROBS.values())
    for source, grey_images, labs, classes, kind in sources:
        n = len(labs)
        if kind == "grey":  # half of the grey photos are tinted
            tinted = rng.random(n) < 0.5
            rgb, colours = world.colourise(grey_images, rng)
            rgb[~tinted] = np.repeat(grey_images[~tinted, ..., None], 3, axis=-1)
            colours = [c if t else None for c, t in zip(colours, tinted)]
        else:
            rgb, colours = world.colourise(grey_images, rng)
        styles = rng.choice(style_names, size=n, p=style_p)
        all_images.append(world.apply_style(rgb, styles, rng))
        for lab, style, colour in zip(labs, styles, colours):
            all_captions.append(caption(source, web_label(source, classes, lab, rng), style, colour, rng))
    return np.concatenate(all_images), all_captions


def train_clip(images: np.ndarray, captions: list[str], epochs: int = 4, batch_size: int = 256, lr: float = 1e-3,
               seed: int = 0, device: str = "cpu", log=print):
    """Contrastive pretraining of a fresh tiny CLIP on image-caption pairs; returns (model, losses)."""
    import open_clip

    torch.manual_seed(seed)
    start = time.time()
    tokens = open_clip.tokenizer.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])(captions)
    model = open_clip.CLIP(**MODEL_CFG).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = len(captions) // batch_size
    total = epochs * steps_per_epoch
    warmup = min(100, max(total // 10, 1))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
    mean = torch.tensor(PREPROCESS_CFG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"]).view(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(captions), generator=generator)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            x = (images_to_tensor(images[idx.numpy()]) - mean) / std
            img, txt, scale = model(x.to(device), tokens[idx].to(device))
            logits = scale * img @ txt.T
            target = torch.arange(len(idx), device=device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
        mean_loss = sum(losses[-steps_per_epoch:]) / steps_per_epoch
        log(f"epoch {epoch + 1}/{epochs}: loss {mean_loss:.3f} ({time.time() - start:.0f}s)")
    return model.eval(), losses


def save_local_dir(model, out: Path) -> str:
    """Save in open_clip's local-dir format (fp16 safetensors + config) with its sha256; return the digest."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2) + "\n")
    return hashlib.sha256((out / "open_clip_model.safetensors").read_bytes()).hexdigest()


def pretrain(out: Path, epochs: int = 4, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
             device: str = "cpu", temperature: float | None = TEMPERATURE, log=print, **web_sizes) -> dict:
    """Build the web, pretrain the tiny CLIP on it and save it with its checksum (the shipped weights).

    temperature, when given, replaces the learned logit scale after pretraining. Everything is
    written to a sibling folder first and moved into place at the end, so an interrupted run
    leaves `out` as it was. web_sizes go to build_web (smaller webs for tests).
    """
    if epochs < 1 or batch_size < 2 or not lr > 0 or (temperature is not None and not temperature > 0):
        raise ValueError(f"pretraining needs epochs >= 1, batch_size >= 2, lr > 0 and temperature > 0 "
                         f"(got {epochs}, {batch_size}, {lr}, {temperature})")
    start = time.time()
    images, captions = build_web(seed, **web_sizes)
    log(f"web: {len(captions)} image-caption pairs built in {time.time() - start:.0f}s; e.g. {captions[:3]}")
    model, _ = train_clip(images, captions, epochs, batch_size, lr, seed, device, log)
    learned = model.logit_scale.exp().item()
    if temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(temperature))
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    digest = save_local_dir(model, partial)
    info = {"sha256": digest, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "pairs": len(captions), "learned_logit_scale": round(learned, 2), "logit_scale": temperature,
            "seconds": round(time.time() - start), "torch": torch.__version__}
    (partial / "checksums.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    partial.replace(out)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / "tiny")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--temperature", type=float, default=TEMPERATURE,
                        help="logit scale set after pretraining (real CLIP's is 100)")
    args = parser.parse_args(argv)
    try:
        info = pretrain(args.out, args.epochs, args.batch_size, args.lr, args.seed, args.device, args.temperature)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
