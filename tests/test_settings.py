"""Every setting read from the environment: an explicit value beats the variable, which beats
the default."""
from pathlib import Path

import pytest

from gcscoop_lib import settings


def test_settings_explicit_beats_environment_beats_default(monkeypatch):
    monkeypatch.delenv("GCSCOOP_TEXT_CHUNK", raising=False)
    assert settings.current().text_chunk == 0
    monkeypatch.setenv("GCSCOOP_TEXT_CHUNK", "8")
    assert settings.pick(None, "text_chunk") == 8 and settings.pick(3, "text_chunk") == 3
    monkeypatch.setenv("GCSCOOP_COMPILE", "yes")
    with pytest.raises(ValueError, match="GCSCOOP_COMPILE must be 0 or 1"):
        settings.current()


def test_bad_counts_are_refused():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GCSCOOP_TEXT_CHUNK", "-1")
        with pytest.raises(ValueError, match="GCSCOOP_TEXT_CHUNK must be a whole number >= 0, got '-1'"):
            settings.current()


def test_a_readers_runs_go_to_their_own_folder_and_the_books_records_are_the_clones(monkeypatch):
    for variable in ("GCSCOOP_RESULTS", "GCSCOOP_BOOK_RESULTS", "GCSCOOP_PAPER_MODEL", "GCSCOOP_PAPER_PRETRAINED"):
        monkeypatch.delenv(variable, raising=False)
    now = settings.current()
    assert now.results == Path.home() / "gcscoop_runs"
    assert now.book_results == Path(settings.__file__).resolve().parent.parent / "results"
    assert (now.paper_model, now.paper_pretrained) == ("ViT-B-16", "openai")
    monkeypatch.setenv("GCSCOOP_RESULTS", "/somewhere/else")
    assert settings.current().results == Path("/somewhere/else") and settings.pick(None, "results") == \
        Path("/somewhere/else")


def test_the_tests_never_write_to_the_readers_or_the_books_folder():
    assert settings.current().results != Path.home() / "gcscoop_runs"
    assert settings.current().results != Path(settings.__file__).resolve().parent.parent / "results"


def test_every_setting_has_its_variable():
    assert set(settings.VARIABLES) == set(settings.Settings.__dataclass_fields__)
    assert all(variable.startswith("GCSCOOP_") for variable, _ in settings.VARIABLES.values())
