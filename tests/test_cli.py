"""The command line: the notebooks' calls, each writing to --results and saying where, each
error one line on stderr with exit status 2."""
import json
import subprocess
import sys

import pytest

from gcscoop_lib import records
from gcscoop_lib.cli import main
from gcscoop_lib.records import solution_path

TUNING = {"recipe": {"lr": 0.01, "epochs": 2, "batch_size": 8}, "knobs": {"sam": {"rho": 0.05}}}


@pytest.fixture
def results(tmp_path):
    """A results folder holding its own tuned recipe (two short epochs)."""
    (tmp_path / "tuning.json").write_text(json.dumps(TUNING))
    return tmp_path


def cli(capsys, *argv):
    """Run the command line in this process; its stdout lines."""
    main([*argv, "--device", "cpu"])
    return capsys.readouterr().out.splitlines()


def train(capsys, results, *extra):
    return cli(capsys, "train", "--method", "sam", "--dataset", "shapes", "--shots", "2", "--results", str(results),
               *extra)


def test_train_says_where_it_wrote_and_a_second_train_loads_what_it_wrote(results, capsys):
    first = train(capsys, results)
    key = records.read_records(results / "runs.jsonl")[0]["key"]
    assert first[0].startswith(f"SAM-CoOp on shapes, seed 1 [run {key}]: base ")
    assert first[1] == f"trained now; record written to {results / 'runs.jsonl'}"
    second = train(capsys, results)
    assert second[0] == first[0]
    assert second[1] == (f"loaded from a stored record in {results / 'runs.jsonl'}: nothing was trained "
                         "(--force trains again)")
    assert records.read_records(results / "runs.jsonl")   # trained there, stored here
    assert train(capsys, results, "--force")[1].startswith("trained now")
    assert len(records.read_records(results / "runs.jsonl")) == 2


