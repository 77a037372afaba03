"""The field's other three protocols and a look at where a prompt makes CLIP look, on the
embedded world (06_protocols).

- few_shot: every class of a task, K = 1 ... 16 shots, test accuracy over all classes
  (CoOp's Figure 3), with a linear probe on the frozen image features beside the prompts;
- domains: a 16-shot solution evaluated on the same classes' test images in the world's
  other styles (ImageNet -> V2 / Sketch / A / R);
- transfer: a 16-shot solution of one task evaluated on every other task with its own class
  names (CoCoOp's cross-dataset table);
- saliency: the share of |d logit / d pixel| that falls inside the object's mask;
- stopping: base-to-new runs' accuracies epoch by epoch, recorded while they trained, to stop
  them by a validation rule (04_sam).

Each returns rows (one per method, task, seed and setting) that are stored in
results/protocols.json under a stamp of the protocol's version and of the runs it read
(gcscoop_lib.stamps), with the seconds it took; a stale or missing entry is computed again.
"""
from __future__ import annotations

import fcntl
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import datasets, methods, protocol, stamps, world
from .evaluation import accuracy, harmonic_mean
from .features import cached_features, normalise_images
from .imagesets import ImageSet, images_to_tensor
from .models import weights_fingerprint
from .prompts import zero_shot_weights
from .training import TrainConfig

FEW_SHOTS = (1, 2, 4, 8, 16)
# Entries of the protocols: the library's methods, CoOp with augmented views, and a linear probe
PROMPT_METHODS = ("coop", "coop_aug", "cocoop", "prograd", "kgcoop", "sam", "gcscoop")
AUGMENTED = {"coop_aug": "square", "coop_aug_papers": "papers"}   # CoOp entries with views: their crop
UNTRAINED = ("zeroshot", "linear_probe")   # entries that read no prompt run
FEW_SHOT_METHODS = UNTRAINED + PROMPT_METHODS + ("coop_aug_papers",)
AUGMENTED_VIEWS = 8            # CoOp + augmentation: crops and flips (features.CROPS), cached per image
PROBE_C = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)   # the linear probe's inverse L2 weights
TARGET_IMAGES_PER_CLASS = 50   # test images per class that the domain and transfer targets use
SALIENCY_METHODS = ("zeroshot", "coop", "prograd", "kgcoop", "sam", "gcscoop")
SALIENCY_IMAGES_PER_CLASS = 20
STOPPING_METHODS = ("coop", "kgcoop", "sam", "gcscoop")
STOPPING_SEEDS = tuple(range(1, 11))
STOPPING_RULES = ("last", "val_H", "val_base")
STORE = "protocols.json"


def label(entry: str) -> str:
    """A protocol entry's name in tables and figures."""
    return {"coop_aug": "CoOp + aug. 0.6-1", "coop_aug_papers": "CoOp + aug. 0.08-1",
            "linear_probe": "Linear probe"}.get(entry) or methods.get(entry).label


def colour(entry: str) -> str:
    return {"coop_aug": "#e377c2", "coop_aug_papers": "#bcbd22",
            "linear_probe": "#8c564b"}.get(entry) or methods.get(entry).colour


