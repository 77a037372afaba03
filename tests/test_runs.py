"""Runs done once: a Runner trains a config unless a current record of it is stored, keeps the
record and the solution beside it, reads the book's records without ever writing them, and
hands either back."""
import dataclasses
import json
import shutil

import pytest
import torch

from gcscoop_lib import methods, records, settings, stamps
from gcscoop_lib.records import StoredSolution, save_solution, solution_path
from gcscoop_lib.runs import Runner, prune_solutions
from gcscoop_lib.training import TrainConfig
from test_methods import SHIFTED, ShiftedClip

SMALL = dict(dataset="shapes", shots=2, epochs=2, batch_size=4)


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_runs_are_recorded_once_and_reloaded(tmp_path):
    runner = Runner(tmp_path, device="cpu")
    config = TrainConfig(method="coop", **SMALL)
    first = runner.run(config)
    again = Runner(tmp_path, device="cpu")
    assert again.run(config) == first and again.trained == []
    forced = runner.run(config, force=True)
    assert len(lines(tmp_path / "runs.jsonl")) == 2 and forced["key"] == first["key"] == config.resolve().key
    assert {"base", "new", "H", "per_class", "versions", "seconds", "config", "stamp", "val"} <= \
        set(json.loads(lines(tmp_path / "runs.jsonl")[0]))
    assert runner.trained == [first["key"]] * 2


def test_a_runner_writes_to_the_readers_results_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_RESULTS", str(tmp_path / "mine"))
    runner = Runner(device="cpu")
    record = runner.run(TrainConfig(method="zeroshot", dataset="shapes", shots=2))
    assert runner.path == tmp_path / "mine" / "runs.jsonl" and records.read_records(runner.path) == [record]
    assert not (tmp_path / "mine" / "solutions").exists()   # zero-shot learns nothing to store


def test_the_books_records_are_read_but_never_written(tmp_path, monkeypatch):
    book, mine = tmp_path / "book", tmp_path / "mine"
    monkeypatch.setenv("GCSCOOP_BOOK_RESULTS", str(book))
    config = TrainConfig(method="coop", **SMALL)
    record = Runner(book, device="cpu").run(config)   # as `make book` writes the book's own records
    shutil.rmtree(book / "solutions")                  # the book ships its records, not its solutions
    written = (book / "runs.jsonl").read_bytes()
    reader = Runner(mine, device="cpu")
    assert reader.current(config.resolve()) == (record, book)
    assert reader.run(config) == record and reader.trained == [] and not mine.exists()
    solution = reader.solution(config)
    assert solution.trained_now and solution.folder == mine and solution.record == record
    again = Runner(mine, device="cpu").solution(config)
    assert not again.trained_now and torch.equal(again.model.learner.ctx, solution.model.learner.ctx)
    assert (book / "runs.jsonl").read_bytes() == written and not (book / "solutions").exists()
    assert not (mine / "runs.jsonl").exists()


def test_a_bumped_update_rule_recomputes_only_its_own_records(tmp_path, monkeypatch):
    runner = Runner(tmp_path, device="cpu")
    kg, coop = TrainConfig(method="kgcoop", **SMALL), TrainConfig(method="coop", **SMALL)
    first_kg, first_coop = runner.run(kg), runner.run(coop)

    def flipped(model, batch, knobs):
        text = model.text_features()
        ce = methods.cross_entropy(model.logits(batch.features, text), batch.labels)
        knowledge = 1 - torch.nn.functional.cosine_similarity(text, model.zs_text, dim=-1).mean(-1)
        return methods.Step(ce, methods.flat_grad(ce - knobs.lam * knowledge, model.params))

    monkeypatch.setitem(methods.METHODS, "kgcoop",
                        dataclasses.replace(methods.METHODS["kgcoop"], update=flipped, version=2))
    fresh = Runner(tmp_path, device="cpu")
    assert fresh.run(coop) == first_coop                       # untouched unit: loaded, not re-run
    again = fresh.run(kg)
    assert again["stamp"]["units"]["method.kgcoop"] == 2 != first_kg["stamp"]["units"]["method.kgcoop"]
    assert fresh.trained == [again["key"]] and not fresh.is_current(first_kg)
    assert len(records.read_records(tmp_path / "runs.jsonl")) == 3
    assert fresh.prune() == 1 and len(records.read_records(tmp_path / "runs.jsonl")) == 2


def test_a_current_tuning_record_is_copied_instead_of_run_again(tmp_path):
    config = TrainConfig(method="coop", **SMALL)
    tuned = Runner(tmp_path, device="cpu", records_file="tuning_runs.jsonl").run(config)
    benchmark = Runner(tmp_path, device="cpu", borrow_from=("tuning_runs.jsonl",))
    assert benchmark.run(config) == tuned and benchmark.trained == []
    assert records.read_records(tmp_path / "runs.jsonl") == [tuned]
    records.rewrite_records(tmp_path / "tuning_runs.jsonl", [dict(tuned, stamp={"code": "old", "weights": "old"})])
    (tmp_path / "runs.jsonl").unlink()
    stale = Runner(tmp_path, device="cpu", borrow_from=("tuning_runs.jsonl",))
    record = stale.run(config)
    assert stale.trained == [tuned["key"]] and stale.is_current(record)


def test_stored_records_are_found_current_without_loading_a_clip(tmp_path, monkeypatch):
    config = TrainConfig(method="gcscoop", **SMALL)
    record = Runner(tmp_path, device="cpu").run(config)
    checksum_only = tmp_path / "tiny"
    checksum_only.mkdir()
    shutil.copy(settings.current().tiny_dir / "checksums.json", checksum_only)
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(checksum_only))   # any load of the weights now fails
    runner = Runner(tmp_path, device="cpu")
    assert runner.stamp(config) == record["stamp"] and runner.is_current(record)
    assert runner.current(config.resolve()) == (record, tmp_path) and runner.run(config) == record
    assert runner.current(TrainConfig(method="gcscoop", **dict(SMALL, seed=2)).resolve()) is None
    with pytest.raises(FileNotFoundError, match="tiny CLIP weights missing"):
        runner.run(TrainConfig(method="gcscoop", **dict(SMALL, seed=2)))


