"""Training steps per second of our step against a reference-style step, in one run.

Ours: image features cached once, text context cut after the last end-of-text token.
Reference-style: what the published CoOp / ProGrad / GCSCoOp code does: the frozen image
encoder runs on every forward pass (ProGrad's teacher runs it once more), the text
encoder runs over the full context, nothing is cached. Both go through the *same* update
functions of gcscoop_lib.methods, so only the model around them differs. Exact mode: one
view, no augmentation, so both must end with the same accuracy for the same seed.

    python benchmarks/speed.py                      # tiny CLIP, every embedded task, CPU
    python benchmarks/speed.py --device cuda --steps 50
    python benchmarks/speed.py --model ViT-B-16 --device cuda --classes 50 100 500 --text-chunk 100

With --model, an open_clip architecture with *random* weights (the same compute as the
pretrained ones, no download) is timed on synthetic images and class names, at each number
of classes, with bf16 autocast on a GPU; it reports steps/s, peak GPU memory and the text
encoder's achieved TFLOP/s (a count of its matrix multiplications, forward and backward).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gcscoop_lib import data, evaluation, experiments, methods, training
from gcscoop_lib.methods import Batch
from gcscoop_lib.models import load_clip, normalise_images
from gcscoop_lib.prompts import PromptedClip, PromptLearner, TextEncoder

METHODS = ["coop", "prograd", "gcscoop"]


class ReferenceStyle(PromptedClip):
    """Logits from raw images: the image encoder runs on every call, the text encoder on the full context."""

    def __init__(self, clip, learner):
        super().__init__(clip, learner)
        self.text_encoder = TextEncoder(clip, truncate=False)

    def image_features(self, images):
        with torch.no_grad():
            return F.normalize(self.clip.model.encode_image(images).float(), dim=-1)

    def logits(self, images, text_features=None):
        return super().logits(self.image_features(images), text_features)

    def zero_shot_logits(self, images):
        return super().zero_shot_logits(self.image_features(images))


def image_task(clip, task: training.Task, dataset: str, shots: int, seed: int) -> training.Task:
    """The same task with the training set as normalised images instead of features."""
    ds = data.load_dataset(dataset)
    base, _ = data.base_new_classes(len(ds.classnames))
    train = data.select_classes(ds.train, base).subset(data.few_shot_split(ds, shots, seed))
    images = normalise_images(clip, data.images_to_tensor(train.images).to(clip.device)).cpu()
    return training.Task(task.dataset, task.base_names, task.new_names, images.unsqueeze(0), task.train_labels,
                         task.val, task.test)


def steps_per_second(model, batch: Batch, hp: dict, update, steps: int, device) -> float:
    optimizer = torch.optim.SGD(model.params, lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def one():
        step = update(model, batch, hp)
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


def text_flops_per_step(clip, tokens: torch.Tensor, passes: int, truncate: bool = True) -> float:
    """Matrix-multiply FLOPs of the text transformer for one step: forward and backward (x3),
    `passes` times (2 for SAM-type steps), over the positions actually encoded."""
    width = clip.model.transformer.width
    layers = clip.model.transformer.layers
    mlp = clip.model.transformer.resblocks[0].mlp.c_fc.out_features
    length = int(tokens.argmax(-1).max()) + 1 if truncate else tokens.shape[1]
    n = tokens.shape[0] * length
    per_token = layers * 2 * (4 * width * width + 2 * width * mlp)        # q, k, v, out projections + MLP
    attention = layers * 2 * 2 * length * width                             # scores and weighted sum
    return 3.0 * passes * n * (per_token + attention)


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
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features = F.normalize(clip.model.encode_image(images).float(), dim=-1)
        for method in METHODS:
            hp = methods.method_hparams(method)
            update = methods.METHODS[method][0]
            cells = {}
            for style in ("ours", "reference"):
                learner = PromptLearner(clip, names).to(device)
                if style == "ours":
                    model, batch = PromptedClip(clip, learner, text_chunk=args.text_chunk), Batch(features, labels)
                else:
                    model, batch = ReferenceStyle(clip, learner), Batch(images, labels)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    rate = steps_per_second(model, batch, hp, update, args.steps, device)
                memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                passes = 2 if method == "gcscoop" else 1
                flops = text_flops_per_step(clip, learner.token_ids(), passes, truncate=style == "ours")
                cells[style] = (rate, memory, flops * rate / 1e12)
            rows.append({"classes": k, "method": method,
                         **{f"{s}_{m}": v for s, c in cells.items() for m, v in zip(("steps_per_s", "peak_gib", "text_tflops"), c)}})
            r = rows[-1]
            print(f"{k:4d} classes {method:8s} ours {r['ours_steps_per_s']:7.2f} steps/s ({r['ours_peak_gib']:.1f} GiB, "
                  f"{r['ours_text_tflops']:.1f} TFLOP/s)  reference {r['reference_steps_per_s']:7.2f} steps/s "
                  f"({r['reference_peak_gib']:.1f} GiB)  x{r['ours_steps_per_s'] / r['reference_steps_per_s']:.1f}", flush=True)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"{args.model} (random weights), batch {args.batch}, {args.steps} timed steps, text chunk "
             f"{args.text_chunk or 'off'}, {device_name}.", "",
             "| classes | method | ours (steps/s) | reference (steps/s) | speed-up | ours peak GiB | reference peak GiB "
             "| ours text TFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['classes']} | {methods.LABELS[r['method']]} | {r['ours_steps_per_s']:.2f} | "
                     f"{r['reference_steps_per_s']:.2f} | {r['ours_steps_per_s'] / r['reference_steps_per_s']:.1f}x | "
                     f"{r['ours_peak_gib']:.1f} | {r['reference_peak_gib']:.1f} | {r['ours_text_tflops']:.1f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"speed_{args.model}_{device.type}"
    (args.out / f"{stem}.md").write_text(report)
    (args.out / f"{stem}.json").write_text(json.dumps({"device": device_name, "rows": rows}, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=data.dataset_names())
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method and style")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--model", default="tiny", help="tiny (embedded tasks) or an open_clip name (synthetic)")
    parser.add_argument("--classes", nargs="+", type=int, default=[50, 100, 500], help="with --model: class counts")
    parser.add_argument("--batch", type=int, default=32, help="with --model: images per step")
    parser.add_argument("--text-chunk", type=int, default=0, help="with --model: classes per text-encoder chunk")
    args = parser.parse_args(argv)
    if args.model != "tiny":
        synthetic(args)
        return

    clip = load_clip("tiny", device=args.device)
    tuning = experiments.load_tuning(Path("results") / "tuning.json")
    rows = []
    for dataset in args.datasets:
        for method in METHODS:
            config = experiments.config_for(tuning, method, dataset, args.seed).resolved()
            task = training.prepare_task(clip, dataset, config.shots, args.seed)
            ref_task = image_task(clip, task, dataset, config.shots, args.seed)
            update = methods.METHODS[method][0]
            n = min(config.batch_size, task.train_features.shape[1])
            ours = training.build_model(clip, config, task.base_names)
            ref = ReferenceStyle(clip, training.build_model(clip, config, task.base_names).learner)
            fast = steps_per_second(ours, Batch(task.train_features[0][:n].to(clip.device), task.train_labels[:n].to(clip.device)),
                                    config.hparams, update, args.steps, clip.device)
            slow = steps_per_second(ref, Batch(ref_task.train_features[0][:n].to(clip.device), task.train_labels[:n].to(clip.device)),
                                    config.hparams, update, args.steps, clip.device)
            # Same seed, full recipe, both styles: the accuracy must not change.
            a = training.train(config, clip, task)
            reference_learner = training.build_model(clip, config, task.base_names).learner
            b = training.train(config, clip, ref_task, model=ReferenceStyle(clip, reference_learner))
            evaluated = training.build_model(clip, config, task.base_names)
            with torch.no_grad():
                evaluated.learner.ctx.copy_(b.model.learner.ctx)
            acc_a, acc_b = evaluation.evaluate_prompt(a.model, task), evaluation.evaluate_prompt(evaluated, task)
            rows.append({"dataset": dataset, "method": method, "ours_steps_per_s": fast, "reference_steps_per_s": slow,
                         "speedup": fast / slow, "ours_H": acc_a["H"], "reference_H": acc_b["H"],
                         "max_context_difference": (a.model.learner.ctx - b.model.learner.ctx).abs().max().item()})
            r = rows[-1]
            print(f"{dataset:9s} {method:8s} ours {fast:7.1f} steps/s  reference {slow:6.1f} steps/s  "
                  f"x{r['speedup']:.1f}  H {r['ours_H']:.1f} vs {r['reference_H']:.1f}", flush=True)

    device_name = torch.cuda.get_device_name() if clip.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    lines = [f"Tiny CLIP, {args.steps} timed steps per cell, batch {config.batch_size}, {device_name}.", "",
             "| task | method | ours (steps/s) | reference-style (steps/s) | speed-up | H ours | H reference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {methods.LABELS[r['method']]} | {r['ours_steps_per_s']:.0f} | "
                     f"{r['reference_steps_per_s']:.0f} | {r['speedup']:.1f}x | {r['ours_H']:.1f} | {r['reference_H']:.1f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    tag = clip.device.type
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"speed_{tag}.md").write_text(report)
    (args.out / f"speed_{tag}.json").write_text(json.dumps({"device": device_name, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
