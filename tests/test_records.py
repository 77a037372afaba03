"""Run records and stored solutions: one JSON line per run, stamped with the versions of the
units and the weights that made it, and the learned parameters beside it under the same key
and stamp."""
import dataclasses
import json

import pytest
import torch

from gcscoop_lib import records, settings, stamps
from gcscoop_lib.records import StoredSolution, load_solution, save_solution, solution_path
from gcscoop_lib.training import TrainConfig


def test_records_are_appended_one_line_each_and_read_back(tmp_path):
    path = tmp_path / "deeper" / "runs.jsonl"
    assert records.read_records(path) == []
    first, second = {"key": "a", "config": {}, "H": 1.0}, {"key": "b", "config": {}, "H": 2.0}
    records.append_record(path, first)
    records.append_record(path, second)
    assert records.read_records(path) == [first, second] and len(path.read_text().splitlines()) == 2
    path.write_text(path.read_text() + "\n\n")   # blank lines are no records
    assert records.read_records(path) == [first, second]
    records.rewrite_records(path, [second])
    assert records.read_records(path) == [second] and [p.name for p in path.parent.iterdir()] == ["runs.jsonl"]


@pytest.mark.parametrize("bad,why", [('{"key": "b", "config": {', "is not a run record"),
                                     ('{"H": 3.0}', "no key or config"),
                                     ("[1, 2]", "no key or config")])
def test_a_bad_line_stops_with_one_error_naming_the_file_and_line(tmp_path, bad, why):
    path = tmp_path / "runs.jsonl"
    path.write_text(json.dumps({"key": "a", "config": {}}) + "\n" + bad + "\n")
    with pytest.raises(ValueError) as error:
        records.read_records(path)
    message = str(error.value)
    assert message.startswith(f"{path}, line 2, is not a run record") and why in message and "\n" not in message
    assert message.endswith("delete that line (its run is redone when next asked for)")


def test_a_stamp_is_computed_without_loading_a_clip(tmp_path, monkeypatch):
    tiny = json.loads((settings.current().tiny_dir / "checksums.json").read_text())
    (tmp_path / "checksums.json").write_text(json.dumps(tiny))   # the checksum alone, no weights to load
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(tmp_path))
    stamp = stamps.run_stamp(TrainConfig(method="gcscoop"))
    assert stamp["weights"] == f"tiny-{tiny['sha256'][:16]}" and stamp["units"]["method.gcscoop"] == 1
    assert stamps.run_stamp(TrainConfig(method="gcscoop", model="ViT-B-16", pretrained="openai")) == \
        {"units": stamp["units"], "weights": "ViT-B-16-openai"}
    assert stamps.run_stamp(TrainConfig(method="gcscoop", dataset="digits", seed=3)) == stamp


def test_a_stamp_is_the_versions_of_the_units_a_run_uses():
    coop, cocoop, zero = (stamps.method_units(m) for m in ("coop", "cocoop", "zeroshot"))
    assert set(zero) == {"world", "data", "features", "text", "evaluation"}   # nothing of the loop
    assert set(coop) == set(zero) | {"loop", "loop.momentum", "loop.weight_decay", "loop.warmup_lr", "method.coop"}
    assert set(cocoop) == set(coop) - {"method.coop"} | {"method.cocoop", "model.cocoop"}
    # only versions and the loop's numbers: nothing that a rename, a comment or a new helper changes
    assert all(isinstance(v, (int, float)) for v in stamps.all_units().values())
    assert all(stamps.where(unit) for unit in stamps.all_units())   # each says where to bump it


def test_a_bumped_version_or_setting_stales_exactly_its_runs(monkeypatch):
    from gcscoop_lib import methods, protocol

    before = {m: stamps.method_units(m) for m in methods.METHODS}
    monkeypatch.setitem(methods.METHODS, "kgcoop", dataclasses.replace(methods.METHODS["kgcoop"], version=2))
    after = {m: stamps.method_units(m) for m in methods.METHODS}
    assert [m for m in methods.METHODS if after[m] != before[m]] == ["kgcoop"]
    assert stamps.changes({"units": before["kgcoop"]}, {"units": after["kgcoop"]}) == ["method.kgcoop 1 -> 2"]
    monkeypatch.setattr(protocol, "MOMENTUM", 0.8)
    assert [m for m in methods.METHODS if stamps.method_units(m) != after[m]] == \
        [m for m in methods.METHODS if methods.METHODS[m].trains]
    assert stamps.changes({"code": "c0de"}, {"units": {}}) == ["stored without a stamp of versions"]


