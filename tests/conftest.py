import pytest
import torch

from gcscoop_lib.models import load_clip
from gcscoop_lib.tasks import prepare_task


# One thread, as `make test` runs (OMP_NUM_THREADS=1), whatever the environment says: with more,
# a batched population and a run alone reduce in different orders, and the tests that compare
# them to 1e-5 see the rounding.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_folders(tmp_path_factory):
    """Session-wide, so that the session fixtures below already write their features here."""
    base = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCSCOOP_CACHE", str(base / "feature-cache"))
        patch.setenv("GCSCOOP_RESULTS", str(base / "session-runs"))
        yield


@pytest.fixture(autouse=True)
def _isolated_results(tmp_path_factory, monkeypatch):
    """Each test writes its runs to a folder of its own, never to ~/gcscoop_runs or the book's results/."""
    monkeypatch.setenv("GCSCOOP_RESULTS", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="session")
def clip():
    return load_clip("tiny", device="cpu")


@pytest.fixture(scope="session")
def task(clip, tmp_path_factory):
    return prepare_task(clip, "shapes", shots=4, seed=1, split_dir=tmp_path_factory.mktemp("splits"))
