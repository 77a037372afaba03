"""The papers' dataset layouts, on small generated fixtures (no download, no real data)."""
import json

import numpy as np
import pytest
from PIL import Image

from gcscoop_lib import data, paper_data
from gcscoop_lib.training import TrainConfig, prepare_task, train

CLASSES = ["Annual Crop", "Forest", "Highway", "River"]


def write_image(path, label, i):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(100 * label + i)
    pixels = np.zeros((30, 40, 3), dtype=np.uint8) + np.array([60 * label, 255 - 60 * label, 40 * i % 255], np.uint8)
    pixels = (pixels + rng.integers(0, 30, size=pixels.shape)).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def class_folder_fixture(root, name="eurosat", per_class=10):
    spec = paper_data.REGISTRY[name]
    for label, cls in enumerate(CLASSES):
        for i in range(per_class):
            write_image(root / spec.folder / spec.image_dir / cls.replace(" ", "") / f"{i}.jpg", label, i)


def split_file_fixture(root, per_split=(4, 2, 3)):
    spec = paper_data.REGISTRY["oxford_pets"]
    entries = {}
    for split, n in zip(("train", "val", "test"), per_split):
        entries[split] = []
        for label, cls in enumerate(CLASSES):
            for i in range(n):
                rel = f"{cls.replace(' ', '_')}_{split}_{i}.jpg"
                write_image(root / spec.folder / spec.image_dir / rel, label, i)
                entries[split].append([rel, label, cls.lower().replace(" ", "_")])
    (root / spec.folder / spec.split_file).write_text(json.dumps(entries))


def test_split_file_layout(tmp_path):
    split_file_fixture(tmp_path)
    splits = paper_data.load("oxford_pets", size=32, root=tmp_path)
    assert splits.classnames == ["annual crop", "forest", "highway", "river"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (16, 8, 12)
    assert splits.train[0:3].shape == (3, 32, 32, 3) and splits.train[0:3].dtype == np.uint8


def test_class_folders_without_split_file_get_a_deterministic_split(tmp_path):
    class_folder_fixture(tmp_path)
    a = paper_data.load("eurosat", size=32, root=tmp_path)
    b = paper_data.load("eurosat", size=32, root=tmp_path)
    assert [p.name for p in a.test.paths] == [p.name for p in b.test.paths]
    assert (len(a.train), len(a.val), len(a.test)) == (20, 8, 12)
    assert a.classnames == ["AnnualCrop", "Forest", "Highway", "River"] and "deterministic" in a.source
    assert not set(a.train.paths) & set(a.test.paths)


def test_aircraft_layout(tmp_path):
    folder = tmp_path / "fgvc_aircraft"
    variants = ["707-320", "A300B4", "Cessna 172"]
    (folder / "images").mkdir(parents=True)
    (folder / "variants.txt").write_text("\n".join(variants) + "\n")
    for split in ("train", "val", "test"):
        lines = []
        for label, v in enumerate(variants):
            image_id = f"{split}{label}"
            write_image(folder / "images" / f"{image_id}.jpg", label, 0)
            lines.append(f"{image_id} {v}")
        (folder / f"images_variant_{split}.txt").write_text("\n".join(lines))
    splits = paper_data.load("fgvc_aircraft", size=32, root=tmp_path)
    assert splits.classnames == variants and splits.test.labels.tolist() == [0, 1, 2]


def test_imagenet_layout(tmp_path):
    folder = tmp_path / "imagenet"
    folder.mkdir()
    (folder / "classnames.txt").write_text("n01 tench\nn02 goldfish\n")
    for split in ("train", "val"):
        for label, wnid in enumerate(["n01", "n02"]):
            for i in range(2):
                write_image(folder / "images" / split / wnid / f"{i}.JPEG", label, i)
    splits = paper_data.load("imagenet", size=32, root=tmp_path)
    assert splits.classnames == ["tench", "goldfish"] and len(splits.train) == 4
    assert splits.val.paths == splits.test.paths  # ImageNet's val serves as test, as in CoOp


def test_missing_dataset_says_what_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gcscoop_lib prepare oxford_pets"):
        paper_data.load("oxford_pets", root=tmp_path)
    lines = paper_data.prepare(["oxford_pets", "eurosat"], root=tmp_path)
    assert lines[0].startswith("oxford_pets: missing") and "split_zhou_OxfordPets.json" in lines[0]
    assert "robots.ox.ac.uk" in lines[0]
    class_folder_fixture(tmp_path)
    assert paper_data.prepare(["eurosat"], root=tmp_path)[0].startswith("eurosat: ready, 4 classes")


def test_malformed_split_file(tmp_path):
    split_file_fixture(tmp_path)
    (tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json").write_text(json.dumps({"train": [["a.jpg", 0]]}))
    with pytest.raises(ValueError, match="malformed split file"):
        paper_data.load("oxford_pets", root=tmp_path)


def test_the_same_calls_train_on_a_paper_layout(clip, tmp_path, monkeypatch):
    class_folder_fixture(tmp_path, per_class=16)
    monkeypatch.setenv("GCSCOOP_DATA", str(tmp_path))
    data._DATASET_CACHE.pop(("eurosat", clip.image_size), None)
    task = prepare_task(clip, "eurosat", shots=4, seed=1, split_dir=tmp_path / "splits")
    assert task.base_names == ["AnnualCrop", "Forest"] and task.new_names == ["Highway", "River"]
    result = train(TrainConfig(method="gcscoop", dataset="eurosat", shots=4, epochs=2, batch_size=4), clip, task)
    assert len(result.steps) == 4
    data._DATASET_CACHE.pop(("eurosat", clip.image_size), None)
