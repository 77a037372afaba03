"""The tiny CLIP's pretraining: deterministic, atomic, and strict about its input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.torch import load_file

from gcscoop_lib import tiny

SMALL_WEB = {"fashion_count": 120, "digit_copies": 1, "procedural_count": 120}


def small_pretrain(out, **kwargs):
    return tiny.pretrain(out, epochs=1, batch_size=64, log=lambda *_: None, **SMALL_WEB, **kwargs)


def test_regenerating_the_weights_gives_the_same_sha256(tmp_path):
    first = small_pretrain(tmp_path / "a")
    second = small_pretrain(tmp_path / "b")
    assert first["sha256"] == second["sha256"]
    recorded = json.loads((tmp_path / "a" / "checksums.json").read_text())
    assert recorded["sha256"] == first["sha256"] and recorded["logit_scale"] == tiny.TEMPERATURE


def test_the_shipped_temperature_is_set_after_pretraining(tmp_path):
    small_pretrain(tmp_path / "w", temperature=100.0)
    scale = load_file(str(tmp_path / "w" / "open_clip_model.safetensors"))["logit_scale"].float().exp().item()
    assert math.isclose(scale, 100.0, rel_tol=1e-3)


def test_an_interrupted_pretraining_leaves_the_old_weights_untouched(tmp_path, monkeypatch):
    out = tmp_path / "w"
    out.mkdir()
    (out / "checksums.json").write_text("old")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny, "save_local_dir", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_pretrain(out)
    assert (out / "checksums.json").read_text() == "old"
    assert sorted(p.name for p in out.iterdir()) == ["checksums.json"]


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"batch_size": 1}, {"lr": 0.0}, {"temperature": -1.0}])
def test_pretraining_rejects_bad_settings_before_any_work(tmp_path, bad):
    settings = {"epochs": 1, "batch_size": 64, "lr": 1e-3, "temperature": 100.0, **bad}
    with pytest.raises(ValueError, match="pretraining needs"):
        tiny.pretrain(tmp_path / "w", log=lambda *_: None, **SMALL_WEB, **settings)
    assert not (tmp_path / "w").exists()


def test_the_cli_reports_bad_settings_in_one_line(capsys):
    with pytest.raises(SystemExit):
        tiny.main(["--epochs", "0"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: pretraining needs epochs >= 1" in last


def test_web_captions_use_only_the_words_the_tiny_clip_knows():
    rng = np.random.default_rng(0)
    vocabulary = set(tiny.web_vocabulary())
    for source, classes in (("digits", ["two"]), ("shapes", ["star"]), ("fashion", ["ankle boot"])):
        for _ in range(20):
            words = tiny.caption(source, classes[0], "noisy", "red", rng).replace(".", " ").split()
            assert set(words) <= vocabulary
