"""Golden trajectories: what each unit of the library computes on a small fixed task, stored
in tests/golden/trajectories.json with the unit versions in force when it was written
(tests/test_golden.py compares them).

A run's record is stamped with the versions of the units it uses (gcscoop_lib.stamps), not
with the text of their code, so a refactor stales nothing. The price is that a change of
behaviour must bump a version: these probes catch one that did not, and name the version.

    python tests/golden.py      # rewrite the file after bumping a version (and only then)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from gcscoop_lib import datasets, evaluation, methods, splits, stamps
from gcscoop_lib.features import cached_features
from gcscoop_lib.models import load_clip
from gcscoop_lib.prompts import zero_shot_weights
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.training import TrainConfig, build_model, train

GOLDEN = Path(__file__).parent / "golden" / "trajectories.json"
DATASET, SHOTS, SEED = "shapes", 4, 1
# A few epochs of small batches: enough steps that the schedule, momentum, ProGrad's
# conflicts and GCSCoOp's regimes all act, few enough that rounding stays far below the tolerance.
RECIPE = dict(epochs=4, batch_size=4, lr=0.01)

# probe -> (the config's changes from the default run, the unit whose version pins it)
TRAJECTORIES = {
    "coop": ({}, "loop"),
    "coop_reversed": ({"partition": "reversed"}, "data"),
    "coop_all": ({"partition": "all"}, "data"),
    "coop_views": ({"views": 8}, "features"),
    "coop_class_specific": ({"class_specific": True, "partition": "all"}, "text"),
    "coop_random_init": ({"ctx_init": None, "n_ctx": 4}, "text"),
    "coop_tracked": ({"track": True}, "tracking"),
    # ProGrad's general gradient is a difference of two nearly equal softmaxes, so its rounding
    # grows fastest: two epochs of it, compared to 1e-2 (its decisions and rules exactly)
    "prograd": ({"method": "prograd", "epochs": 2}, "method.prograd"),
    "kgcoop": ({"method": "kgcoop"}, "method.kgcoop"),
    "sam": ({"method": "sam"}, "method.sam"),
    "gcscoop": ({"method": "gcscoop", "knobs": {"rho": 0.2, "beta_low": 0.4, "beta_up": 0.6}},
                "method.gcscoop"),
    "cocoop": ({"method": "cocoop", "epochs": 2, "batch_size": 1}, "cocoop"),
}


def _floats(tensor: torch.Tensor, count: int = 24) -> list[float]:
    flat = tensor.detach().double().reshape(-1).cpu()
    return [float(flat.norm()), float(flat.sum())] + flat[:count].tolist()


def world_probe(clip) -> dict:
    """Each embedded task's labels and a few of its pixels (unit: world)."""
    out = {}
    for name in datasets.dataset_names():
        data = datasets.load_dataset(name)
        out[name] = [int(data.train.labels.sum()), int(data.test.labels[:50].sum()),
                     int(data.train.images[:20].astype("int64").sum())]
    return out


def data_probe(clip) -> dict:
    """The few-shot draws of every partition and the halves of a task (unit: data)."""
    out = {f"{name}_{partition}": splits.few_shot_split(datasets.load_dataset(name), SHOTS, SEED, None, partition)
           for name in datasets.dataset_names() for partition in splits.PARTITIONS}
    task = prepare_task(clip, DATASET, SHOTS, SEED)
    out["halves"] = [task.base_names, task.new_names, [int(task.val[h][1].sum()) for h in ("base", "new")]]
    return out


def features_probe(clip) -> dict:
    """A task's image features and its augmented views (unit: features)."""
    task = prepare_task(clip, DATASET, SHOTS, SEED)
    views = cached_features(clip, splits.few_shot_images(datasets.load_dataset(DATASET), SHOTS, SEED), 8, SEED)
    return {"train": _floats(task.train_features), "test": _floats(task.test["new"][0]), "views": _floats(views)}


def text_probe(clip) -> dict:
    """Class features of the hand-written and the learnable prompt (unit: text)."""
    task = prepare_task(clip, DATASET, SHOTS, SEED)
    out = {"zero_shot": _floats(zero_shot_weights(clip, task.base_names, task.template))}
    for position in ("end", "middle", "front"):
        model = build_model(clip, TrainConfig(dataset=DATASET, position=position), task.base_names, task.template)
        with torch.no_grad():
            out[position] = _floats(model.text_features())
    return out


