"""The text encoder, data splits, schedule, records and every bad-input error."""
import dataclasses
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from gcscoop_lib import data, diagnostics, evaluation, experiments, methods, records, reports, settings
from gcscoop_lib.models import load_clip
from gcscoop_lib.prompts import PromptLearner, TextEncoder
from gcscoop_lib.training import TrainConfig, lr_at, train

NAMES = ["t-shirt", "ankle boot", "concentric circles", "one"]


@pytest.mark.parametrize("position,layout", [("end", "a photo of a {}."), ("front", "{} a photo of a."),
                                             ("middle", "a photo {} of a.")])
def test_text_encoder_equals_encode_text(clip, position, layout):
    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a", position=position)
    ours = TextEncoder(clip)(learner(), learner.token_ids(), learner.shared)
    reference = clip.model.encode_text(clip.tokenizer([layout.format(n) for n in NAMES]))
    assert learner.shared == {"end": 5, "middle": 3, "front": 1}[position]
    assert torch.allclose(ours, reference, atol=1e-4)


def test_context_counts_bpe_tokens_not_words(clip):
    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a")
    assert learner.n_ctx == 4 and learner.ctx.dtype == torch.float32
    assert PromptLearner(clip, NAMES, ctx_init="a noisy, dark photo of a").n_ctx == 7  # "noisy," is 2 tokens


def test_class_specific_and_random_context_shapes(clip):
    learner = PromptLearner(clip, NAMES, n_ctx=6, ctx_init=None, class_specific=True)
    assert learner().shape[:2] == (len(NAMES), clip.model.context_length)
    assert learner.ctx.shape[:2] == (len(NAMES), 6)


def test_base_new_split_follows_coop():
    assert data.base_new_classes(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert data.base_new_classes(7) == ([0, 1, 2, 3], [4, 5, 6])  # odd: base gets the extra class
    images = data.ImageSet(np.zeros((6, 2, 2, 3), np.uint8), np.array([0, 5, 6, 5, 1, 6]), [str(i) for i in range(7)])
    new = data.select_classes(images, [5, 6])
    assert new.labels.tolist() == [0, 1, 0, 1] and new.classnames == ["5", "6"]


def test_few_shot_split_is_stored_and_reused(tmp_path):
    dataset = data.load_dataset("shapes")
    first = data.few_shot_split(dataset, 16, 2, tmp_path)
    stored = json.loads((tmp_path / "shapes_shot16_seed2.json").read_text())
    assert stored["indices"] == first and len(first) == 16 * 5
    assert data.few_shot_split(dataset, 16, 2, tmp_path) == first
    assert data.few_shot_split(dataset, 16, 3) != first


def test_embedded_tasks_are_deterministic_and_disjoint_from_the_web():
    a, b = data.build_embedded("textures"), data.build_embedded("textures")
    assert np.array_equal(a.test.images, b.test.images)
    web_images, _, task_images, _ = data.digits_split()
    web = {im.tobytes() for im in web_images}
    assert not any(im.tobytes() in web for im in task_images)


def test_schedule_is_constant_warmup_then_cosine():
    assert lr_at(0, 10, 0.1) == 1e-5
    assert lr_at(1, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(6, 10, 0.1) == pytest.approx(0.05)
    assert lr_at(10, 10, 0.1) == pytest.approx(0.05 * (1 + np.cos(np.pi * 0.9)))


def test_average_h_is_h_of_averages():
    records = [{"method": "m", "dataset": d, "seed": s, "base": b, "new": n, "H": evaluation.harmonic_mean(b, n)}
               for d, b, n in (("x", 90.0, 10.0), ("y", 50.0, 50.0)) for s in (1, 2)]
    avg = reports.summarise(records)["m"]["average"]
    assert avg["base"][0] == 70.0 and avg["new"][0] == 30.0
    assert avg["H"][0] == pytest.approx(42.0)


def test_runs_are_recorded_once_and_reloaded(tmp_path):
    runner = experiments.Runner(tmp_path, device="cpu")
    config = TrainConfig(method="coop", dataset="shapes", shots=2, epochs=2, batch_size=4)
    first = runner.run(config)
    again = experiments.Runner(tmp_path, device="cpu").run(config)
    assert again == first
    forced = runner.run(config, force=True)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 2 and forced["key"] == first["key"] == config.key()
    assert {"base", "new", "H", "per_class", "versions", "seconds", "config"} <= set(json.loads(lines[0]))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,message", [
    (dict(method="adam"), "unknown method 'adam'"),
    (dict(dataset="cifar10"), "unknown dataset 'cifar10'"),
    (dict(method="sam", hparams={"rho": -0.1}), "rho must be >= 0"),
    (dict(method="gcscoop", hparams={"beta_low": 0.9, "beta_up": 0.8}), "must not exceed beta_up"),
    (dict(method="coop", hparams={"rho": 0.1}), "coop has no hyper-parameter 'rho'"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(n_ctx=8), "give n_ctx only with ctx_init=None"),
    (dict(ctx_init=None), "a random context needs n_ctx >= 1"),
])
def test_bad_config_raises_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs).resolved()


