"""Training steps per second of our step against a reference-style step, in one run.

Ours: image features cached once, the text encoder's exact shortcuts (context cut after the
last end-of-text token, the shared prompt prefix encoded once; gcscoop_lib.prompts.TextEncoder),
run eagerly and, opt-in, under torch.compile (the first step of each shape compiles; not timed).
CoCoOp's per-image prompts: the B images' prompts for the K classes in one call, each image's
prefix encoded once (gcscoop_lib.cocoop); it has no compiled style.
Reference-style: what the published CoOp / ProGrad / GCSCoOp / CoCoOp code does: the frozen
image encoder runs on every forward pass (ProGrad's teacher runs it once more), the text
encoder runs over the full context, nothing is cached; CoCoOp's loops over the batch in
Python, encoding each image's K prompts in turn. Both go through the *same* update
functions of gcscoop_lib.methods, so only the model around them differs. Exact mode: one
view, no augmentation, so both must end with the same accuracy for the same seed; each
style's learned parameters are evaluated by one eager model.

    python benchmarks/speed.py                      # tiny CLIP, every embedded task, CPU
    python benchmarks/speed.py --device cuda --steps 50 --methods coop cocoop
    python benchmarks/speed.py --model ViT-B-16 --device cuda --classes 50 100 500 --text-chunk 100 [--compile]
    python benchmarks/speed.py --methods cocoop --datasets shapes digits --tag cocoop   # its own report

With --model, an open_clip architecture with *random* weights (the same compute as the
pretrained ones, no download) is timed on synthetic images and class names, at each number
of classes, in the device's precision (bf16 autocast on a GPU with bf16, else fp32:
gcscoop_lib.models.autocast_dtype); it reports steps/s, peak GPU memory, the text
encoder's achieved TFLOP/s (a count of its matrix multiplications: the forward pass, and a
backward pass that computes input gradients only, since the encoder's weights are frozen),
and how far one step's gradient of ours is from the reference's, from the same parameters.
A style that runs out of GPU memory is reported as n/a.
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gcscoop_lib import cocoop, datasets, evaluation, methods, prompts, protocol, splits, training, tuning
from gcscoop_lib.devices import autocast, autocast_dtype
from gcscoop_lib.features import normalise_images
from gcscoop_lib.imagesets import images_to_tensor
from gcscoop_lib.methods import Batch
from gcscoop_lib.models import load_clip
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.prompts import SINGLE_TEMPLATE, PromptedClip, PromptLearner, TextEncoder

METHODS = ["coop", "prograd", "gcscoop", "cocoop"]
STYLES = ("ours", "compiled", "reference")


class ImageBatch:
    """A batch of pixels whose features are computed again on every access, as the published
    code runs the frozen image encoder on every forward pass (ProGrad's teacher once more)."""

    def __init__(self, clip, images: torch.Tensor, labels: torch.Tensor):
        self.clip, self.images, self.labels = clip, images, labels

    @property
    def features(self) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.clip.model.encode_image(self.images).float(), dim=-1)


class ReferenceCoCoOp(cocoop.CoCoOpModel):
    """CoCoOp as its public code runs it (KaiyangZhou/CoOp, trainers/cocoop.py): the
    meta-network shifts the context for the whole batch, a Python loop builds each image's
    prompts for all the classes, and another runs them through the text encoder over the
    full context, one image at a time. Fed an ImageBatch, the image encoder runs on every pass."""

    def __init__(self, clip, learner: PromptLearner, template: str = SINGLE_TEMPLATE,
                 meta_net: cocoop.MetaNet | None = None):
        super().__init__(clip, learner, template, meta_net)
        self.text_encoder = TextEncoder(clip, reference=True)

    def logits(self, image_features: torch.Tensor, text_features: torch.Tensor | None = None) -> torch.Tensor:
        if text_features is not None:
            raise ValueError("CoCoOp's text features depend on the image: call logits(image_features)")
        tokens = self.learner.token_ids()
        with autocast(self.clip.device):
            ctx = self.learner.ctx + self.meta_net(image_features)[:, None, :]
            image_prompts = torch.stack([self.learner(ctx_i) for ctx_i in ctx])
        out = []
        for prompts_i, feature in zip(image_prompts, image_features):
            with autocast(self.clip.device):
                text = self.text_encoder(prompts_i, tokens)
            text = F.normalize(text.float(), dim=-1)
            out.append(self.logit_scale * feature @ text.T)
        return torch.stack(out)


