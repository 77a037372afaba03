"""scripts/records_moved.py: what a regeneration moved, method by method, against a revision."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import records_moved  # noqa: E402


def test_it_counts_the_values_that_moved_against_a_revision(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    results.mkdir()

    def write(runs):
        for name in records_moved.FILES:
            rows = runs if name == "runs.jsonl" else []
            (results / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    def record(key, method, base, new):
        return {"key": key, "method": method, "base": base, "new": new, "H": None if new is None else base + new}

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], cwd=tmp_path, check=True)
    write([record("a", "coop", 70.0, 60.0), record("b", "prograd", 80.0, 50.0), record("c", "coop", 71.0, None)])
    subprocess.run(git + ["add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "before"], cwd=tmp_path, check=True)
    write([record("a", "coop", 70.0, 60.0), record("b", "prograd", 80.5, 50.0), record("c", "coop", 71.0, None),
           record("d", "coop", 1.0, 1.0)])                  # a new record has nothing to compare with
    monkeypatch.setattr(records_moved, "ROOT", tmp_path)
    moved = records_moved.changes("HEAD")
    assert sorted(moved["coop"]) == [0.0, 0.0, 0.0, 0.0] and sorted(moved["prograd"]) == [0.0, 0.5, 0.5]
    records_moved.main("HEAD")
    assert "| prograd | 3 | 33.3 % | 0.50 | 0.50 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="name a revision that has the records"):
        records_moved.changes("no-such-revision")