def test_a_knob_from_the_command_line_is_typed_and_makes_its_own_run(results, capsys):
    train(capsys, results, "--knob", "rho=0.2")
    train(capsys, results)
    wide, tuned = records.read_records(results / "runs.jsonl")
    assert wide["config"]["knobs"] == {"rho": 0.2} and tuned["config"]["knobs"] == {"rho": 0.05}
    assert wide["key"] != tuned["key"] and wide["config"]["epochs"] == 2


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "error: epochs must be at least 2 to train SAM-CoOp, got 0: epoch 0 is the warm-up"),
    (["--epochs", "1"], "error: epochs must be at least 2 to train SAM-CoOp, got 1: epoch 0 is the warm-up"),
    (["--knob", "rho"], "error: --knob takes NAME=VALUE, got 'rho' (e.g. --knob rho=0.1)"),
    (["--knob", "lam=1"], "error: sam has no knob 'lam': it takes rho"),
    (["--knob", "rho=wide"], "error: knob rho must be a float, got 'wide'"),
])
def test_a_bad_train_is_refused_in_one_line_and_writes_nothing(results, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        train(capsys, results, *argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(message) and err.count("\n") == 1
    assert [p.name for p in results.iterdir()] == ["tuning.json"]


def test_command_line_error_is_one_line_and_writes_nothing(results):
    result = subprocess.run([sys.executable, "-m", "gcscoop_lib", "train", "--method", "sam", "--dataset", "shapes",
                             "--knob", "rho=-1", "--results", str(results)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "rho must be >= 0" in result.stderr
    assert [p.name for p in results.iterdir()] == ["tuning.json"]


def test_prune_drops_stale_records_and_deletes_solutions_without_a_current_record(results, capsys):
    train(capsys, results)
    train(capsys, results, "--seed", "2")
    kept, gone = records.read_records(results / "runs.jsonl")
    stale = dict(kept, key="0123456789ab", seconds=7.0, stamp={"code": "older", "weights": kept["stamp"]["weights"]})
    records.rewrite_records(results / "runs.jsonl", [kept, stale])
    before = (results / "runs.jsonl").read_text(), sorted((results / "solutions").iterdir())
    dry = cli(capsys, "prune", "--dry-run", "--results", str(results))
    assert dry[1] == f"stored without a stamp of versions: 1 record; {stale['seconds']:.0f} CPU-seconds"
    assert dry[2] == "no current record: 1 solution; 0 CPU-seconds"
    assert dry[-1] == f"1 records, 1 solutions, 0 protocols, 0 tuning choices stale ({stale['seconds']:.0f} CPU-seconds)"
    assert ((results / "runs.jsonl").read_text(), sorted((results / "solutions").iterdir())) == before
    out = cli(capsys, "prune", "--results", str(results))
    assert out == [f"{results / 'runs.jsonl'}: 1 record no longer current, dropped",
                   f"{results / 'solutions'}: 1 solution without a current record, deleted"]
    assert records.read_records(results / "runs.jsonl") == [kept]
    assert solution_path(results, kept["key"]).exists() and not solution_path(results, gone["key"]).exists()


def test_eval_prints_zero_shot_with_one_template_or_the_ensemble(results, capsys):
    assert cli(capsys, "eval", "--dataset", "shapes", "--shots", "4", "--results", str(results))[0].startswith(
        "zero-shot (1 template) on shapes: base ")
    assert cli(capsys, "eval", "--dataset", "shapes", "--shots", "4", "--ensemble", "--results",
               str(results))[0].startswith("zero-shot (10 templates) on shapes: base ")


def test_benchmark_writes_its_tables_where_it_says_and_force_runs_again(results, capsys):
    argv = ["benchmark", "--methods", "zeroshot", "coop", "--datasets", "shapes", "--seeds", "1",
            "--results", str(results)]
    out = cli(capsys, *argv)
    assert out[-1].endswith(f"-> {results / 'benchmark.md'}, {results / 'benchmark.json'} "
                            f"(runs in {results / 'runs.jsonl'})")
    assert "| CoOp |" in (results / "benchmark.md").read_text()
    assert json.loads((results / "benchmark.json").read_text())["tuning"] == TUNING
    assert len(records.read_records(results / "runs.jsonl")) == 2
    cli(capsys, *argv)
    assert len(records.read_records(results / "runs.jsonl")) == 2
    cli(capsys, *argv, "--force")
    assert len(records.read_records(results / "runs.jsonl")) == 4


def test_a_tracked_benchmark_gives_its_jobs_the_runs_tuning_lent_too(results, capsys, monkeypatch):
    """A tuning run has a record but no curves: the jobs train it tracked, not the parent alone afterwards."""
    from gcscoop_lib import runs, sweeps
    from gcscoop_lib.training import TrainConfig

    lent = TrainConfig(method="coop", dataset="shapes", seed=1, **TUNING["recipe"])
    runs.Runner(results, "cpu", records_file="tuning_runs.jsonl").run(lent)

    handed, trained_after = [], []

    def inline(configs, folder, *args, track=False, **kwargs):   # the jobs, in this process
        handed.extend(c.resolve().key for c in configs)
        sweeps.run_configs(configs, folder, "cpu", track=track)
        monkeypatch.setattr(runs.Runner, "_execute_population", lambda self, group, track: trained_after.extend(group))

    monkeypatch.setattr(sweeps, "sweep", inline)
    cli(capsys, "benchmark", "--methods", "coop", "--datasets", "shapes", "--seeds", "1", "2", "--track",
        "--jobs", "2", "--results", str(results))
    assert lent.resolve().key in handed and len(handed) == 2 and trained_after == []


def test_sweep_writes_its_records_and_tables_where_it_says(results, capsys):
    out = cli(capsys, "sweep", "--methods", "coop", "--datasets", "shapes", "--seeds", "1", "2",
              "--results", str(results))
    assert out[-1] == (f"2 runs -> {results / 'sweep.jsonl'}, {results / 'sweep.md'}, {results / 'sweep.csv'}")
    assert len(records.read_records(results / "sweep.jsonl")) == 2
    assert (results / "sweep.csv").read_text().startswith("method,dataset,base")


def test_benchmark_on_the_reversed_partition_writes_its_own_report(results, capsys):
    out = cli(capsys, "benchmark", "--methods", "zeroshot", "--datasets", "shapes", "--seeds", "1", "2",
              "--partition", "reversed", "--name", "reversed", "--results", str(results))
    assert f"-> {results / 'reversed.md'}" in out[-1] and not (results / "benchmark.md").exists()
    stored = json.loads((results / "reversed.json").read_text())
    assert stored["partition"] == "reversed" and stored["seeds"] == [1, 2]
    configs = [r["config"] for r in records.read_records(results / "runs.jsonl")]
    assert {c["partition"] for c in configs} == {"reversed"}
    assert "Against zero-shot CLIP" not in (results / "reversed.md").read_text()   # the papers' protocol only


def test_protocol_writes_its_store_and_report_where_it_says(results, capsys):
    out = cli(capsys, "protocol", "saliency", "--datasets", "shapes", "--seeds", "1", "--results", str(results))
    assert f"{results / 'protocols.json'}" in out[-1]
    stored = json.loads((results / "protocols.json").read_text())
    assert {r["dataset"] for r in stored["saliency"]["rows"]} == {"shapes"}
    assert "share of saliency inside the object" in (results / "protocols.md").read_text()


def test_a_protocol_computed_in_a_process_of_its_own_is_stored(results, capsys, monkeypatch):
    from gcscoop_lib import sweeps

    monkeypatch.setattr(sweeps, "sweep", lambda *args, **kwargs: None)   # its one run trains in that process
    out = cli(capsys, "protocol", "saliency", "--datasets", "shapes", "--seeds", "1", "--jobs", "2",
              "--results", str(results))
    stored = json.loads((results / "protocols.json").read_text())
    assert {r["dataset"] for r in stored["saliency"]["rows"]} == {"shapes"} and "saliency" in out[-1]
    assert records.read_records(results / "runs.jsonl")   # trained there, stored here


def test_prune_drops_stored_protocols_that_are_no_longer_current(results, capsys):
    (results / "protocols.json").write_text(json.dumps(
        {"fewshot": {"stamp": "older", "arguments": {"seeds": [1]}, "rows": []}}))
    out = cli(capsys, "prune", "--results", str(results))
    assert out[-1] == f"{results / 'protocols.json'}: 1 protocol no longer current, dropped: fewshot"
    assert json.loads((results / "protocols.json").read_text()) == {}