def test_unknown_model_names_the_offline_alternative():
    with pytest.raises(ValueError, match="use 'tiny'"):
        load_clip("not-a-model")


def test_too_many_shots():
    with pytest.raises(ValueError, match="lower --shots"):
        data.few_shot_indices(np.array([0, 0, 1, 1, 1]), shots=3, seed=1)


def test_empty_class_lists(clip):
    with pytest.raises(ValueError, match="empty class list"):
        PromptLearner(clip, [])
    with pytest.raises(ValueError, match="empty class list"):
        data.select_classes(data.load_dataset("shapes").test, [])


def test_checksum_mismatch(tmp_path, monkeypatch):
    shutil.copytree(settings.current().tiny_dir, tmp_path / "tiny")
    weights = tmp_path / "tiny" / "open_clip_model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    monkeypatch.setenv("GCSCOOP_TINY_DIR", str(tmp_path / "tiny"))
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_clip("tiny", device="cpu")


def test_non_finite_loss_stops_training(clip, task):
    broken = dataclasses.replace(task, train_features=task.train_features * float("nan"))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(TrainConfig(method="coop", dataset="shapes", shots=4, epochs=2, batch_size=8), clip, broken)


def test_command_line_error_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "tuning.json").write_text(json.dumps({"recipe": {"epochs": 2}, "hparams": {}}))
    result = subprocess.run([sys.executable, "-m", "gcscoop_lib", "train", "--method", "sam", "--dataset", "shapes",
                             "--rho", "-1", "--results", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "rho must be >= 0" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["tuning.json"]


def test_augmented_views_are_cached_per_view(clip):
    from gcscoop_lib.models import encode_images

    images = data.load_dataset("shapes").test.images[:6]
    views = encode_images(clip, images, views=3, seed=0)
    assert views.shape == (3, 6, clip.model.text_projection.shape[1])
    assert not torch.allclose(views[0], views[1])
    assert torch.equal(views, encode_images(clip, images, views=3, seed=0))


def test_loss_slices_leave_the_context_untouched(clip, task):
    from gcscoop_lib.training import build_model

    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    before = model.learner.ctx.detach().clone()
    losses = diagnostics.loss_along(model, task.train_features[0], task.train_labels, torch.randn(2, before.numel()),
                                   [-0.2, 0.0, 0.2])
    assert losses.shape == (2, 3) and torch.equal(model.learner.ctx, before)
    assert losses[0, 1] == losses[1, 1]  # radius 0 is the solution itself


def test_flatness_reads_the_loss_at_the_solution_and_its_rise(clip, task):
    from gcscoop_lib.training import build_model

    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    directions = diagnostics.random_directions(3, model.learner.ctx.numel())
    assert torch.equal(directions, diagnostics.random_directions(3, model.learner.ctx.numel()))
    flat = diagnostics.flatness(model, task.train_features[0], task.train_labels, directions, [-0.5, 0.0, 0.5])
    curves = flat["curves"]
    assert curves.shape == (3, 3) and flat["loss"] == pytest.approx(curves[:, 1].mean())
    assert flat["rise"] == pytest.approx(curves[:, [0, 2]].mean() - curves[:, 1].mean())


def test_nearest_words_of_the_initial_context_are_its_own_words(clip):
    from gcscoop_lib.prompts import nearest_words
    from gcscoop_lib.tiny import web_vocabulary

    learner = PromptLearner(clip, NAMES, ctx_init="a photo of a")
    assert [row[0][0] for row in nearest_words(learner, web_vocabulary())] == ["a", "photo", "of", "a"]


def test_training_on_augmented_views(clip):
    from gcscoop_lib.training import prepare_task

    task = prepare_task(clip, "shapes", shots=2, seed=1, views=2)
    assert task.train_features.shape[0] == 2
    result = train(TrainConfig(method="coop", dataset="shapes", shots=2, epochs=2, batch_size=4, views=2), clip, task)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["loss"])


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
    import socket

    from gcscoop_lib.models import reachable

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


@pytest.mark.parametrize("class_specific", [False, True])
def test_shortcuts_match_the_full_context_in_value_and_gradient(clip, class_specific):
    learner = PromptLearner(clip, NAMES, ctx_init=None, class_specific=class_specific, seed=3)
    features, grads = [], []
    for encoder, shared in [(TextEncoder(clip, reference=True), 0), (TextEncoder(clip), learner.shared)]:
        out = encoder(learner(), learner.token_ids(), shared)
        features.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), learner.ctx)[0])
    assert learner.shared == (1 if class_specific else 5)
    assert torch.allclose(features[0], features[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5 * grads[0].abs().max())


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sweep_skips_finished_runs_and_aggregates(tmp_path, executor):
    configs = [TrainConfig(method=m, dataset="shapes", shots=2, epochs=2, batch_size=4, seed=s)
               for m in ("coop", "gcscoop") for s in (1, 2)]
    first = experiments.sweep(configs[:1], tmp_path, "inline", device="cpu")
    records = experiments.sweep(configs, tmp_path, executor, jobs=2, device="cpu")
    assert [r["key"] for r in records] == [c.key() for c in configs]
    assert records[0] == first[0]  # finished before: loaded, not re-run
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(configs)
    csv = reports.csv_table(reports.summarise(records), ["coop", "gcscoop"], ["shapes"])
    assert csv.splitlines()[0].startswith("method,dataset,base") and len(csv.splitlines()) == 5


def test_sweep_refuses_a_missing_paper_dataset_before_any_job(tmp_path, monkeypatch):
    monkeypatch.setenv("GCSCOOP_DATA", str(tmp_path / "data"))
    config = TrainConfig(method="coop", dataset="dtd", shots=2, epochs=1)
    with pytest.raises(FileNotFoundError, match=r"prepare dtd` to see what to fetch"):
        experiments.sweep([config], tmp_path / "results", "local", device="cpu")
    assert not (tmp_path / "results" / "submitit").exists()


def test_a_real_size_clip_on_a_cpu_is_warned_about():
    assert "use a GPU runtime" in experiments.cpu_warning("ViT-B-16", "cpu")
    assert experiments.cpu_warning("tiny", "cpu") is None
    assert experiments.cpu_warning("ViT-B-16", "cuda") is None


def test_unknown_executor():
    with pytest.raises(ValueError, match="unknown executor"):
        experiments.sweep([], "unused", executor="kubernetes")


def test_chunked_text_encoding_gives_the_same_features_and_gradients(clip):
    from gcscoop_lib.prompts import PromptedClip

    names = data.SHAPE_CLASSES + data.TEXTURE_CLASSES
    whole = PromptedClip(clip, PromptLearner(clip, names), text_chunk=0)
    chunked = PromptedClip(clip, PromptLearner(clip, names), text_chunk=3)
    features = torch.randn(8, clip.model.text_projection.shape[1])
    labels = torch.arange(8)
    grads = []
    for model in (whole, chunked):
        loss = torch.nn.functional.cross_entropy(model.logits(features), labels)
        grads.append(torch.autograd.grad(loss, model.params)[0])
    assert torch.allclose(whole.text_features(), chunked.text_features(), atol=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)   # gradients are O(1) at logit scale 100


@pytest.mark.parametrize("device,hip,capability,expected", [
    ("cuda", None, (8, 0), torch.bfloat16),     # A100, L4, H100: bf16 in hardware
    ("cuda:1", None, (9, 0), torch.bfloat16),   # the capability of the device asked for
    ("cuda", None, (7, 5), None),               # T4, Colab's free GPU: bf16 only emulated, so fp32
    ("cuda", "6.2", (9, 4), torch.bfloat16),    # ROCm
    ("cpu", None, (9, 0), None),
    ("mps", None, (9, 0), None)])
def test_precision_follows_the_device(monkeypatch, device, hip, capability, expected):
    from gcscoop_lib import models

    asked = []
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    assert models.autocast_dtype(device) == expected
    assert asked in ([], [torch.device(device)])


def test_prompts_run_in_the_precision_chosen_for_the_device(clip, monkeypatch):
    from gcscoop_lib import models
    from gcscoop_lib.prompts import PromptedClip

    model = PromptedClip(clip, PromptLearner(clip, NAMES))
    fp32 = model.text_features()
    monkeypatch.setattr(models, "autocast_dtype", lambda device: torch.bfloat16)  # as on a GPU with bf16
    bf16 = model.text_features()
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.05)