def test_a_bad_line_in_the_records_stops_the_runner_in_one_line(tmp_path):
    (tmp_path / "runs.jsonl").write_text('{"key": "a", "config": {}}\nnot json\n')
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'runs.jsonl'}, line 2, is not a run record"):
        Runner(tmp_path, device="cpu")


# ----------------------------------------------------------------------------- solutions
def test_a_solution_is_trained_once_then_loaded(tmp_path):
    config = TrainConfig(method="coop", **SMALL)
    first = Runner(tmp_path, device="cpu").solution(config)
    assert first.trained_now and first.folder == tmp_path and solution_path(tmp_path, first.run.key).exists()
    runner = Runner(tmp_path, device="cpu")
    loaded = runner.solution(config)
    assert not loaded.trained_now and runner.trained == [] and loaded.record == first.record
    assert torch.equal(loaded.model.learner.ctx, first.model.learner.ctx)
    assert loaded.steps == first.steps and loaded.history == first.history
    assert not torch.equal(loaded.model.learner.ctx, loaded.model.learner.initial_ctx)
    assert lines(tmp_path / "runs.jsonl") == [json.dumps(first.record, sort_keys=True)]


def test_tracking_retrains_only_a_solution_stored_without_its_test_accuracies(tmp_path):
    config = TrainConfig(method="coop", **SMALL)
    untracked = Runner(tmp_path, device="cpu").solution(config)
    tracked = Runner(tmp_path, device="cpu").solution(config, track=True)
    assert tracked.trained_now and all({"base", "new"} <= set(row) for row in tracked.history)
    assert tracked.record == untracked.record and len(lines(tmp_path / "runs.jsonl")) == 1
    assert torch.equal(tracked.model.learner.ctx, untracked.model.learner.ctx)
    for track in (True, False):   # a tracked solution serves both
        again = Runner(tmp_path, device="cpu").solution(config, track=track)
        assert not again.trained_now and again.history == tracked.history


def test_a_broken_or_stale_solution_is_trained_again(tmp_path):
    config = TrainConfig(method="sam", **SMALL)
    first = Runner(tmp_path, device="cpu").solution(config)
    path = solution_path(tmp_path, first.run.key)
    path.write_bytes(path.read_bytes()[:64])
    broken = Runner(tmp_path, device="cpu").solution(config)
    assert broken.trained_now and torch.equal(broken.model.learner.ctx, first.model.learner.ctx)
    save_solution(tmp_path, first.run.key, {"code": "older", "weights": first.record["stamp"]["weights"]},
                  StoredSolution(first.model.learned(), first.steps, first.history, False))
    assert Runner(tmp_path, device="cpu").solution(config).trained_now
    assert not Runner(tmp_path, device="cpu").solution(config).trained_now
    assert len(lines(tmp_path / "runs.jsonl")) == 1


def test_zero_shot_has_a_record_but_no_solution(tmp_path):
    with pytest.raises(ValueError, match="Zero-shot CLIP is not trained and has no solution: use run"):
        Runner(tmp_path, device="cpu").solution(TrainConfig(method="zeroshot", **SMALL))


def test_a_method_with_its_own_model_round_trips_through_records_and_solutions(tmp_path, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "shifted", SHIFTED)
    config = TrainConfig(method="shifted", **dict(SMALL, epochs=3, lr=0.005))
    first = Runner(tmp_path, device="cpu").solution(config)
    assert first.trained_now and type(first.model) is ShiftedClip and first.model.shift.norm() > 0
    assert set(records.load_solution(tmp_path, first.run.key, first.record["stamp"]).learned) == {"ctx", "shift"}
    runner = Runner(tmp_path, device="cpu")
    again = runner.solution(config)
    assert not again.trained_now and type(again.model) is ShiftedClip and again.record == first.record
    assert torch.equal(again.model.shift, first.model.shift)
    assert torch.equal(again.model.learner.ctx, first.model.learner.ctx)
    assert runner.is_current(first.record) and runner.run(config) == first.record
    assert first.record["method"] == "shifted" and first.record["stamp"] != stamps.run_stamp(TrainConfig(method="coop"))


def test_pruning_deletes_the_solutions_no_current_record_names(tmp_path):
    keep, drop = (TrainConfig(method="coop", **dict(SMALL, seed=s)) for s in (1, 2))
    runner = Runner(tmp_path, device="cpu")
    kept, dropped = runner.solution(keep), runner.solution(drop)
    records.rewrite_records(tmp_path / "runs.jsonl", [kept.record])
    assert prune_solutions(tmp_path) == 1
    assert solution_path(tmp_path, kept.run.key).exists() and not solution_path(tmp_path, dropped.run.key).exists()
    assert prune_solutions(tmp_path) == 0


def test_an_untracked_run_never_overwrites_a_tracked_solution(tmp_path):
    config = TrainConfig(method="coop", **SMALL)
    tracked = Runner(tmp_path, device="cpu").solution(config, track=True)
    other = Runner(tmp_path, device="cpu", records_file="other.jsonl")   # another file's runner trains it again
    other.run(config)
    assert other.trained == [tracked.run.key]
    kept = records.load_solution(tmp_path, tracked.run.key, tracked.record["stamp"])
    assert kept.tracked == stamps.tracking_version() and kept.steps == tracked.steps