# ----------------------------------------------------------------------------- the runs
def epochs_for(shots: int, epochs: int) -> int:
    """CoOp's rule for fewer shots (200 epochs at 16 shots, 100 at 8
    and 4, 50 at 2 and 1), applied to a recipe's 16-shot epochs: all of
    them at 16 shots, half at 4 and 8, a quarter at 1 and 2 (never fewer
    than 2: epoch 0 is the warm-up)."""
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    return max(2, epochs // (1 if shots >= 16 else 2 if shots >= 4 else 4))


def all_class_config(entry: str, dataset: str, shots: int, seed: int, tuned: dict, model: str = "tiny",
                     pretrained: str | None = None) -> TrainConfig:
    """The run behind a prompt entry: every class of the task trained on with `shots` images
    each, the shared recipe (CoCoOp: its own, see 06_protocols) with CoOp's epoch rule, and
    the tuned knobs."""
    if entry not in PROMPT_METHODS + tuple(AUGMENTED):
        raise ValueError(f"{entry!r} is not a prompt entry of the protocols: choose one of "
                         f"{list(PROMPT_METHODS + tuple(AUGMENTED))}")
    method = "coop" if entry in AUGMENTED else entry
    recipe = dict(protocol.COCOOP_RECIPE if method == "cocoop" else tuned["recipe"])
    recipe["epochs"] = epochs_for(shots, recipe["epochs"])
    return TrainConfig(method=method, dataset=dataset, shots=shots, seed=seed, partition="all",
                       views=AUGMENTED_VIEWS if entry in AUGMENTED else 1, crop=AUGMENTED.get(entry, "square"),
                       model=model, pretrained=pretrained,
                       knobs=tuned["knobs"].get(method, {}), **recipe)


def zero_shot_config(dataset: str, model: str = "tiny", pretrained: str | None = None) -> TrainConfig:
    return TrainConfig(method="zeroshot", dataset=dataset, partition="all", model=model, pretrained=pretrained)


def protocol_configs(tuned: dict, datasets_=None, shots=FEW_SHOTS, seeds=protocol.SEEDS,
                     entries=None) -> list[TrainConfig]:
    """Every training run the protocols read (the 16-shot ones serve all three): by default those
    of every few-shot entry that trains."""
    entries = entries or [e for e in FEW_SHOT_METHODS if e not in UNTRAINED]
    return [all_class_config(e, d, k, s, tuned) for e in entries for d in datasets_ or datasets.dataset_names()
            for k in shots for s in seeds]


# ----------------------------------------------------------------------------- few-shot learning
def linear_probe(task) -> dict:
    """Logistic regression on the frozen image features (CLIP's and
    CoOp's linear probe), its L2 weight chosen on validation accuracy
    from PROBE_C (ties: the stronger weight). Returns test accuracy (%)
    and the chosen C."""
    from sklearn.linear_model import LogisticRegression

    x, y = (task.train_features[0].double().numpy(),
            task.train_labels.numpy())
    (xv, yv), (xt, yt) = task.val["base"], task.test["base"]

    def fit(c):
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)

    scores = {c: fit(c).score(xv.double().numpy(), yv.numpy())
              for c in PROBE_C}
    best = max(PROBE_C, key=lambda c: (round(scores[c], 6), -c))
    return {
        "acc": 100.0 * fit(best).score(xt.double().numpy(), yt.numpy()),
        "C": best,
    }


def few_shot(runner, tuned: dict, datasets_=None, shots=FEW_SHOTS, seeds=protocol.SEEDS,
             entries=FEW_SHOT_METHODS, model: str = "tiny", pretrained: str | None = None) -> list[dict]:
    """Test accuracy over all classes of each task, per entry, shots and seed (06_protocols);
    on the embedded tasks, or on the papers' datasets with another CLIP."""
    names = list(datasets_ or datasets.dataset_names())
    unknown = [n for n in names if n not in datasets.all_dataset_names()]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}: choose one of {datasets.all_dataset_names()}")
    for k in shots:
        epochs_for(k, 2)   # one clear error for a bad K before anything runs
    clip = dict(model=model, pretrained=pretrained)
    prompts = [e for e in entries if e not in UNTRAINED]
    runner.run_many([all_class_config(e, d, k, s, tuned, **clip) for e in prompts for d in names for k in shots
                     for s in seeds])
    rows = []
    for dataset in names:
        for k in shots:
            for seed in seeds:
                for entry in entries:
                    row = {"method": entry, "dataset": dataset, "shots": k, "seed": seed}
                    if entry == "zeroshot":
                        row["acc"] = runner.run(zero_shot_config(dataset, **clip))["base"]
                    elif entry == "linear_probe":
                        row.update(linear_probe(runner.task(all_class_config("coop", dataset, k, seed, tuned, **clip))))
                    else:
                        row["acc"] = runner.run(all_class_config(entry, dataset, k, seed, tuned, **clip))["base"]
                    rows.append(row)
    return rows


