"""Loading a frozen CLIP: the tiny one checked against its checksum, open_clip's ones offline in
one clear line, and the weights identified without loading them."""
import json
import shutil
import socket

import pytest

from gcscoop_lib import settings
from gcscoop_lib.models import load_clip, reachable, verify_checksum, weights_fingerprint


def test_the_tiny_clip_is_frozen_and_identified_by_its_checksum(clip):
    assert clip.name == "tiny" and clip.image_size == 32 and clip.device.type == "cpu"
    assert not any(p.requires_grad for p in clip.model.parameters()) and not clip.model.training
    sha256 = json.loads((settings.current().tiny_dir / "checksums.json").read_text())["sha256"]
    assert verify_checksum(settings.current().tiny_dir) == sha256
    assert clip.fingerprint == weights_fingerprint("tiny") == f"tiny-{sha256[:16]}"


def test_weights_are_identified_without_loading_them(tmp_path, monkeypatch):
    (tmp_path / "checksums.json").write_text(json.dumps({"sha256": "ab" * 32}))   # no weights beside it
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(tmp_path))
    assert weights_fingerprint("tiny") == "tiny-" + "ab" * 8
    assert weights_fingerprint("ViT-B-16", "openai") == "ViT-B-16-openai"
    with pytest.raises(FileNotFoundError, match="tiny CLIP weights missing"):
        load_clip("tiny", device="cpu")
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="reinstall the package"):
        weights_fingerprint("tiny")


def test_unknown_model_names_the_offline_alternative():
    with pytest.raises(ValueError, match="use 'tiny'"):
        load_clip("not-a-model")


def test_checksum_mismatch(tmp_path, monkeypatch):
    shutil.copytree(settings.current().tiny_dir, tmp_path / "tiny")
    weights = tmp_path / "tiny" / "open_clip_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(tmp_path / "tiny"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_clip("tiny", device="cpu")


def test_hub_model_offline_names_the_tiny_alternative(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # fail at once, as offline machines do
    with pytest.raises(RuntimeError, match=r"offline, use load_clip\('tiny'\)"):
        load_clip("RN50", "openai", device="cpu")


@pytest.fixture
def hub(monkeypatch):
    """A stand-in for the network and open_clip's loader: records what load_clip asks of them."""
    import huggingface_hub
    import open_clip
    from huggingface_hub import constants

    from gcscoop_lib import models

    calls = {"probed": [], "loaded": [], "cached": set(), "up": False}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hf-mirror.example")   # as HF_ENDPOINT sets it
    monkeypatch.setattr(models, "reachable", lambda url, timeout=3.0: calls["probed"].append(url) or calls["up"])
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, filename, **kw: f"/cache/{filename}" if filename in calls["cached"] else None)

    def loader(name, pretrained=None, **kw):
        calls["loaded"].append(constants.HF_HUB_OFFLINE)
        raise OSError("stand-in loader")
    monkeypatch.setattr(open_clip, "create_model_and_transforms", loader)
    return calls


def test_hub_weights_offline_fail_at_once_without_open_clip(hub):
    """Not cached and the hub (here HF_ENDPOINT's mirror) unreachable: one line, open_clip never called."""
    with pytest.raises(RuntimeError) as error:
        load_clip("ViT-B-16", "openai", device="cpu")
    message = str(error.value)
    assert "\n" not in message and "hf-mirror.example cannot be reached" in message
    assert message.endswith("this needs internet; offline, use load_clip('tiny')")
    assert hub["probed"] == ["https://hf-mirror.example"] and hub["loaded"] == []


def test_hub_offline_is_not_probed(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE=1"):
        load_clip("ViT-B-16", "openai", device="cpu")
    assert hub["probed"] == [] and hub["loaded"] == []


@pytest.mark.parametrize("up", [True, False])
def test_cached_hub_weights_load_offline_when_the_hub_is_down(hub, up):
    """Cached weights go to open_clip; with the hub down, huggingface_hub is told it is offline (no retries)."""
    from huggingface_hub import constants

    hub["cached"], hub["up"] = {"open_clip_model.safetensors"}, up
    with pytest.raises(RuntimeError, match="OSError"):
        load_clip("ViT-B-16", "openai", device="cpu")
    assert hub["loaded"] == [not up] and constants.HF_HUB_OFFLINE is False


def test_reachable_probes_the_host_or_its_proxy(monkeypatch):
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                     "NO_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert reachable(f"http://127.0.0.1:{port}", timeout=2)
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        assert reachable("https://huggingface.invalid", timeout=2)
    monkeypatch.delenv("https_proxy")
    assert not reachable(f"http://127.0.0.1:{port}", timeout=2)
    assert not reachable("https://huggingface.invalid", timeout=2)
