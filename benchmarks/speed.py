"""Training steps per second of our step against a reference-style step, in one run.

Ours: image features cached once, the text encoder's exact shortcuts (context cut after the
last end-of-text token, the shared prompt prefix encoded once; gcscoop_lib.prompts.TextEncoder),
run eagerly and, opt-in, under torch.compile (the first step of each shape compiles; not timed).
Reference-style: what the published CoOp / ProGrad / GCSCoOp code does: the frozen image
encoder runs on every forward pass (ProGrad's teacher runs it once more), the text
encoder runs over the full context, nothing is cached. Both go through the *same* update
functions of gcscoop_lib.methods, so only the model around them differs. Exact mode: one
view, no augmentation, so both must end with the same accuracy for the same seed.

    python benchmarks/speed.py                      # tiny CLIP, every embedded task, CPU
    python benchmarks/speed.py --device cuda --steps 50
    python benchmarks/speed.py --model ViT-B-16 --device cuda --classes 50 100 500 --text-chunk 100 [--compile]

With --model, an open_clip architecture with *random* weights (the same compute as the
pretrained ones, no download) is timed on synthetic images and class names, at each number
of classes, in the device's precision (bf16 autocast on a GPU with bf16, else fp32:
gcscoop_lib.models.autocast_dtype); it reports steps/s, peak GPU memory and the text
encoder's achieved TFLOP/s (a count of its matrix multiplications: the forward pass, and a
backward pass that computes input gradients only, since the encoder's weights are frozen).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gcscoop_lib import datasets, evaluation, methods, protocol, splits, training, tuning
from gcscoop_lib.devices import autocast
from gcscoop_lib.features import normalise_images
from gcscoop_lib.imagesets import images_to_tensor
from gcscoop_lib.methods import Batch
from gcscoop_lib.models import load_clip
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.prompts import PromptedClip, PromptLearner, TextEncoder

METHODS = ["coop", "prograd", "gcscoop"]


class ImageBatch:
    """A batch of pixels whose features are computed again on every access, as the published
    code runs the frozen image encoder on every forward pass (ProGrad's teacher once more)."""

    def __init__(self, clip, images: torch.Tensor, labels: torch.Tensor):
        self.clip, self.images, self.labels = clip, images, labels

    @property
    def features(self) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.clip.model.encode_image(self.images).float(), dim=-1)


def model_for(style: str, clip, config, classnames: list[str]) -> PromptedClip:
    """A fresh model of one style ('ours', 'compiled' or 'reference'), its context initialised as training's."""
    model = training.build_model(clip, config, classnames)
    if style == "compiled":
        return PromptedClip(clip, model.learner, compile=True)
    if style == "reference":
        model.text_encoder = TextEncoder(clip, reference=True)   # the full context, no shortcut
    return model


def few_shot_pixels(clip, config) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's few-shot training images, normalised for the image encoder, and their labels."""
    images = splits.few_shot_images(datasets.load_dataset(config.dataset), config.shots, config.seed)
    pixels = normalise_images(clip, images_to_tensor(images.images).to(clip.device))
    return pixels, torch.from_numpy(images.labels).to(clip.device)


def steps_per_second(model, batch, knobs, update, steps: int, device) -> float:
    optimizer = torch.optim.SGD(model.params, lr=1e-3, momentum=protocol.MOMENTUM, weight_decay=protocol.WEIGHT_DECAY)

    def one():
        step = update(model, batch, knobs)
        optimizer.zero_grad(set_to_none=True)
        methods.assign_grad(model.params, step.grad)
        optimizer.step()

    for _ in range(3):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def text_flops_per_step(clip, tokens: torch.Tensor, shared: int, passes: int, reference: bool = False) -> float:
    """Matrix-multiply FLOPs of the text transformer for one step, over the rows each style
    actually encodes, `passes` times (2 for SAM-type steps). The weights are frozen, so the
    backward pass computes input gradients only: one more forward's worth, x2 in all."""
    width = clip.model.transformer.width
    layers = clip.model.transformer.layers
    mlp = clip.model.transformer.resblocks[0].mlp.c_fc.out_features
    k = tokens.shape[0]
    length = tokens.shape[1] if reference else int(tokens.argmax(-1).max()) + 1
    rows = k * length if reference else shared + k * (length - shared)
    last_rows = rows if reference else k                 # ours: the last block's second half on EOT rows only
    qkv, out_and_mlp = 2 * 3 * width * width, 2 * (width * width + 2 * width * mlp)
    attention = 2 * 2 * k * length * length * width      # scores and weighted sum, per layer
    flops = layers * (rows * qkv + attention) + (layers - 1) * rows * out_and_mlp + last_rows * out_and_mlp
    return 2.0 * passes * flops


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads > 1 else ''}"