# ----------------------------------------------------------------------------- shifted and other tasks
def first_per_class(images: ImageSet, per_class: int) -> ImageSet:
    """The first `per_class` images of each class, in their order (a fixed subset)."""
    keep = np.concatenate([np.flatnonzero(images.labels == c)[:per_class] for c in np.unique(images.labels)])
    return images.subset(np.sort(keep))


def target_set(dataset: str, style: str | None = None, per_class: int = TARGET_IMAGES_PER_CLASS) -> ImageSet:
    """A task's fixed test subset, in its own style or in `style` (the same images, restyled)."""
    return first_per_class(datasets.load_dataset(dataset, style=style).test, per_class)


class Classifiers:
    """Each entry's classifier of a task's images, for any class names: zero-shot CLIP with
    the hand-written prompt, the linear probe (its own classes only) or a 16-shot solution."""

    def __init__(self, runner, tuned: dict, seed: int):
        self.runner, self.tuned, self.seed = runner, tuned, seed
        self.clip = runner.clip(zero_shot_config("fashion"))

    def accuracy(self, entry: str, source: str, images: ImageSet, classnames: list[str], template: str) -> float:
        features = cached_features(self.clip, images)
        labels = torch.from_numpy(images.labels)
        if entry == "zeroshot":
            weights = zero_shot_weights(self.clip, classnames, template)
            predictions = (features.to(self.clip.device) @ weights.T).argmax(-1).cpu()
            return 100.0 * (predictions == labels).float().mean().item()
        if entry == "linear_probe":
            raise ValueError("the linear probe classifies its own classes only: it has no cross-task transfer")
        solution = self.runner.solution(all_class_config(entry, source, 16, self.seed, self.tuned))
        model = solution.model if classnames == list(solution.model.learner.classnames) \
            else solution.model.for_classes(classnames)
        return accuracy(model, features, labels)

    def probe_accuracy(self, source: str, images: ImageSet) -> float:
        from sklearn.linear_model import LogisticRegression

        task = self.runner.task(all_class_config("coop", source, 16, self.seed, self.tuned))
        c = linear_probe(task)["C"]
        probe = LogisticRegression(C=c, max_iter=2000).fit(task.train_features[0].double().numpy(),
                                                           task.train_labels.numpy())
        return 100.0 * probe.score(cached_features(self.clip, images).double().numpy(), images.labels)


def sixteen_shot_configs(tuned: dict, names: list[str], seeds, entries) -> list[TrainConfig]:
    """The 16-shot all-class runs behind the prompt entries: trained together before a protocol reads them."""
    return [all_class_config(e, d, 16, s, tuned) for e in entries if e in PROMPT_METHODS for d in names for s in seeds]


DOMAIN_METHODS = UNTRAINED + PROMPT_METHODS
TRANSFER_METHODS = ("zeroshot",) + PROMPT_METHODS


def check_tasks(names) -> list[str]:
    """The embedded tasks named (all of them for None), or one clear error."""
    names = list(names or datasets.dataset_names())
    for name in names:
        if name not in world.EMBEDDED:
            raise ValueError(f"unknown task {name!r}: the protocols run on the embedded tasks, "
                             f"{sorted(world.EMBEDDED)}")
    return names


def check_styles(styles) -> list[str]:
    styles = list(styles or world.STYLES)
    for style in styles:
        if style not in world.STYLES:
            raise ValueError(f"unknown style {style!r}: choose one of {list(world.STYLES)}")
    return styles


def domains(runner, tuned: dict, datasets_=None, seeds=protocol.SEEDS, entries=DOMAIN_METHODS,
            styles=None) -> list[dict]:
    """Each 16-shot solution on its task's fixed test subset in the world's styles: the task's
    own (the source) and the others (the targets)."""
    names, styles = check_tasks(datasets_), check_styles(styles)
    runner.run_many(sixteen_shot_configs(tuned, names, seeds, entries))
    rows = []
    for seed in seeds:
        classify = Classifiers(runner, tuned, seed)
        for dataset in names:
            own = world.EMBEDDED[dataset]["style"]
            spec = datasets.load_dataset(dataset)
            for style in styles:
                images = target_set(dataset, style)
                for entry in entries:
                    acc = classify.probe_accuracy(dataset, images) if entry == "linear_probe" else \
                        classify.accuracy(entry, dataset, images, spec.classnames, spec.template)
                    rows.append({"method": entry, "dataset": dataset, "seed": seed, "style": style,
                                 "source": style == own, "acc": acc})
    return rows


