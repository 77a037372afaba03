"""The study of a next world (scripts/world_v2_study.py, issue 26): its report is its JSON
rendered, and its broad source task is built from the tasks' own splits."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
study = pytest.importorskip("world_v2_study")

from gcscoop_lib import datasets, protocols  # noqa: E402


def test_the_committed_report_is_its_json_rendered():
    assert study.render(study.load()) == (ROOT / "results" / "world_v2_study.md").read_text()


def test_the_broad_source_takes_each_task_split_by_split_in_any_style():
    broad = study.broad_task("inverted")            # fashion's own style: its images as the task shows them
    fashion = datasets.load_dataset("fashion")
    assert broad.classnames[:10] == fashion.classnames and len(broad.classnames) == 40
    for split, per_class in study.BROAD_PER_CLASS.items():
        mine = getattr(broad, split)
        first = protocols.first_per_class(getattr(fashion, split), per_class)
        assert (mine.images[mine.labels < 10] == first.images).all()
    clean = study.broad_task()
    assert clean.style == "clean" and (clean.test.labels == broad.test.labels).all()
    assert not (clean.test.images == broad.test.images).all()
    assert np.bincount(clean.train.labels).min() >= 16        # enough for 16 shots of every class