def test_a_record_carries_what_reuses_and_reports_it():
    run = TrainConfig(method="sam", dataset="shapes", shots=2, epochs=2).resolve()
    scores = {"base": 80.0, "new": 60.0, "H": 68.6, "per_class": {"base": [80.0], "new": [60.0]}}
    record = records.make_record(run, scores, {**scores, "base": 81.0}, 1.5, "cpu")
    assert record["key"] == run.key and record["stamp"] == stamps.run_stamp(run.config)
    assert record["config"]["knobs"] == {"rho": 0.05} and record["val"] == {"base": 81.0, "new": 60.0, "H": 68.6}
    assert (record["method"], record["dataset"], record["seed"], record["shots"]) == ("sam", "shapes", 1, 2)
    assert set(record["versions"]) == {"gcscoop_lib", "torch", "open_clip", "python"}
    assert json.loads(json.dumps(record)) == record


STAMP = {"units": {"loop": 1}, "weights": "tiny-x"}


def solution():
    return StoredSolution({"ctx": torch.randn(4, 8), "shift": torch.arange(3.0)}, [{"epoch": 0, "loss": 1.0}],
                          [{"epoch": 1, "lr": 1e-5, "loss": 1.0}], tracked=None)


def test_a_solution_is_stored_under_its_key_and_read_back(tmp_path):
    stored = solution()
    path = save_solution(tmp_path, "k1", STAMP, stored)
    assert path == solution_path(tmp_path, "k1") and [p.name for p in path.parent.iterdir()] == ["k1.safetensors"]
    loaded = load_solution(tmp_path, "k1", STAMP)
    assert loaded.steps == stored.steps and loaded.history == stored.history and loaded.tracked is None
    assert loaded.learned.keys() == stored.learned.keys()
    assert all(torch.equal(loaded.learned[k], stored.learned[k]) for k in stored.learned)


def test_a_solution_stored_again_keeps_its_bytes_in_any_process(tmp_path):
    """safetensors writes its metadata in a hash map's order: a regeneration that reproduces a
    solution must not change the file (one save here, one in another process)."""
    import subprocess
    import sys

    stored = StoredSolution({"ctx": torch.arange(32.0).view(4, 8)}, [{"epoch": 0, "loss": 1.0}],
                            [{"epoch": 1, "loss": 1.0}], tracked=None)
    first = save_solution(tmp_path / "here", "k1", STAMP, stored).read_bytes()
    assert len({save_solution(tmp_path / "here", "k1", STAMP, stored).read_bytes() for _ in range(10)}) == 1
    code = ("import sys, torch; from gcscoop_lib.records import StoredSolution, save_solution; "
            "save_solution(sys.argv[1], 'k1', {'units': {'loop': 1}, 'weights': 'tiny-x'}, StoredSolution("
            "{'ctx': torch.arange(32.0).view(4, 8)}, [{'epoch': 0, 'loss': 1.0}], [{'epoch': 1, 'loss': 1.0}], None))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True)
    assert solution_path(tmp_path / "there", "k1").read_bytes() == first
    assert load_solution(tmp_path / "here", "k1", STAMP).learned["ctx"].equal(stored.learned["ctx"])


def test_a_missing_broken_stale_or_misnamed_solution_is_not_loaded(tmp_path):
    assert load_solution(tmp_path, "k1", STAMP) is None
    path = save_solution(tmp_path, "k1", STAMP, solution())
    assert load_solution(tmp_path, "k1", {**STAMP, "units": {"loop": 2}}) is None
    path.rename(solution_path(tmp_path, "k2"))
    assert load_solution(tmp_path, "k2", STAMP) is None   # the file says it is k1's
    path = save_solution(tmp_path, "k1", STAMP, solution())
    path.write_bytes(path.read_bytes()[:100])
    assert load_solution(tmp_path, "k1", STAMP) is None


def test_a_copy_of_the_library_elsewhere_stamps_its_runs_alike(tmp_path):
    """A clone in another folder (CI's, a reader's) must find the book's records current."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import gcscoop_lib

    source = Path(gcscoop_lib.__file__).parent
    shutil.copytree(source, tmp_path / "gcscoop_lib", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    code = "import json; from gcscoop_lib import stamps; print(json.dumps(stamps.method_units('prograd')))"
    there = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                           env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    assert json.loads(there.stdout) == stamps.method_units("prograd")
