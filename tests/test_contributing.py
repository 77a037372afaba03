"""What CONTRIBUTING.md promises a contributor: a new method is an update function and a
registry entry, a SAM variant of a method is a few lines, and registering one stales nothing
stored; only its own runs are new."""
from dataclasses import dataclass
from pathlib import Path

import pytest

from gcscoop_lib import methods, staleness, stamps, tuning
from gcscoop_lib.runs import Runner
from gcscoop_lib.training import TrainConfig

BOOK = Path(__file__).resolve().parent.parent / "results"


@dataclass(frozen=True)
class KgSamKnobs:
    lam: float = 8.0    # KgCoOp's weight
    rho: float = 0.05   # SAM's radius


def kgsam_update(model, batch, knobs: KgSamKnobs) -> methods.Step:
    """SAM on KgCoOp's loss."""
    def kgcoop_loss(m, b):
        step = methods.kgcoop_update(m, b, knobs)
        return step.loss, step.grad
    loss, _, g_sam = methods.sam_gradient(model, batch, knobs.rho, kgcoop_loss)
    return methods.Step(loss, g_sam)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "kgsam", methods.Method("kgsam", "KgCoOp + SAM", "#bcbd22", kgsam_update,
                                                                 KgSamKnobs, {"rho": (0.02, 0.05)}))


def test_a_new_method_stales_nothing_stored(registered):
    stale = staleness.stale_results(BOOK, tuning.load_tuning(BOOK / "tuning.json"))
    assert staleness.summary(stale) == "0 records, 0 solutions, 0 protocols, 0 tuning choices stale (0 CPU-seconds)"


def test_a_new_method_trains_under_a_stamp_of_its_own(registered, tmp_path):
    config = TrainConfig(method="kgsam", dataset="shapes", shots=2, epochs=2, batch_size=4, lr=0.005,
                         knobs={"rho": 0.02})
    record = Runner(tmp_path, device="cpu").run(config)
    assert record["stamp"]["units"]["method.kgsam"] == 1 and record["stamp"] == stamps.run_stamp(config)
    assert record["config"]["knobs"] == {"lam": 8.0, "rho": 0.02} and 0 <= record["H"] <= 100


def test_sam_on_a_loss_with_no_radius_is_that_loss(clip, task):
    model = methods.get("kgcoop").build(clip, TrainConfig(method="kgcoop"), task.base_names)
    batch = methods.Batch(task.train_features[0][:8], task.train_labels[:8])
    plain = methods.kgcoop_update(model, batch, KgSamKnobs())
    assert (kgsam_update(model, batch, KgSamKnobs(rho=0.0)).grad == plain.grad).all()
    assert not (kgsam_update(model, batch, KgSamKnobs(rho=0.5)).grad == plain.grad).all()
