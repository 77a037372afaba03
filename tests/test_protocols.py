import types

import numpy as np
import pytest
import torch

from gcscoop_lib import protocols, reports, training, world
from gcscoop_lib.datasets import load_dataset
from gcscoop_lib.imagesets import fingerprint
from gcscoop_lib.runs import Runner
from gcscoop_lib.tasks import prepare_task

TUNED = {"recipe": {"lr": 0.01, "epochs": 100, "batch_size": 32}, "knobs": {"sam": {"rho": 0.05}}}


def test_the_epoch_rule_follows_coop_and_refuses_zero_shots():
    assert [protocols.epochs_for(k, 100) for k in (1, 2, 4, 8, 16)] == [25, 25, 50, 50, 100]
    assert protocols.epochs_for(1, 4) == 2          # never below the warm-up epoch and one more
    with pytest.raises(ValueError, match="shots must be at least 1"):
        protocols.epochs_for(0, 100)


def test_every_prompt_entry_trains_on_all_classes_with_the_shared_recipe_but_cocoop():
    coop = protocols.all_class_config("coop", "digits", 4, 2, TUNED)
    assert (coop.partition, coop.shots, coop.seed, coop.epochs, coop.lr, coop.views) == ("all", 4, 2, 50, 0.01, 1)
    for entry, crop in (("coop_aug", "square"), ("coop_aug_papers", "papers")):
        augmented = protocols.all_class_config(entry, "digits", 4, 2, TUNED)
        assert (augmented.method, augmented.views, augmented.crop) == ("coop", protocols.AUGMENTED_VIEWS, crop)
    assert protocols.all_class_config("sam", "digits", 16, 1, TUNED).knobs == {"rho": 0.05}
    cocoop = protocols.all_class_config("cocoop", "digits", 16, 1, TUNED)
    assert (cocoop.batch_size, cocoop.epochs, cocoop.lr) == (1, 10, 0.002)
    with pytest.raises(ValueError, match="not a prompt entry"):
        protocols.all_class_config("linear_probe", "digits", 16, 1, TUNED)


def test_one_shot_with_fewer_images_than_a_batch_trains_one_step_per_epoch_on_every_class(clip, tmp_path):
    config = protocols.all_class_config("coop", "shapes", 1, 1, TUNED)
    task = prepare_task(clip, "shapes", 1, 1, split_dir=tmp_path, partition="all")
    assert sorted(task.train_labels.tolist()) == list(range(10)) and not task.new_names
    result = training.train(config, clip, task)
    assert len(result.steps) == config.epochs          # 10 images < batch 32: one batch of all ten
    assert len(result.history) == config.epochs


def test_style_shifted_test_sets_are_deterministic_and_disjoint_from_training_images():
    own = load_dataset("shapes")
    shifted = world.build_embedded("shapes", "inverted")
    again = world.build_embedded("shapes", "inverted")
    assert np.array_equal(shifted.test.images, again.test.images)
    assert np.array_equal(shifted.test.labels, own.test.labels)       # the same images, restyled
    assert not np.array_equal(shifted.test.images, own.test.images)
    train = {fingerprint(image) for image in shifted.train.images} | {fingerprint(i) for i in own.train.images}
    assert not train & {fingerprint(image) for image in shifted.test.images}
    assert np.array_equal(world.build_embedded("shapes", own.style).test.images, own.test.images)


def test_the_target_subset_is_the_first_images_of_each_class():
    subset = protocols.target_set("digits", per_class=3)
    data = load_dataset("digits").test
    assert np.bincount(subset.labels).tolist() == [3] * 10
    first = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:3] for c in range(10)]))
    assert np.array_equal(subset.images, data.images[first])


class _Pixels:
    """A stand-in CLIP whose image feature reads only the pixels inside a square."""

    image_size, mean, std, device = 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu")
    logit_scale = torch.tensor(1.0)

    def __init__(self, square):
        self.weight = torch.zeros(3, 32, 32)
        self.weight[:, square, square] = 1.0
        self.model = types.SimpleNamespace(encode_image=self.encode)

    def encode(self, x):
        seen = (x * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([seen, torch.ones_like(seen)], dim=1)


def test_the_saliency_share_is_known_on_a_synthetic_image():
    square = slice(8, 24)
    clip = _Pixels(square)
    images = (np.random.default_rng(0).random((2, 32, 32, 3)) * 255).astype(np.uint8)
    maps = protocols.saliency(clip, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), images)
    inside = np.zeros((2, 32, 32), dtype=bool)
    inside[:, square, square] = True
    assert (maps[~torch.from_numpy(inside)] == 0).all() and (maps[torch.from_numpy(inside)] > 0).all()
    assert protocols.share_inside(maps, inside).tolist() == pytest.approx([1.0, 1.0])
    assert protocols.share_inside(maps, ~inside).tolist() == pytest.approx([0.0, 0.0])
    half = inside.copy()
    half[:, 8:16, :] = False
    uniform = torch.ones(2, 32, 32)
    assert protocols.share_inside(uniform, half).tolist() == pytest.approx([half[0].mean()] * 2)


