import pytest

from gcscoop_lib.models import load_clip
from gcscoop_lib.training import prepare_task


@pytest.fixture(scope="session")
def clip():
    return load_clip("tiny", device="cpu")


@pytest.fixture(scope="session")
def task(clip, tmp_path_factory):
    return prepare_task(clip, "shapes", shots=4, seed=1, split_dir=tmp_path_factory.mktemp("splits"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GCSCOOP_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))
