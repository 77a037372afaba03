"""Behaviour is pinned by versions: every probe of tests/golden.py computes what the golden
file says, for the unit versions it was written with. A change of behaviour that did not bump
its unit's version fails here, naming the version; planted changes show that it does."""
import json

import pytest
import torch

import golden
from gcscoop_lib import methods, splits, stamps, training

STORED = json.loads(golden.GOLDEN.read_text())
NAMES = [*golden.PROBES, *golden.TRAJECTORIES]


@pytest.fixture(scope="module")
def probes(clip):
    return golden.compute(clip)


def failures(name: str, got: dict) -> list[str]:
    """One line per difference from the golden file, naming the version to bump."""
    out = []
    found = golden.differences(STORED["probes"][name], got, relative=golden.RELATIVE.get(name, 1e-4))
    for path, want, value in found[:3]:
        unit = golden.unit_of(name, path)
        out.append(f"probe {name} at {'/'.join(map(str, path))}: golden {want!r}, now {value!r}: what '{unit}' "
                   f"computes changed while its version did not: bump it ({stamps.where(unit)}) and rewrite the golden file "
                   "(`python tests/golden.py`), or undo the change")
    return out


def test_the_golden_file_was_written_with_the_versions_in_force():
    now, then = stamps.all_units(), STORED["units"]
    bumped = [f"{u} {then.get(u, '-')} -> {now.get(u, '-')}" for u in sorted(set(now) | set(then))
              if now.get(u) != then.get(u)]
    assert not bumped, f"versions changed since the golden file was written ({', '.join(bumped)}): " \
                       "rewrite it with `python tests/golden.py`"


@pytest.mark.parametrize("name", NAMES)
def test_each_unit_computes_what_its_version_says(probes, name):
    if stamps.all_units() != STORED["units"]:
        pytest.skip("versions were bumped: the golden file is rewritten first")
    assert not failures(name, probes[name]), "\n".join(failures(name, probes[name]))


def test_the_probes_make_every_rule_act():
    """The trajectories are only a check if the rules' branches happen in them."""
    steps = STORED["probes"]
    assert {s["regime"] for s in steps["gcscoop"]["steps"]} == set(methods.REGIMES)
    assert {s["conflict"] for s in steps["prograd"]["steps"]} == {True, False}
    # every decision stays far from its boundary, so another processor's rounding cannot flip it
    assert min(min(abs(s["cos"] - 0.4), abs(s["cos"] - 0.6)) for s in steps["gcscoop"]["steps"]) > 1e-3
    assert min(abs(s["cos"]) for s in steps["prograd"]["steps"][1:]) > 10 * golden.COSINE_TOLERANCE


def flipped_epsilon(grad, rho):
    return -rho * grad / (grad.norm() + 1e-12)


def no_warmup(epoch, epochs, base_lr, warmup_lr=1e-5):
    return 0.5 * base_lr * (1 + torch.cos(torch.tensor(torch.pi * epoch / epochs)).item())


def kgcoop_away(model, batch, knobs):
    text = model.text_features()
    ce = methods.cross_entropy(model.logits(batch.features, text), batch.labels)
    knowledge = 1 - torch.nn.functional.cosine_similarity(text, model.zs_text, dim=-1).mean(-1)
    return methods.Step(ce, methods.flat_grad(ce - knobs.lam * knowledge, model.params), {"knowledge": knowledge})


def shifted_draw(labels, shots, seed):
    return original_draw(labels, shots, seed + 1)


original_draw = splits.few_shot_indices


@pytest.mark.parametrize("target,attribute,replacement,probe,unit", [
    (methods, "sam_epsilon", flipped_epsilon, "sam", "method.sam"),
    (training, "lr_at", no_warmup, "coop", "loop"),
    (methods.METHODS["kgcoop"], "update", kgcoop_away, "kgcoop", "method.kgcoop"),
    (splits, "few_shot_indices", shifted_draw, "data", "data"),
])
def test_a_planted_change_of_behaviour_fails_naming_its_version(clip, monkeypatch, target, attribute,
                                                                 replacement, probe, unit):
    if isinstance(target, methods.Method):   # a frozen registry entry: swap the entry itself
        monkeypatch.setitem(methods.METHODS, target.name,
                            methods.Method(**{**vars(target), attribute: replacement}))
    else:
        monkeypatch.setattr(target, attribute, replacement)
    found = failures(probe, golden.compute(clip, [probe])[probe])
    assert found and f"what '{unit}' computes changed" in found[0]