def transfer(runner, tuned: dict, sources=None, targets=None, seeds=protocol.SEEDS,
             entries=TRANSFER_METHODS) -> list[dict]:
    """Each source task's 16-shot solution on each other target task's fixed test subset, with
    the target's class names, and on its own test subset (target == source: the diagonal).
    Zero-shot CLIP learns nothing from a source: it has one row per target."""
    sources, targets = check_tasks(sources), check_tasks(targets)
    if not any(s != t for s in sources for t in targets):
        raise ValueError(f"source and target are both {sources[0]}: a transfer needs another task as its target")
    runner.run_many(sixteen_shot_configs(tuned, sources, seeds, entries))
    rows = []
    for seed in seeds:
        classify = Classifiers(runner, tuned, seed)
        for target in dict.fromkeys(sources + targets):
            spec, images = datasets.load_dataset(target), target_set(target)

            def row(entry, source):
                return {"method": entry, "source": source, "target": target, "seed": seed,
                        "acc": classify.accuracy(entry, source, images, spec.classnames, spec.template)}

            rows += [row("zeroshot", "none")] if "zeroshot" in entries else []
            rows += [row(entry, source) for source in sources if source == target or target in targets
                     for entry in entries if entry != "zeroshot"]
    return rows


# ----------------------------------------------------------------------------- saliency
def saliency(clip, text_feature: torch.Tensor,
             images: np.ndarray) -> torch.Tensor:
    """|d logit / d pixel| summed over colour channels, N x H x W: how
    much each pixel moves the logit of the class whose text feature is
    given (one per image, N x E)."""
    x = images_to_tensor(images).to(clip.device).requires_grad_(True)
    features = F.normalize(
        clip.model.encode_image(normalise_images(clip, x)).float(), dim=-1
    )
    logits = clip.logit_scale * (
        features * text_feature.to(clip.device)
    ).sum(-1)
    (grad,) = torch.autograd.grad(logits.sum(), x)
    return grad.abs().sum(1).cpu()