def twin_learner(learner: PromptLearner) -> PromptLearner:
    """A learner with the same classes, settings and initial context (its own parameter)."""
    twin = PromptLearner(learner.clip, learner.classnames, learner.n_ctx, learner.ctx_init, learner.position,
                         learner.class_specific)
    twin.initial_ctx.copy_(learner.initial_ctx)
    return twin


def reference_of(model: PromptedClip) -> PromptedClip:
    """The reference-style model of one of ours, starting from its learned parameters."""
    learner = twin_learner(model.learner)
    if isinstance(model, cocoop.CoCoOpModel):
        twin = ReferenceCoCoOp(model.clip, learner, model.template, copy.deepcopy(model.meta_net))
    else:
        twin = PromptedClip(model.clip, learner, model.template)
        twin.text_encoder = TextEncoder(model.clip, reference=True)   # the full context, no shortcut
    return twin.load_learned(model.learned())


def model_for(style: str, clip, run, classnames: list[str]) -> PromptedClip:
    """A fresh model of one style ('ours', 'compiled' or 'reference'), initialised as training's."""
    torch.manual_seed(run.config.seed)
    model = training.build_model(clip, run, classnames)
    if style == "compiled":
        return PromptedClip(clip, model.learner, compile=True)
    return reference_of(model) if style == "reference" else model


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


def gradient_difference(models: dict, batches: dict, knobs, update, device) -> float:
    """max |g_ours - g_reference| / |g_reference| of one step, both from the same parameters."""
    with autocast(device):
        ours, reference = (update(models[s], batches[s], knobs).grad for s in ("ours", "reference"))
    return ((ours - reference).abs().max() / reference.norm()).item()


def max_learned_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest |difference| between two styles' learned parameters, over every learned tensor."""
    return max((a[name] - b[name]).abs().max().item() for name in b)


def unless_out_of_memory(function, *args):
    """function(*args), or None where the GPU runs out of memory."""
    try:
        return function(*args)
    except torch.cuda.OutOfMemoryError:
        pass
    torch.cuda.empty_cache()
    return None


def text_flops_per_step(clip, tokens: torch.Tensor, shared: int, passes: int, reference: bool = False,
                        groups: int = 1) -> float:
    """Matrix-multiply FLOPs of the text transformer for one step, over the rows each style
    actually encodes, `passes` times (2 for SAM-type steps), for `groups` prompt sets (CoCoOp:
    one per image). The weights are frozen, so the backward pass computes input gradients
    only: one more forward's worth, x2 in all."""
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
    return 2.0 * passes * groups * flops


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