def evaluation_probe(clip) -> dict:
    """Zero-shot CLIP and the initial prompt scored on both halves (unit: evaluation)."""
    task = prepare_task(clip, DATASET, SHOTS, SEED)
    model = build_model(clip, TrainConfig(dataset=DATASET), task.base_names, task.template)
    return {split: {"zero_shot": _scores(evaluation.evaluate_zero_shot(clip, task, split=split)),
                    "prompt": _scores(evaluation.evaluate_prompt(model, task, split))}
            for split in ("val", "test")}


def _scores(scores: dict) -> dict:
    return {k: scores[k] for k in ("base", "new", "H")}


def rules_probe() -> dict:
    """The update rules' decisions at their boundaries, on vectors made for them (units: the methods)."""
    g = torch.tensor([1.0, 0.0, 0.0])
    at = torch.tensor([0.6, 0.8, 0.0])
    cos = float(methods.constrain_sam_gradient(g, at, -1.0, 2.0)[2])
    regimes = [methods.constrain_sam_gradient(g, at, low, up)[1]
               for low, up in ((0.0, cos), (cos, 1.0), (0.0, 1.0), (cos - 1e-3, cos + 1e-3))]
    projected = methods.constrain_sam_gradient(g, at, 0.0, 1.0)[0]
    conflicting = methods.prograd_direction(torch.tensor([1.0, -1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), 0.5)
    agreeing = methods.prograd_direction(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), 0.5)
    return {"method.gcscoop": {"regimes": regimes, "projected": projected.tolist()},
            "method.prograd": {"conflicting": [conflicting[0].tolist(), bool(conflicting[1])],
                               "agreeing": [agreeing[0].tolist(), bool(agreeing[1])]},
            "method.sam": {"epsilon": methods.sam_epsilon(torch.tensor([3.0, -4.0]), 0.5).tolist()}}


def trajectory(clip, changes: dict) -> dict:
    """A few epochs of one run: every step's loss and info, each epoch's row, the learned
    parameters and the scores they give."""
    changes = dict(changes)
    track = changes.pop("track", False)
    config = TrainConfig(dataset=DATASET, shots=SHOTS, seed=SEED, **{**RECIPE, **changes})
    task = prepare_task(clip, DATASET, SHOTS, SEED, config.views, None, config.partition)
    result = train(config, clip, task, track=track)
    return {"steps": result.steps, "history": result.history,
            "params": _floats(torch.cat([p.detach().reshape(-1) for p in result.model.params])),
            "test": _scores(evaluation.evaluate_prompt(result.model, task, "test"))}


PROBES = {"world": world_probe, "data": data_probe, "features": features_probe, "text": text_probe,
          "evaluation": evaluation_probe, "rules": lambda clip: rules_probe()}


def unit_of(probe: str, path: tuple = ()) -> str:
    """The unit whose version pins a probe (the rules probe: the method its first key names)."""
    if probe == "rules":
        return path[0] if path else "method.*"
    return TRAJECTORIES[probe][1] if probe in TRAJECTORIES else probe


def compute(clip, names=None) -> dict:
    """The probes named (all of them for None), by name."""
    out = {}
    for name in names or [*PROBES, *TRAJECTORIES]:
        out[name] = PROBES[name](clip) if name in PROBES else trajectory(clip, TRAJECTORIES[name][0])
    return out


# Accuracies may move by one test image where another processor rounds a near tie the other way;
# a cosine between two gradients carries the rounding of both (its decisions are compared exactly).
ACCURACY_KEYS = {"base", "new", "H", "val_base", "val_new"}
COSINE_TOLERANCE = 2e-3


RELATIVE = {"prograd": 1e-2}   # a probe's relative tolerance, where it is not 1e-4


def differences(want, got, path: tuple = (), relative: float = 1e-4) -> list[tuple]:
    """Where `got` differs from the golden `want`: paths into the probe, with both values.
    Floats agree to `relative` (and 1e-5 absolute), accuracies to 0.15 points, cosines to 2e-3,
    the rest exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [(path, sorted(want), sorted(got))]
        return [d for k in want for d in differences(want[k], got[k], path + (k,), relative)]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [(path, f"{len(want)} items", f"{len(got)} items")]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in differences(w, g, path + (i,), relative)]
    if isinstance(want, float) or isinstance(got, float):
        if isinstance(want, bool) or isinstance(got, bool) or not isinstance(got, (int, float)):
            return [(path, want, got)]
        key = path[-1] if path else None
        tolerance = 0.15 if key in ACCURACY_KEYS else COSINE_TOLERANCE if key == "cos" else 1e-5 + relative * abs(want)
        return [] if abs(want - got) <= tolerance else [(path, want, got)]
    return [] if want == got else [(path, want, got)]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    torch.set_num_threads(1)
    probes = compute(load_clip("tiny", device="cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"units": stamps.all_units(), "probes": probes}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")