def share_inside(maps: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
    """Per image: the fraction of a saliency map's mass inside the
    foreground mask."""
    inside = (
        maps * torch.as_tensor(masks, dtype=maps.dtype)
    ).flatten(1).sum(1)
    return inside / maps.flatten(1).sum(1).clamp_min(1e-12)


def saliency_images(task_name: str, classes: list[str], per_class: int = SALIENCY_IMAGES_PER_CLASS) -> ImageSet:
    """A task's first test images of `classes` (relabelled in that order), with their masks."""
    data = datasets.load_dataset(task_name)
    if data.test.masks is None:
        raise ValueError(f"{task_name} has no foreground masks (its images have no object): choose one of "
                         f"{mask_tasks()}")
    index = [data.classnames.index(c) for c in classes]
    keep = np.flatnonzero(np.isin(data.test.labels, index))
    subset = first_per_class(data.test.subset(keep), per_class)
    relabel = np.array([index.index(int(c)) for c in subset.labels])
    return ImageSet(subset.images, relabel, list(classes), subset.masks)


def mask_tasks() -> list[str]:
    return [name for name in datasets.dataset_names() if name != "textures"]


def base_to_new_config(method: str, dataset: str, seed: int, tuned: dict) -> TrainConfig:
    """A base-to-new run on CoOp's partition with the tuned recipe and knobs (02_coop to 05_gcscoop)."""
    return TrainConfig(method=method, dataset=dataset, seed=seed, knobs=tuned["knobs"].get(method, {}),
                       **tuned["recipe"])


def saliency_shares(runner, tuned: dict, datasets_=None, seeds=protocol.SEEDS,
                    entries=SALIENCY_METHODS) -> list[dict]:
    """The share of each entry's saliency inside the object over the base classes' first test
    images (base-to-new solutions on CoOp's partition), per task and seed, with the mask's own
    share of the image: what a saliency spread evenly would score."""
    rows = []
    runner.run_many([base_to_new_config(e, d, s, tuned) for e in entries if e != "zeroshot"
                     for d in datasets_ or mask_tasks() for s in seeds])
    for dataset in datasets_ or mask_tasks():
        for seed in seeds:
            config = base_to_new_config("zeroshot", dataset, seed, tuned)
            clip, task = runner.clip(config), runner.task(config)
            images = saliency_images(dataset, task.base_names)
            area = torch.as_tensor(images.masks, dtype=torch.float32).flatten(1).mean(1)
            for entry in entries:
                text = prompt_text_features(runner, tuned, entry, dataset, seed)
                maps = saliency(clip, text[torch.from_numpy(images.labels)], images.images)
                rows.append({"method": entry, "dataset": dataset, "seed": seed,
                             "share": 100.0 * share_inside(maps, images.masks).mean().item(),
                             "area": 100.0 * area.mean().item()})
    return rows


def saliency_examples(runner, tuned: dict, dataset: str, seed: int = 1, classes: int = 3,
                      entries=SALIENCY_METHODS) -> tuple[ImageSet, dict]:
    """The first test image of each of the first base classes, and each entry's saliency maps
    of them (06_protocols' figure)."""
    config = base_to_new_config("zeroshot", dataset, seed, tuned)
    clip, task = runner.clip(config), runner.task(config)
    images = saliency_images(dataset, task.base_names[:classes], per_class=1)
    labels = torch.from_numpy(images.labels)
    return images, {label(e): saliency(clip, prompt_text_features(runner, tuned, e, dataset, seed)[labels],
                                       images.images) for e in entries}


def prompt_text_features(runner, tuned: dict, entry: str, dataset: str, seed: int) -> torch.Tensor:
    """The base classes' text features under an entry's base-to-new prompt (zero-shot: the
    hand-written one), trained first if the run is not stored."""
    config = base_to_new_config(entry, dataset, seed, tuned)
    task = runner.task(config)
    model = None if entry == "zeroshot" else runner.solution(config).model
    with torch.no_grad():
        if model is None:
            return zero_shot_weights(runner.clip(config), task.base_names, task.template)
        return model.text_features()


# ----------------------------------------------------------------------------- stopping
def epoch_curve(runner, tuned: dict, method: str, dataset: str, seed: int) -> dict:
    """A base-to-new run's validation and test accuracy of both halves after every epoch
    (04_sam), as its tracked solution recorded them while it trained."""
    history = runner.solution(base_to_new_config(method, dataset, seed, tuned), track=True).history
    curve = {f"{split}_{half}": [round(row[key], 4) for row in history]
             for split, prefix in (("val", "val_"), ("test", "")) for half in ("base", "new")
             for key in [prefix + half]}
    return {"method": method, "dataset": dataset, "seed": seed, **curve}


def stopping(runner, tuned: dict, datasets_=None, seeds=STOPPING_SEEDS, entries=STOPPING_METHODS) -> list[dict]:
    """Every entry's base-to-new runs on CoOp's partition, epoch by epoch (04_sam)."""
    runner.run_many(stopping_configs(tuned, datasets_, seeds, entries), track=True)
    return [epoch_curve(runner, tuned, e, d, s) for e in entries for d in check_tasks(datasets_) for s in seeds]


def stopping_configs(tuned: dict, datasets_=None, seeds=STOPPING_SEEDS, entries=STOPPING_METHODS) -> list[TrainConfig]:
    """The base-to-new runs the stopping protocol reads (trained tracked)."""
    return [base_to_new_config(e, d, s, tuned) for e in entries for d in check_tasks(datasets_) for s in seeds]


def stopped_at(curve: dict, rule: str) -> int:
    """The epoch (from 0) a stopping rule picks (04_sam): the last one, or
    the first with the best validation H of both halves ("val_H") or of
    the base classes alone ("val_base"). The first, because a checkpoint
    is kept only when validation strictly improves."""
    if rule not in STOPPING_RULES:
        raise ValueError(f"unknown stopping rule {rule!r}: "
                         f"choose one of {list(STOPPING_RULES)}")
    if rule == "last":
        return len(curve["test_base"]) - 1
    if rule == "val_base":
        return int(np.argmax(curve["val_base"]))
    return int(np.argmax([harmonic_mean(b, n) for b, n
                          in zip(curve["val_base"], curve["val_new"])]))


def stopped(rows: list[dict], rule: str) -> list[dict]:
    """Each traced run's test scores at the epoch a rule picks, as records (04_sam)."""
    out = []
    for r in rows:
        e = stopped_at(r, rule)
        base, new = r["test_base"][e], r["test_new"][e]
        out.append({"method": r["method"], "dataset": r["dataset"], "seed": r["seed"], "epoch": e + 1,
                    "base": base, "new": new, "H": harmonic_mean(base, new)})
    return out


def stopping_difference(rows: list[dict], a: tuple[str, str], b: tuple[str, str], dataset: str | None = None,
                        metric: str = "H") -> dict:
    """(method, rule) a minus (method, rule) b, paired by seed over the tasks (or on one
    `dataset`): reports.paired_interval of the test scores each rule picks (04_sam)."""
    from . import reports

    def runs(method, rule):
        kept = [r for r in rows if r["method"] == method and dataset in (None, r["dataset"])]
        return [dict(r, method=(method, rule)) for r in stopped(kept, rule)]

    return reports.paired_interval(runs(*a) + runs(*b), a, b, metric)


# ----------------------------------------------------------------------------- stored results
PROTOCOLS = {"fewshot": few_shot, "domains": domains, "transfer": transfer, "saliency": saliency_shares,
             "stopping": stopping}


# Bump a protocol's version when the rows it computes from the same runs change (gcscoop_lib.stamps).
VERSIONS = {"fewshot": 1, "domains": 1, "transfer": 1, "saliency": 1, "stopping": 1}


def entry_method(entry: str) -> str | None:
    """The library method whose runs a protocol entry reads (None: the linear probe, which trains none)."""
    return "coop" if entry in AUGMENTED else {"linear_probe": None}.get(entry, entry)


def protocol_stamp(name: str, tuned: dict, arguments: dict) -> dict:
    """What a protocol's stored rows must carry to be reused: its version, the units of the
    runs its entries read, the tuned recipe and those methods' knobs, the arguments and the
    weights. A method it does not read stales nothing here."""
    read = sorted({entry_method(e) for e in arguments.get("entries", methods.METHODS)} - {None})
    units = {f"protocol.{name}": VERSIONS[name], **stamps.data_units()}
    for method in read:
        units.update(stamps.method_units(method))
    trains = any(methods.get(m).trains for m in read)
    return {"units": dict(sorted(units.items())), "arguments": arguments,
            "tuned": {"recipe": tuned["recipe"] if trains else None,
                      "knobs": {m: tuned["knobs"][m] for m in read if m in tuned["knobs"]}},
            "weights": weights_fingerprint(arguments.get("model", "tiny"), arguments.get("pretrained"))}


def results(name: str, runner, tuned: dict, **arguments) -> list[dict]:
    """A protocol's rows (06_protocols): stored ones when current (the reader's folder first,
    then the book's), else computed now and stored in the reader's folder."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}: choose one of {list(PROTOCOLS)}")
    arguments = normalised(name, arguments)
    stamp = protocol_stamp(name, tuned, arguments)
    for folder in dict.fromkeys((runner.dir, runner.book)):
        entry = read_store(Path(folder) / STORE).get(name)
        if entry is not None and entry.get("stamp") == stamp:
            return entry["rows"]
    start = time.time()
    rows = PROTOCOLS[name](runner, tuned, **arguments)
    store_entry(runner.dir / STORE, name,
                {"stamp": stamp, "arguments": arguments, "rows": rows, "seconds": time.time() - start})
    return rows


def normalised(name: str, arguments: dict) -> dict:
    """A protocol's arguments with its defaults filled in, as JSON has them (a default given
    explicitly is the same computation as the default left out)."""
    bound = inspect.signature(PROTOCOLS[name]).bind_partial(**arguments)
    bound.apply_defaults()
    given = {k: v for k, v in bound.arguments.items() if k not in ("runner", "tuned")}
    return json.loads(json.dumps(given, default=list))


def read_store(path: Path) -> dict:
    """The stored protocols' rows of a results folder (none if the file is missing)."""
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}, is not valid JSON ({error.msg}): delete it to compute "
                         "the protocols again") from None