def cell(value, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def ratio(a, b):
    return None if a is None or b is None else a / b


def synthetic_model(clip, method: methods.Method, names: list[str], args) -> PromptedClip:
    """Our model of a method for the synthetic classes (text chunk and compile: the shared prompts' model)."""
    torch.manual_seed(0)
    if method.build is prompts.prompted_clip:
        return PromptedClip(clip, PromptLearner(clip, names), text_chunk=args.text_chunk, compile=args.compile)
    return method.build(clip, training.TrainConfig(method=method.name, model=args.model), names)


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
        batches = {"ours": Batch(features, labels), "reference": ImageBatch(clip, images, labels)}
        for method in args.methods:
            entry = methods.get(method)
            knobs, update = entry.knobs(), entry.update
            models = {"ours": synthetic_model(clip, entry, names, args)}
            models["reference"] = reference_of(models["ours"])
            difference = unless_out_of_memory(gradient_difference, models, batches, knobs, update, device)
            passes = 2 if method in ("sam", "gcscoop") else 1
            groups = args.batch if isinstance(models["ours"], cocoop.CoCoOpModel) else 1
            cells = {}
            for style, model in models.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with autocast(device):
                    rate = unless_out_of_memory(steps_per_second, model, batches[style], knobs, update, args.steps,
                                                device)
                memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" and rate else None
                flops = text_flops_per_step(clip, model.learner.token_ids(), model.learner.shared, passes,
                                            style == "reference", groups)
                cells[style] = (rate, memory, None if rate is None else flops * rate / 1e12)
            rows.append({"classes": k, "method": method,
                         **{f"{s}_{m}": v for s, c in cells.items() for m, v in zip(("steps_per_s", "peak_gib", "text_tflops"), c)},
                         "speedup": ratio(cells["ours"][0], cells["reference"][0]), "gradient_difference": difference})
            r = rows[-1]
            print(f"{k:4d} classes {method:8s} ours {cell(r['ours_steps_per_s'], '7.2f')} steps/s "
                  f"({cell(r['ours_peak_gib'])} GiB, {cell(r['ours_text_tflops'], '.2f')} TFLOP/s)  reference "
                  f"{cell(r['reference_steps_per_s'], '7.2f')} steps/s ({cell(r['reference_peak_gib'])} GiB)  "
                  f"{cell(r['speedup'], '.1f', 'x')}  gradient difference {cell(difference, '.1e')}", flush=True)
    eager = " (CoCoOp eager)" if args.compile and "cocoop" in args.methods else ""
    precision = "bf16 autocast" if autocast_dtype(device) == torch.bfloat16 else "fp32"
    lines = [f"{args.model} (random weights), batch {args.batch}, {args.steps} timed steps, text chunk "
             f"{args.text_chunk or 'off'}, ours {'compiled' if args.compile else 'eager'}{eager}, {precision}, "
             f"{machine(device)}. Gradient difference: one step's gradient of ours against the reference's, "
             "from the same parameters, max |difference| / norm.", "",
             "| classes | method | ours (steps/s) | reference (steps/s) | speed-up | ours peak GiB | reference peak GiB "
             "| ours text TFLOP/s | gradient difference |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['classes']} | {methods.get(r['method']).label} | {cell(r['ours_steps_per_s'], '.2f')} | "
                     f"{cell(r['reference_steps_per_s'], '.2f')} | {cell(r['speedup'], '.1f', 'x')} | "
                     f"{cell(r['ours_peak_gib'])} | {cell(r['reference_peak_gib'])} | "
                     f"{cell(r['ours_text_tflops'], '.2f')} | {cell(r['gradient_difference'], '.1e')} |")
    write_report(lines, rows, args.out / f"speed_{args.model}_{device.type}{'_' + args.tag if args.tag else ''}", device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=datasets.dataset_names())
    parser.add_argument("--methods", nargs="+", default=METHODS, help="methods to time, in both modes")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method and style")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--model", default="tiny", help="tiny (embedded tasks) or an open_clip name (synthetic)")
    parser.add_argument("--classes", nargs="+", type=int, default=[50, 100, 500], help="with --model: class counts")
    parser.add_argument("--batch", type=int, default=32, help="with --model: images per step")
    parser.add_argument("--text-chunk", type=int, default=0, help="with --model: classes per text-encoder chunk")
    parser.add_argument("--compile", action="store_true", help="with --model: time our step under torch.compile")
    parser.add_argument("--tag", default="", help="added to the report's file name (speed_..._TAG.md), so a run "
                                                  "over other methods or sizes keeps its own report")
    args = parser.parse_args(argv)
    for method in args.methods:
        if not methods.get(method).trains:
            parser.error(f"{method} is not trained: nothing to time")
    if args.model != "tiny":
        synthetic(args)
        return

    clip = load_clip("tiny", device=args.device)
    device = clip.device
    tuned = tuning.load_tuning(args.out / "tuning.json")
    rows = []
    for dataset in args.datasets:
        for method in args.methods:
            run = training.TrainConfig(method=method, dataset=dataset, seed=args.seed,
                                       knobs=tuned["knobs"].get(method, {}), **tuned["recipe"]).resolve()
            config = run.config
            task = prepare_task(clip, dataset, config.shots, args.seed)
            pixels, labels = few_shot_pixels(clip, config)
            update, knobs = run.method.update, run.knobs
            n = min(config.batch_size, len(labels))
            styles = STYLES if run.method.build is prompts.prompted_clip else ("ours", "reference")
            row, learned = {"dataset": dataset, "method": method}, {}
            for style in styles:
                if style == "reference":
                    def batch_at(view, idx):
                        return ImageBatch(clip, pixels[idx], labels[idx])
                else:
                    def batch_at(view, idx):
                        return Batch(task.train_features[view, idx].to(device), labels[idx])
                first = batch_at(torch.zeros(n, dtype=torch.long), torch.arange(n))
                row[f"{style}_steps_per_s"] = steps_per_second(model_for(style, clip, run, task.base_names),
                                                              first, knobs, update, args.steps, device)
                # Same seed, full recipe, every style: the accuracy must not change. The learned
                # parameters are evaluated by one eager model, on the cached test features.
                model = model_for(style, clip, run, task.base_names)
                training.fit(model, run, 1, len(labels), batch_at)
                learned[style] = model.learned()
                evaluated = training.build_model(clip, run, task.base_names).load_learned(learned[style])
                row[f"{style}_H"] = evaluation.evaluate_prompt(evaluated, task)["H"]
            for style in ("ours", "compiled"):
                row.setdefault(f"{style}_steps_per_s", None)
                row.setdefault(f"{style}_H", None)
                row[f"{style}_speedup"] = ratio(row[f"{style}_steps_per_s"], row["reference_steps_per_s"])
                row[f"{style}_max_learned_difference"] = (max_learned_difference(learned[style], learned["reference"])
                                                          if style in learned else None)
            rows.append(row)
            print(f"{dataset:9s} {method:8s} ours {row['ours_steps_per_s']:6.1f} (compiled "
                  f"{cell(row['compiled_steps_per_s'], '6.1f')}) reference {row['reference_steps_per_s']:5.1f} steps/s  "
                  f"x{row['ours_speedup']:.1f} ({cell(row['compiled_speedup'], '.1f', 'x')})  H {row['ours_H']:.1f} / "
                  f"{cell(row['compiled_H'])} / {row['reference_H']:.1f}  max learned difference "
                  f"{row['ours_max_learned_difference']:.1g} / {cell(row['compiled_max_learned_difference'], '.1g')}",
                  flush=True)
    lines = [f"Tiny CLIP, {args.steps} timed steps per cell, batch {config.batch_size}, {machine(device)}. Max learned "
             "difference: the largest |difference| from the reference style's learned parameters, over every "
             "learned tensor (ours / compiled); CoCoOp has no compiled style.", "",
             "| task | method | ours (steps/s) | ours compiled (steps/s) | reference-style (steps/s) | speed-up | "
             "speed-up compiled | H ours | H compiled | H reference | max learned difference |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {methods.get(r['method']).label} | {r['ours_steps_per_s']:.0f} | "
                     f"{cell(r['compiled_steps_per_s'], '.0f')} | {r['reference_steps_per_s']:.0f} | "
                     f"{r['ours_speedup']:.1f}x | {cell(r['compiled_speedup'], '.1f', 'x')} | {r['ours_H']:.1f} | "
                     f"{cell(r['compiled_H'])} | {r['reference_H']:.1f} | "
                     f"{r['ours_max_learned_difference']:.1g} / {cell(r['compiled_max_learned_difference'], '.1g')} |")
    write_report(lines, rows, args.out / f"speed_{device.type}{'_' + args.tag if args.tag else ''}", device)


if __name__ == "__main__":
    main()
