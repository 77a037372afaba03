"""Sweeps: many runs at once, each recorded once, in this process or in submitit's jobs."""
import pytest

from gcscoop_lib import records, reports, sweeps
from gcscoop_lib.training import TrainConfig


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sweep_skips_finished_runs_and_aggregates(tmp_path, executor):
    configs = [TrainConfig(method=m, dataset="shapes", shots=2, epochs=2, batch_size=4, seed=s)
               for m in ("coop", "gcscoop") for s in (1, 2)]
    first = sweeps.sweep(configs[:1], tmp_path, "inline", device="cpu")
    done = sweeps.sweep(configs, tmp_path, executor, jobs=2, device="cpu")
    assert [r["key"] for r in done] == [c.resolve().key for c in configs]
    assert done[0] == first[0]  # finished before: loaded, not re-run
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(configs)
    csv = reports.csv_table(reports.summarise(done), ["coop", "gcscoop"], ["shapes"])
    assert csv.splitlines()[0].startswith("method,dataset,base") and len(csv.splitlines()) == 5


def test_a_sweep_writes_to_the_readers_results_by_default_in_its_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_RESULTS", str(tmp_path))
    config = TrainConfig(method="zeroshot", dataset="shapes", shots=2)
    [record] = sweeps.sweep([config], None, device="cpu", records_file="mine.jsonl")
    assert records.read_records(tmp_path / "mine.jsonl") == [record] and not (tmp_path / "runs.jsonl").exists()


def test_sweep_refuses_a_missing_paper_dataset_before_any_job(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_DATA", str(tmp_path / "data"))
    config = TrainConfig(method="coop", dataset="dtd", shots=2, epochs=2)
    with pytest.raises(FileNotFoundError, match=r"prepare dtd` to see what to fetch"):
        sweeps.sweep([config], tmp_path / "results", "local", device="cpu")
    assert not (tmp_path / "results" / "submitit").exists()


def test_unknown_executor():
    with pytest.raises(ValueError, match=r"unknown executor 'kubernetes': choose one of \('inline', 'local', 'slurm'\)"):
        sweeps.sweep([], "unused", executor="kubernetes")