def write_store(path: Path, content: dict) -> None:
    """Store the protocols' rows in one rename (never half-written), one protocol a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{json.dumps(name)}: {json.dumps(content[name], sort_keys=True, default=list)}"
             for name in sorted(content)]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    tmp.replace(path)


def store_entry(path: Path, name: str, entry: dict) -> None:
    """Add or replace one entry of a store, holding its folder's lock meanwhile, so that
    processes storing at once (chapters executed side by side) lose nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        content = read_store(path)
        content[name] = entry
        write_store(path, content)
    finally:
        os.close(folder)   # and with it the lock


def prune(folder, tuned: dict) -> list[str]:
    """Drop the protocols stored in a results folder whose stamp is no longer current; returns
    their names."""
    path = Path(folder) / STORE
    content = read_store(path)
    dropped = sorted(name for name, entry in content.items()
                     if name not in PROTOCOLS or entry.get("stamp") != protocol_stamp(name, tuned, entry["arguments"]))
    if dropped:
        write_store(path, {name: entry for name, entry in content.items() if name not in dropped})
    return dropped


def arguments(name: str, datasets_=None, seeds=None, shots=None, styles=None) -> dict:
    """A protocol's arguments from the command line's options (None: the protocol's default)."""
    given = {"fewshot": {"datasets_": datasets_, "seeds": seeds, "shots": shots},
             "domains": {"datasets_": datasets_, "seeds": seeds, "styles": styles},
             "transfer": {"sources": datasets_, "targets": datasets_, "seeds": seeds},
             "saliency": {"datasets_": datasets_, "seeds": seeds},
             "stopping": {"datasets_": datasets_, "seeds": seeds}}[name]
    return {k: list(v) for k, v in given.items() if v is not None}


