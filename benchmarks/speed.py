"""Training steps per second of our step against a reference-style step, in one run.

Ours: image features cached once, text context cut after the last end-of-text token.
Reference-style: what the published CoOp / ProGrad / GCSCoOp code does: the frozen image
encoder runs on every forward pass (ProGrad's teacher runs it once more), the text
encoder runs over the full context, nothing is cached. Both go through the *same* update
functions of gcscoop_lib.methods, so only the model around them differs. Exact mode: one
view, no augmentation, so both must end with the same accuracy for the same seed.

    python benchmarks/speed.py                      # tiny CLIP, every embedded task, CPU
    python benchmarks/speed.py --device cuda --steps 50
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
from gcscoop_lib.prompts import PromptedClip, TextEncoder

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=data.dataset_names())
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method and style")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)

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