def test_saliency_needs_a_task_with_objects():
    with pytest.raises(ValueError, match="textures has no foreground masks"):
        protocols.saliency_images("textures", ["checkerboard"])
    images = protocols.saliency_images("shapes", ["star", "circle"], per_class=2)
    assert sorted(images.labels.tolist()) == [0, 0, 1, 1] and images.classnames == ["star", "circle"]
    assert images.masks.shape == (4, 32, 32)


def test_the_linear_probe_chooses_its_weight_on_validation():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3

    def draw(n):
        labels = np.repeat(np.arange(3), n)
        return torch.tensor(centres[labels] + rng.normal(size=(len(labels), 8)), dtype=torch.float32), \
            torch.from_numpy(labels)

    train, val, test = draw(4), draw(20), draw(50)
    task = types.SimpleNamespace(train_features=train[0][None], train_labels=train[1], val={"base": val},
                                 test={"base": test})
    probe = protocols.linear_probe(task)
    assert probe["C"] in protocols.PROBE_C and probe["acc"] > 90


def test_bad_input_is_one_line_each():
    runner = types.SimpleNamespace()
    with pytest.raises(ValueError, match="unknown style 'sepia'"):
        protocols.domains(runner, TUNED, styles=["sepia"])
    with pytest.raises(ValueError, match="unknown task 'imagenet'"):
        protocols.domains(runner, TUNED, datasets_=["imagenet"])
    with pytest.raises(ValueError, match="source and target are both digits"):
        protocols.transfer(runner, TUNED, sources=["digits"], targets=["digits"])
    with pytest.raises(ValueError, match="unknown protocol 'zero'"):
        protocols.results("zero", runner, TUNED)


def _counting(calls):
    def fake(runner, tuned, datasets_=None):
        calls.append(datasets_)
        return [{"method": "coop", "dataset": d, "seed": 1, "shots": 1, "acc": 50.0} for d in datasets_ or ["x"]]
    return fake