TITLES = {"fewshot": "Few-shot learning: accuracy over all classes",
          "domains": "Domain generalisation: 16 shots in the task's own style, tested in the others",
          "transfer": "Cross-task transfer: 16 shots on one task, tested on the others",
          "saliency": "Where the prompt makes CLIP look: share of saliency inside the object (%)",
          "stopping": "Base-to-new, stopped by a validation rule: H at the epoch each rule picks"}


def table(name: str, rows: list[dict]) -> str:
    """A protocol's rows as its Markdown table (06_protocols, 07_benchmark, the command line)."""
    from . import reports

    present = list(dict.fromkeys(r["method"] for r in rows))
    if name == "stopping":
        return reports.stopping_table({rule: stopped(rows, rule) for rule in STOPPING_RULES}, present, label)
    return {"fewshot": reports.few_shot_table, "domains": reports.domains_table,
            "transfer": reports.transfer_table, "saliency": reports.saliency_table}[name](rows, present, label)


def report(runner, tuned: dict) -> str:
    """Every protocol stored in the runner's folder (or the book's), as one Markdown report."""
    blocks = []
    for name in PROTOCOLS:
        entry = read_store(runner.dir / STORE).get(name) or read_store(runner.book / STORE).get(name)
        if entry is not None and entry.get("stamp") == protocol_stamp(name, tuned, entry["arguments"]):
            blocks.append(f"## {TITLES[name]}\n\n{table(name, entry['rows'])}\n")
    return "\n".join(blocks)