def test_profiles(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gcscoop_lib tune"):
        experiments.open_profile("tiny", tmp_path)
    (tmp_path / "tuning.json").write_text(json.dumps({"recipe": {"lr": 0.01}, "hparams": {}}))
    tiny = experiments.open_profile("tiny", tmp_path)
    assert tiny["settings"]["model"] == "tiny" and tiny["datasets"] == data.dataset_names()
    paper = experiments.open_profile("paper", tmp_path, ["dtd", "eurosat"])
    assert paper["settings"] == {"model": "ViT-B-16", "pretrained": "openai"}
    assert paper["results"] == tmp_path / "paper" and paper["tuning"]["recipe"]["batch_size"] == 128
    with pytest.raises(ValueError, match="unknown profile"):
        experiments.open_profile("huge", tmp_path)
    with pytest.raises(ValueError, match="unknown paper dataset"):
        experiments.open_profile("paper", tmp_path, ["cifar10"])


# ----------------------------------------------------------------------------- records tied to the code
def test_new_classes_are_scored_with_their_own_prompts(clip, task):
    """At the hand-written context the prompted model *is* zero-shot CLIP, on base and on new classes."""
    from gcscoop_lib.training import build_model

    model = build_model(clip, TrainConfig(dataset="shapes"), task.base_names)
    prompted, zero_shot = evaluation.evaluate_prompt(model, task), evaluation.evaluate_zero_shot(clip, task)
    for half in ("base", "new"):
        assert prompted[half] == pytest.approx(zero_shot[half], abs=0.5)
    assert prompted["H"] == pytest.approx(evaluation.harmonic_mean(prompted["base"], prompted["new"]))


def test_a_changed_update_rule_recomputes_only_its_own_records(tmp_path, monkeypatch):
    common = dict(dataset="shapes", shots=2, epochs=2, batch_size=4)
    runner = experiments.Runner(tmp_path, device="cpu")
    kg, coop = TrainConfig(method="kgcoop", **common), TrainConfig(method="coop", **common)
    first_kg, first_coop = runner.run(kg), runner.run(coop)

    def flipped(model, batch, hp):
        text = model.text_features()
        ce = torch.nn.functional.cross_entropy(model.logits(batch.features, text), batch.labels)
        knowledge = 1 - torch.nn.functional.cosine_similarity(text, model.zs_text, dim=-1).mean()
        return methods.Step(ce, methods.flat_grad(ce - hp.lam * knowledge, model.params))

    monkeypatch.setitem(methods.METHODS, "kgcoop", dataclasses.replace(methods.METHODS["kgcoop"], update=flipped))
    fresh = experiments.Runner(tmp_path, device="cpu")
    assert fresh.run(coop) == first_coop                       # untouched code: loaded, not re-run
    again = fresh.run(kg)
    assert again["stamp"]["code"] != first_kg["stamp"]["code"]  # re-run under the new rule
    assert len(records.read_records(tmp_path / "runs.jsonl")) == 3
    assert fresh.prune() == 1 and len(records.read_records(tmp_path / "runs.jsonl")) == 2


def test_fingerprints_ignore_comments_and_docstrings_but_not_code():
    def rule(x):
        """One docstring."""
        return x + 1  # a comment

    def same(x):
        # another comment
        return x + 1

    def other(x):
        return x - 1

    for f in (rule, same, other):
        f.__module__ = "gcscoop_lib.fixture"
    assert records.code_fingerprint(rule) != records.code_fingerprint(other)
    assert records._syntax(rule).replace("rule", "same") == records._syntax(same)


def test_knob_choice_prefers_the_default_within_noise():
    trials = [{"rho": 0.05, "H": 75.0, "H_se": 0.3}, {"rho": 0.2, "H": 75.5, "H_se": 0.3},
              {"rho": 0.5, "H": 75.4, "H_se": 0.3}]
    assert experiments.choose_knob(trials, "rho", 0.1) == 0.2      # 0.05 is outside the best's error bar
    assert experiments.choose_knob(trials, "rho", 0.5) == 0.5
    trials[1]["H_se"] = 0.6
    assert experiments.choose_knob(trials, "rho", 0.05) == 0.05


def test_extend_grid_steps_beyond_the_edge_at_its_own_ratio():
    assert experiments.extend_grid([2.0, 4.0, 8.0, 16.0], 16.0) == 32.0
    assert experiments.extend_grid([0.25, 0.5, 1.0, 2.0], 0.25) == 0.125
    assert experiments.extend_grid([0.02, 0.05, 0.2, 0.5], 0.2) is None


def test_tune_extends_a_grid_whose_choice_sits_on_its_edge(monkeypatch):
    """Validation H that keeps rising with KgCoOp's lambda: tune must look beyond 16, at most twice."""
    def scores(runner, configs):
        c = configs[0]
        lam = c.hparams.get("lam", 0.0) if c.method == "kgcoop" else 0.0
        rise = math.log2(lam) if lam else 0.0
        return {"base": 70.0 + (c.lr == 0.01), "new": 70.0, "H": 70.0 + rise, "H_se": 0.01}

    monkeypatch.setattr(experiments, "validation_scores", scores)
    tuning = experiments.tune(["fashion"], runner=None, seeds=(1,), log=lambda line: None)
    tried = [t["lam"] for t in tuning["hparam_trials"]["kgcoop"]]
    assert tried == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert tuning["hparams"]["kgcoop"] == {"lam": 64.0}
    assert tuning["recipe"]["lr"] == 0.01


def test_settings_explicit_beats_environment_beats_default(monkeypatch):
    monkeypatch.delenv("GCSCOOP_TEXT_CHUNK", raising=False)
    assert settings.current().text_chunk == 0
    monkeypatch.setenv("GCSCOOP_TEXT_CHUNK", "8")
    assert settings.pick(None, "text_chunk") == 8 and settings.pick(3, "text_chunk") == 3
    monkeypatch.setenv("GCSCOOP_COMPILE", "yes")
    with pytest.raises(ValueError, match="GCSCOOP_COMPILE must be 0 or 1"):
        settings.current()


def test_stored_split_must_come_from_the_same_images(tmp_path):
    dataset = data.load_dataset("shapes")
    data.few_shot_split(dataset, 4, 1, tmp_path)
    path = tmp_path / "shapes_shot4_seed1.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "pool": "something-else"}))
    with pytest.raises(ValueError, match="delete it to draw the split again"):
        data.few_shot_split(dataset, 4, 1, tmp_path)


def test_per_epoch_share():
    steps = [{"epoch": 0, "conflict": True}, {"epoch": 0, "conflict": False}, {"epoch": 1, "conflict": True}]
    assert diagnostics.per_epoch_share(steps, "conflict") == ([1, 2], [0.5, 1.0])


def test_text_encoder_warns_when_it_cannot_take_the_fast_path(clip):
    class OtherAttention(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    block = clip.model.transformer.resblocks[0]
    original = block.attn
    block.attn = OtherAttention(original)
    try:
        with pytest.warns(UserWarning, match="slower full-context path; results are unchanged"):
            encoder = TextEncoder(clip)
    finally:
        block.attn = original
    assert encoder.reference and isinstance(clip.model.transformer.resblocks[0].attn, torch.nn.MultiheadAttention)


def test_the_lock_satisfies_the_package_ranges():
    """requirements.txt (what CI and the book run) lies inside pyproject's ranges (what Colab installs)."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    root = Path(__file__).parent.parent
    pins = dict(line.split("==") for line in (root / "requirements.txt").read_text().split() if "==" in line)
    for spec in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(spec)
        assert requirement.name in pins, f"{requirement.name} is not in the lock"
        assert requirement.specifier.contains(pins[requirement.name]), f"{spec} excludes the lock's {pins[requirement.name]}"


def test_the_benchmark_copies_a_current_tuning_record_instead_of_running_again(tmp_path, monkeypatch):
    config = TrainConfig(method="coop", dataset="fashion", seed=1).resolved()
    record = {"key": config.key(), "stamp": "s", "config": dataclasses.asdict(config), "H": 1.0}
    records.append_record(tmp_path / "tuning_runs.jsonl", record)
    runner = experiments.Runner(tmp_path, borrow_from=("tuning_runs.jsonl",))
    monkeypatch.setattr(runner, "is_current", lambda r: r["stamp"] == "s")
    monkeypatch.setattr(runner, "clip", lambda c: pytest.fail("ran instead of copying the tuning record"))
    assert runner.run(config) == record
    assert records.read_records(tmp_path / "runs.jsonl") == [record]
    records.rewrite_records(tmp_path / "tuning_runs.jsonl", [dict(record, stamp="old")])
    (tmp_path / "runs.jsonl").unlink()
    stale = experiments.Runner(tmp_path, borrow_from=("tuning_runs.jsonl",))
    monkeypatch.setattr(stale, "is_current", lambda r: r["stamp"] == "s")
    monkeypatch.setattr(stale, "stamp", lambda c: "s")
    monkeypatch.setattr(stale, "clip", lambda c: (_ for _ in ()).throw(RuntimeError("would run")))
    with pytest.raises(RuntimeError, match="would run"):
        stale.run(config)


def test_identical_values_have_exactly_zero_spread():
    assert reports.mean_std([58.5, 58.5, 58.5]) == (58.5, 0.0)
    assert reports.mean_pm_std(*reports.mean_std([1 / 3] * 3)) == "0.3"


def test_knob_choice_breaks_a_ratio_tie_towards_the_smaller_value():
    trials = [{"lam": 4.0, "H": 74.1, "H_se": 1.1}, {"lam": 16.0, "H": 74.7, "H_se": 0.8}]
    assert experiments.choose_knob(trials, "lam", 8.0) == 4.0


def test_ranking_shows_ties_at_the_printed_precision():
    assert reports.ranking({"zeroshot": 71.70, "coop": 71.66, "kgcoop": 77.0}) == \
        "KgCoOp 77.0 > Zero-shot CLIP 71.7 ≈ CoOp 71.7"


def test_metric_table_has_a_row_per_method_and_a_column_per_task():
    table = {"zeroshot": {d: {"new": (70.0, 0.0)} for d in ("a", "b", "average")},
             "coop": {"a": {"new": (60.0, 1.25)}, "average": {"new": (61.0, 0.5)}}}
    lines = reports.metric_table(table, ["zeroshot", "coop", "sam"], ["a", "b"], "new").splitlines()
    assert lines[0] == "| method | a | b | average |"
    assert lines[2:] == ["| Zero-shot CLIP | 70.0 | 70.0 | 70.0 |", "| CoOp | 60.0 ± 1.2 | – | 61.0 ± 0.5 |"]


def test_glued_numbers_are_rounded_and_other_values_kept(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.update({name: value}))
    reports.glue_values(h=np.float64(75.4567), n=np.int64(4), word="GCSCoOp")
    reports.glue_values(digits=2, loss=0.04999)
    assert glued == {"h": 75.5, "n": 4, "word": "GCSCoOp", "loss": 0.05}
    assert type(glued["h"]) is float and type(glued["n"]) is int


def test_gluing_without_myst_nb_does_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)   # as in Colab, where myst-nb is not installed
    reports.glue_values(h=75.4)


def test_changes_from_zero_shot_are_differences_of_the_averages():
    table = {"zeroshot": {"average": {"base": (70.0, 0.0), "new": (72.0, 0.0), "H": (71.0, 0.0)}},
             "coop": {"average": {"base": (81.0, 1.0), "new": (65.5, 1.0), "H": (72.5, 0.2)}}}
    assert reports.changes_from(table, ["zeroshot", "coop"]) == {"coop": {"base": 11.0, "new": -6.5, "H": 1.5}}
    assert reports.changes_table(table, ["zeroshot", "coop"]).splitlines()[-1] == "| CoOp | +11.0 | -6.5 | +1.5 |"