def write_report(lines: list[str], rows: list[dict], stem: Path, device: torch.device) -> None:
    """Print the Markdown table and keep it beside the raw rows: stem.md and stem.json."""
    report = "\n".join(lines) + "\n"
    print(report)
    stem.parent.mkdir(parents=True, exist_ok=True)
    (stem.parent / f"{stem.name}.md").write_text(report)
    (stem.parent / f"{stem.name}.json").write_text(json.dumps({"device": machine(device), "rows": rows}, indent=2) + "\n")


def gib(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def synthetic(args) -> None:
    """Random-weight open_clip model, synthetic classes and images: ours vs reference-style."""
    clip = load_clip(args.model, None, device=args.device)
    device = clip.device
    rows = []
    for k in args.classes:
        names = [f"thing {i}" for i in range(k)]
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(args.batch, 3, clip.image_size, clip.image_size, generator=generator).to(device)
        images = normalise_images(clip, images)
        labels = torch.randint(k, (args.batch,), generator=generator).to(device)
        with torch.no_grad(), autocast(device):
            features = F.normalize(clip.model.encode_image(images).float(), dim=-1)
        for method in METHODS:
            knobs, update = methods.get(method).knobs(), methods.get(method).update
            cells = {}
            for style in ("ours", "reference"):
                learner = PromptLearner(clip, names).to(device)
                if style == "ours":
                    model = PromptedClip(clip, learner, text_chunk=args.text_chunk, compile=args.compile)
                    batch = Batch(features, labels)
                else:
                    model, batch = PromptedClip(clip, learner), ImageBatch(clip, images, labels)
                    model.text_encoder = TextEncoder(clip, reference=True)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with autocast(device):
                    rate = steps_per_second(model, batch, knobs, update, args.steps, device)
                memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
                passes = 2 if method == "gcscoop" else 1
                flops = text_flops_per_step(clip, learner.token_ids(), learner.shared, passes, style == "reference")
                cells[style] = (rate, memory, flops * rate / 1e12)
            rows.append({"classes": k, "method": method,
                         **{f"{s}_{m}": v for s, c in cells.items() for m, v in zip(("steps_per_s", "peak_gib", "text_tflops"), c)}})
            r = rows[-1]
            print(f"{k:4d} classes {method:8s} ours {r['ours_steps_per_s']:7.2f} steps/s ({gib(r['ours_peak_gib'])} GiB, "
                  f"{r['ours_text_tflops']:.2f} TFLOP/s)  reference {r['reference_steps_per_s']:7.2f} steps/s "
                  f"({gib(r['reference_peak_gib'])} GiB)  x{r['ours_steps_per_s'] / r['reference_steps_per_s']:.1f}", flush=True)
    lines = [f"{args.model} (random weights), batch {args.batch}, {args.steps} timed steps, text chunk "
             f"{args.text_chunk or 'off'}, ours {'compiled' if args.compile else 'eager'}, {machine(device)}.", "",
             "| classes | method | ours (steps/s) | reference (steps/s) | speed-up | ours peak GiB | reference peak GiB "
             "| ours text TFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['classes']} | {methods.get(r['method']).label} | {r['ours_steps_per_s']:.2f} | "
                     f"{r['reference_steps_per_s']:.2f} | {r['ours_steps_per_s'] / r['reference_steps_per_s']:.1f}x | "
                     f"{gib(r['ours_peak_gib'])} | {gib(r['reference_peak_gib'])} | {r['ours_text_tflops']:.2f} |")
    write_report(lines, rows, args.out / f"speed_{args.model}_{device.type}", device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=datasets.dataset_names())
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method and style")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--model", default="tiny", help="tiny (embedded tasks) or an open_clip name (synthetic)")
    parser.add_argument("--classes", nargs="+", type=int, default=[50, 100, 500], help="with --model: class counts")
    parser.add_argument("--batch", type=int, default=32, help="with --model: images per step")
    parser.add_argument("--text-chunk", type=int, default=0, help="with --model: classes per text-encoder chunk")
    parser.add_argument("--compile", action="store_true", help="with --model: time our step under torch.compile")
    args = parser.parse_args(argv)
    if args.model != "tiny":
        synthetic(args)
        return

    clip = load_clip("tiny", device=args.device)
    device = clip.device
    tuned = tuning.load_tuning(args.out / "tuning.json")
    styles = ("ours", "compiled", "reference")
    rows = []
    for dataset in args.datasets:
        for method in METHODS:
            run = training.TrainConfig(method=method, dataset=dataset, seed=args.seed,
                                       knobs=tuned["knobs"].get(method, {}), **tuned["recipe"]).resolve()
            config = run.config
            task = prepare_task(clip, dataset, config.shots, args.seed)
            pixels, labels = few_shot_pixels(clip, config)
            update, knobs = run.method.update, run.knobs
            n = min(config.batch_size, len(labels))
            row = {"dataset": dataset, "method": method}
            for style in styles:
                if style == "reference":
                    def batch_at(view, idx):
                        return ImageBatch(clip, pixels[idx], labels[idx])
                else:
                    def batch_at(view, idx):
                        return Batch(task.train_features[view, idx].to(device), labels[idx])
                first = batch_at(torch.zeros(n, dtype=torch.long), torch.arange(n))
                row[f"{style}_steps_per_s"] = steps_per_second(model_for(style, clip, config, task.base_names),
                                                              first, knobs, update, args.steps, device)
                # Same seed, full recipe, every style: the accuracy must not change. The learned
                # context is evaluated by one eager model, on the cached test features.
                model = model_for(style, clip, config, task.base_names)
                training.fit(model, run, 1, len(labels), batch_at)
                evaluated = training.build_model(clip, config, task.base_names)
                with torch.no_grad():
                    evaluated.learner.ctx.copy_(model.learner.ctx)
                row[f"{style}_H"] = evaluation.evaluate_prompt(evaluated, task)["H"]
                row[f"{style}_context"] = model.learner.ctx.detach().clone()
            for style in ("ours", "compiled"):
                row[f"{style}_speedup"] = row[f"{style}_steps_per_s"] / row["reference_steps_per_s"]
                difference = (row.pop(f"{style}_context") - row["reference_context"]).abs().max().item()
                row[f"{style}_max_context_difference"] = difference
            del row["reference_context"]
            rows.append(row)
            print(f"{dataset:9s} {method:8s} ours {row['ours_steps_per_s']:6.1f} (compiled {row['compiled_steps_per_s']:6.1f}) "
                  f"reference {row['reference_steps_per_s']:5.1f} steps/s  x{row['ours_speedup']:.1f} (x{row['compiled_speedup']:.1f})  "
                  f"H {row['ours_H']:.1f} / {row['compiled_H']:.1f} / {row['reference_H']:.1f}", flush=True)
    lines = [f"Tiny CLIP, {args.steps} timed steps per cell, batch {config.batch_size}, {machine(device)}.", "",
             "| task | method | ours (steps/s) | ours compiled (steps/s) | reference-style (steps/s) | speed-up | "
             "speed-up compiled | H ours | H compiled | H reference |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {methods.get(r['method']).label} | {r['ours_steps_per_s']:.0f} | "
                     f"{r['compiled_steps_per_s']:.0f} | {r['reference_steps_per_s']:.0f} | {r['ours_speedup']:.1f}x | "
                     f"{r['compiled_speedup']:.1f}x | {r['ours_H']:.1f} | {r['compiled_H']:.1f} | {r['reference_H']:.1f} |")
    write_report(lines, rows, args.out / f"speed_{device.type}", device)


if __name__ == "__main__":
    main()