def test_stored_rows_are_reused_while_current_and_computed_again_when_not(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(protocols.PROTOCOLS, "fewshot", _counting(calls))
    runner = types.SimpleNamespace(dir=tmp_path, book=tmp_path / "book")
    first = protocols.results("fewshot", runner, TUNED, datasets_=["digits"])
    assert protocols.results("fewshot", runner, TUNED, datasets_=["digits"]) == first and len(calls) == 1
    protocols.results("fewshot", runner, TUNED, datasets_=["shapes"])          # other arguments
    protocols.results("fewshot", runner, {**TUNED, "knobs": {}}, datasets_=["shapes"])   # another tuning
    assert len(calls) == 3
    assert protocols.prune(tmp_path, {**TUNED, "knobs": {}}) == [] and protocols.prune(tmp_path, TUNED) == ["fewshot"]
    (tmp_path / protocols.STORE).write_text("{not json")
    with pytest.raises(ValueError, match="protocols.json, line 1, is not valid JSON"):
        protocols.results("fewshot", runner, TUNED)


def test_a_book_store_is_read_but_never_written(tmp_path, monkeypatch):
    monkeypatch.setitem(protocols.PROTOCOLS, "fewshot", _counting([]))
    book, mine = tmp_path / "book", tmp_path / "mine"
    protocols.results("fewshot", types.SimpleNamespace(dir=book, book=book), TUNED)
    before = (book / protocols.STORE).read_text()
    protocols.results("fewshot", types.SimpleNamespace(dir=mine, book=book), TUNED)
    assert not (mine / protocols.STORE).exists() and (book / protocols.STORE).read_text() == before


def test_paired_differences_and_tables_read_the_rows():
    rows = [{"method": m, "dataset": d, "seed": s, "shots": 1, "acc": base + (2.0 if m == "a" else 0.0) + s}
            for m in ("a", "b") for d, base in (("x", 50.0), ("y", 60.0)) for s in (1, 2)]
    rows[0]["acc"] -= 4.0      # a behind b on x, seed 1
    diff = reports.paired_difference(rows, "a", "b", ("dataset", "seed", "shots"))
    assert diff["mean"] == pytest.approx(1.0) and (diff["ahead"], diff["behind"], diff["cells"]) == (3, 1, 4)
    assert diff["std"] == pytest.approx(np.std([0.0, 2.0], ddof=1))
    with pytest.raises(ValueError, match="not told apart by dataset"):
        reports.paired_difference(rows, "a", "b", ("dataset",))
    table = reports.few_shot_table(rows, ["a", "b"], str.upper)
    assert "| A | 57.5 ± 2.1 |" in table and "| B | 56.5 ± 0.7 |" in table


def test_transfer_rows_keep_zero_shot_once_per_target(clip, monkeypatch):
    class Fake:
        def __init__(self, *args):
            pass

        def accuracy(self, entry, source, images, classnames, template):
            return 10.0 if source == "none" else 20.0

    monkeypatch.setattr(protocols, "Classifiers", Fake)
    monkeypatch.setattr(protocols, "target_set", lambda name: None)
    rows = protocols.transfer(types.SimpleNamespace(run_many=lambda configs: None), TUNED,
                              sources=["digits", "shapes"], targets=["digits", "shapes"],
                              seeds=[1], entries=("zeroshot", "coop"))
    assert sorted((r["method"], r["source"], r["target"]) for r in rows) == [
        ("coop", "digits", "digits"), ("coop", "digits", "shapes"), ("coop", "shapes", "digits"),
        ("coop", "shapes", "shapes"), ("zeroshot", "none", "digits"), ("zeroshot", "none", "shapes")]
    table = reports.transfer_table(rows, ["zeroshot", "coop"], str)
    assert "| zeroshot | 10.0 | 10.0 |" in table and "| coop | 20.0 | 20.0 |" in table


def test_the_command_line_refuses_another_clip(capsys):
    from gcscoop_lib import cli

    with pytest.raises(SystemExit):
        cli.main(["protocol", "fewshot", "--model", "ViT-B-16"])
    assert "embedded world" in capsys.readouterr().err
    assert protocols.arguments("transfer", ["digits"], [1]) == {"sources": ["digits"], "targets": ["digits"],
                                                                 "seeds": [1]}
    assert protocols.arguments("fewshot") == {}


def test_a_runs_curves_are_recorded_while_it_trains_and_end_at_its_record(tmp_path):
    tuned = {"recipe": {"lr": 0.01, "epochs": 4, "batch_size": 8}, "knobs": {}}
    runner = Runner(tmp_path, device="cpu")
    config = protocols.base_to_new_config("coop", "shapes", 1, tuned)
    curve = protocols.epoch_curve(runner, tuned, "coop", "shapes", 1)
    assert all(len(v) == 4 for k, v in curve.items() if k.startswith(("val", "test")))
    record = runner.run(config)     # trained once, tracked: its record is the curves' last epoch
    assert runner.trained == [config.resolve().key]
    assert (curve["test_base"][-1], curve["test_new"][-1]) == pytest.approx((record["base"], record["new"]), abs=1e-4)
    assert (curve["val_base"][-1], curve["val_new"][-1]) == pytest.approx((record["val"]["base"], record["val"]["new"]),
                                                                           abs=1e-4)
    assert curve["val_base"] != curve["test_base"]
    assert protocols.epoch_curve(Runner(tmp_path, device="cpu"), tuned, "coop", "shapes", 1) == curve   # loaded


def test_stopping_rules_pick_the_first_best_validation_epoch():
    curve = {"method": "coop", "dataset": "x", "seed": 1, "val_base": [50.0, 80.0, 90.0, 90.0],
             "val_new": [70.0, 80.0, 60.0, 60.0], "test_base": [51.0, 79.0, 88.0, 91.0],
             "test_new": [69.0, 78.0, 61.0, 59.0]}
    assert [protocols.stopped_at(curve, rule) for rule in protocols.STOPPING_RULES] == [3, 1, 2]
    (record,) = protocols.stopped([curve], "val_H")
    assert (record["epoch"], record["base"], record["new"]) == (2, 79.0, 78.0)
    with pytest.raises(ValueError, match="unknown stopping rule 'best'"):
        protocols.stopped_at(curve, "best")
    other = dict(curve, method="sam", test_new=[69.0, 80.0, 63.0, 61.0])
    d = protocols.stopping_difference([curve, dict(curve, seed=2), other, dict(other, seed=2)],
                                      ("sam", "val_H"), ("coop", "val_H"), metric="new")
    assert (d["mean"], d["ahead"], d["seeds"]) == (pytest.approx(2.0), 2, 2)


def test_processes_storing_at_once_lose_no_entry(tmp_path):
    import multiprocessing

    path = tmp_path / "store.json"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(protocols.store_entry, [(path, f"entry {i}", {"rows": [i] * 20000}) for i in range(48)])
    assert protocols.read_store(path) == {f"entry {i}": {"rows": [i] * 20000} for i in range(48)}


def test_the_runs_trained_ahead_in_parallel_are_every_run_the_few_shot_protocol_trains(monkeypatch):
    tuned = {"recipe": {"lr": 0.01, "epochs": 100, "batch_size": 32}, "knobs": {"sam": {"rho": 0.05}}}
    asked = []

    class Asking:   # a runner that notes the runs it is asked to train, then stops the protocol
        def run_many(self, configs):
            asked.extend(c.resolve().key for c in configs)
            raise StopIteration

    with pytest.raises(StopIteration):
        protocols.few_shot(Asking(), tuned)
    ahead = [c.resolve().key for c in protocols.protocol_configs(tuned)]
    assert sorted(ahead) == sorted(asked) and len(set(ahead)) == len(ahead)
