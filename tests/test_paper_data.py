"""The papers' dataset layouts, CoOp's and torchvision's, on small generated fixtures (no download,
no real data)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import torchvision_layouts as tvl
from gcscoop_lib import datasets, paper_data
from gcscoop_lib.paper_data import loading
from gcscoop_lib.tasks import prepare_task
from gcscoop_lib.training import TrainConfig, train

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


def test_class_folders_without_split_file_get_a_deterministic_split(tmp_path, fresh_warnings):
    class_folder_fixture(tmp_path)
    with pytest.warns(UserWarning, match="not comparable with the papers' tables"):
        a = paper_data.load("eurosat", size=32, root=tmp_path)
    b = paper_data.load("eurosat", size=32, root=tmp_path)
    assert [p.name for p in a.test.paths] == [p.name for p in b.test.paths]
    assert (len(a.train), len(a.val), len(a.test)) == (20, 8, 12)
    # CoOp's readable EuroSAT names (its datasets/eurosat.py), whichever layout the folders come from
    assert a.classnames == ["Annual Crop Land", "Forest", "Highway or Road", "River"] and "deterministic" in a.source
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


def test_the_same_calls_train_on_a_paper_layout(clip, tmp_path, monkeypatch, fresh_warnings):
    class_folder_fixture(tmp_path, per_class=16)
    monkeypatch.setenv("GCSCOOP_DATA", str(tmp_path))
    datasets.clear_dataset_cache()
    with pytest.warns(UserWarning, match="eurosat: no CoOp split file"):
        task = prepare_task(clip, "eurosat", shots=4, seed=1, split_dir=tmp_path / "splits")
    assert task.base_names == ["Annual Crop Land", "Forest"] and task.new_names == ["Highway or Road", "River"]
    result = train(TrainConfig(method="gcscoop", dataset="eurosat", shots=4, epochs=2, batch_size=4), clip, task)
    assert len(result.steps) == 4
    datasets.clear_dataset_cache()


# ----------------------------------------------------------------------------- torchvision's layouts

TORCHVISION_LAYOUTS = sorted(tvl.BUILDERS)


@pytest.fixture
def fresh_warnings(monkeypatch):
    """paper_data warns once per dataset and process; each test starts with none given."""
    monkeypatch.setattr(loading, "_WARNED", set())


@pytest.fixture
def flowers_md5_skipped(monkeypatch):
    """torchvision's Flowers102 checks the real .mat files' MD5; the tiny fixture only has their layout."""
    import torchvision.datasets.flowers102 as flowers102

    monkeypatch.setattr(flowers102, "check_integrity", lambda path, md5=None: Path(path).is_file())


@pytest.mark.parametrize("name", TORCHVISION_LAYOUTS)
def test_fixture_is_in_torchvisions_own_layout(name, tmp_path, flowers_md5_skipped):
    fixture = tvl.BUILDERS[name](tmp_path)
    opened = tvl.open_with_torchvision(name, tmp_path)
    assert sum(len(d) for d in opened) >= len(fixture.images)
    for dataset in opened:
        image, label = dataset[len(dataset) - 1]
        assert image.size == (8, 8) and 0 <= int(label) < len(fixture.classnames) + 2  # Caltech keeps Faces_easy


@pytest.mark.parametrize("name", TORCHVISION_LAYOUTS)
def test_load_reads_torchvisions_layout(name, tmp_path, fresh_warnings):
    fixture = tvl.BUILDERS[name](tmp_path / "torchvision")
    official_split = paper_data.REGISTRY[name].split_file is None  # FGVC-Aircraft: its lists are the papers'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = paper_data.load(name, size=16, root=tmp_path)
    assert splits.classnames == fixture.classnames
    parts = [set(s.paths) for s in (splits.train, splits.val, splits.test)]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(fixture.images)
    for s in (splits.train, splits.val, splits.test):
        assert [fixture.images[p] for p in s.paths] == [splits.classnames[l] for l in s.labels]
    if fixture.test_images is not None:
        assert parts[2] == fixture.test_images
    assert splits.notes["layout"] == "torchvision" and splits.source.endswith("torchvision's layout")
    assert splits.test[0:2].shape == (2, 16, 16, 3)
    if official_split:
        assert "variant files" in splits.source and not caught
    else:
        assert "deterministic" in splits.source and not splits.notes["paper_split"]
        assert len(caught) == 1 and "\n" not in str(caught[0].message)
        assert "not comparable with the papers' tables" in str(caught[0].message)


def test_the_fallback_split_is_deterministic_and_warns_once(tmp_path, fresh_warnings):
    tvl.pets(tmp_path / "torchvision")
    with pytest.warns(UserWarning, match="oxford_pets: no CoOp split file at .*split_zhou_OxfordPets.json"):
        a = paper_data.load("oxford_pets", size=16, root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b = paper_data.load("oxford_pets", size=16, root=tmp_path)
    assert a.train.paths == b.train.paths and a.val.paths == b.val.paths
    assert (len(a.train), len(a.val), len(a.test)) == (16, 4, 12)  # CoOp's rule: val is 20 % of trainval per class


def write_split_file(path, fixture, per_class=(2, 1)):
    """CoOp's split file for a fixture: per class, the first images train, the next val, the rest test."""
    entries, seen = {"train": [], "val": [], "test": []}, {}
    for image, name in sorted(fixture.images.items()):
        label = fixture.classnames.index(name)
        k = seen[label] = seen.get(label, -1) + 1
        split = "train" if k < per_class[0] else "val" if k < sum(per_class) else "test"
        entries[split].append([image.relative_to(fixture.image_root).as_posix(), label, name.replace(" ", "_")])
    path.write_text(json.dumps(entries))
    return entries


@pytest.mark.parametrize("name", ["oxford_pets", "dtd", "eurosat", "fgvc_aircraft"])
def test_coops_split_file_beside_the_torchvision_folders(name, tmp_path, fresh_warnings):
    fixture = tvl.BUILDERS[name](tmp_path / "torchvision")
    spec = paper_data.REGISTRY[name]
    if spec.split_file is None:
        assert paper_data.torchvision_split_file(name, tmp_path) is None
        return
    path = paper_data.torchvision_split_file(name, tmp_path)
    assert path == tmp_path / "torchvision" / spec.split_file
    entries = write_split_file(path, fixture)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splits = paper_data.load(name, size=16, root=tmp_path)
    assert splits.source == f"CoOp split file {spec.split_file}, torchvision's layout" and splits.notes["paper_split"]
    assert splits.classnames == fixture.classnames
    assert len(splits.train) == len(entries["train"]) and all(p in fixture.images for p in splits.test.paths)


def test_coops_layout_wins_over_torchvisions(tmp_path):
    split_file_fixture(tmp_path)
    tvl.pets(tmp_path / "torchvision")
    assert paper_data.find_layout("oxford_pets", tmp_path) == "coop"
    assert paper_data.load("oxford_pets", size=16, root=tmp_path).notes["layout"] == "coop"


def test_flower_names_come_from_coops_file_when_present(tmp_path, fresh_warnings):
    tvl.flowers(tmp_path / "torchvision")
    names = {str(i): f"flower {i}" for i in range(1, 103)}
    (tmp_path / "torchvision" / "flowers-102" / "cat_to_name.json").write_text(json.dumps(names))
    with pytest.warns(UserWarning):
        splits = paper_data.load("oxford_flowers", size=16, root=tmp_path)
    assert splits.classnames == ["flower 1", "flower 2", "flower 3"]


def test_prepare_says_which_layout_and_split_it_found(tmp_path):
    tvl.pets(tmp_path / "torchvision")
    tvl.aircraft(tmp_path / "torchvision")
    split_file_fixture(tmp_path)
    tvl.dtd(tmp_path / "torchvision")
    (tmp_path / "torchvision" / "eurosat").mkdir()
    lines = dict(zip(["oxford_pets", "fgvc_aircraft", "dtd", "eurosat", "imagenet", "stanford_cars", "sun397"],
                     paper_data.prepare(["oxford_pets", "fgvc_aircraft", "dtd", "eurosat", "imagenet", "stanford_cars",
                                         "sun397"], root=tmp_path)))
    assert "CoOp's layout" in lines["oxford_pets"] and "CoOp split file" in lines["oxford_pets"]
    assert lines["fgvc_aircraft"].startswith("fgvc_aircraft: ready, 4 classes")
    assert "torchvision's layout" in lines["fgvc_aircraft"] and "no CoOp split file" not in lines["fgvc_aircraft"]
    assert "torchvision's layout" in lines["dtd"]
    assert f"no CoOp split file: put split_zhou_DescribableTextures.json at {tmp_path / 'torchvision'}" in lines["dtd"]
    assert "prepare --download eurosat" in lines["eurosat"] and "is incomplete" in lines["eurosat"]
    assert lines["imagenet"].endswith("torchvision cannot fetch it.")
    assert "download is broken" in lines["stanford_cars"] and "--download --large sun397" in lines["sun397"]
    assert all("\n" not in line for line in lines.values())


# ----------------------------------------------------------------------------- download

@pytest.mark.parametrize("name", ["imagenet", "ucf101", "stanford_cars", "sun397"])
def test_download_refuses_what_torchvision_cannot_fetch(name, tmp_path):
    with pytest.raises(ValueError) as error:
        paper_data.download(name, root=tmp_path)
    message = str(error.value)
    assert "\n" not in message and paper_data.REGISTRY[name].instructions in message
    assert ("large=True" in message) == (name == "sun397")
    assert not (tmp_path / "torchvision").exists()


class FakeDownloader:
    """Stands in for torchvision.datasets.OxfordIIITPet: writes the pets fixture (and the archives
    torchvision leaves) where torchvision would, with no network."""

    calls = []
    fail = False

    def __init__(self, root, download=False):
        FakeDownloader.calls.append((root, download))
        root = Path(root)
        (root / "oxford-iiit-pet").mkdir()
        (root / "oxford-iiit-pet" / "images.tar.gz").write_bytes(b"archive")
        tvl.write_image(root / "oxford-iiit-pet" / "images" / "Abyssinian_1.jpg", 0)
        if FakeDownloader.fail:
            raise KeyboardInterrupt  # the user stops it halfway through
        tvl.pets(root)


@pytest.fixture
def fake_pets_download(monkeypatch):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", FakeDownloader)
    monkeypatch.setattr(FakeDownloader, "calls", [])
    monkeypatch.setattr(FakeDownloader, "fail", False)
    return FakeDownloader


def test_download_calls_torchvision_and_moves_the_result_into_place(tmp_path, fake_pets_download, fresh_warnings):
    lines = paper_data.download("oxford_pets", root=tmp_path)
    target = tmp_path / "torchvision" / "oxford-iiit-pet"
    assert fake_pets_download.calls == [(str(tmp_path / "torchvision" / ".downloading-oxford_pets"), True)]
    assert lines[0] == f"oxford_pets: downloaded with torchvision.datasets.OxfordIIITPet into {target}"
    assert "put split_zhou_OxfordPets.json" in lines[1]
    assert sorted(p.name for p in (tmp_path / "torchvision").iterdir()) == ["oxford-iiit-pet"]  # staging gone
    assert not (target / "images.tar.gz").exists()
    assert paper_data.find_layout("oxford_pets", tmp_path) == "torchvision"
    again = paper_data.download("oxford_pets", root=tmp_path)
    assert again[0] == "oxford_pets: already on disk in torchvision's layout; nothing downloaded"
    assert len(fake_pets_download.calls) == 1


def test_an_offline_download_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def offline(root, download=False):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torchvision.datasets, "OxfordIIITPet", offline)
    with pytest.raises(RuntimeError) as error:
        paper_data.download("oxford_pets", root=tmp_path)
    assert "\n" not in str(error.value) and "this needs internet" in str(error.value)
    assert list((tmp_path / "torchvision").iterdir()) == []


def test_an_interrupted_download_leaves_nothing_half_written(tmp_path, fake_pets_download):
    fake_pets_download.fail = True
    with pytest.raises(KeyboardInterrupt):
        paper_data.download("oxford_pets", root=tmp_path)
    assert list((tmp_path / "torchvision").iterdir()) == []
    assert paper_data.find_layout("oxford_pets", tmp_path) is None
    (tmp_path / "torchvision" / "oxford-iiit-pet" / "images").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="is incomplete .*remove it"):
        paper_data.download("oxford_pets", root=tmp_path)


def test_load_downloads_a_missing_dataset_only_where_allowed(tmp_path, fake_pets_download, fresh_warnings,
                                                            monkeypatch, capsys):
    """The paper profile in Colab (downloads allowed by default): a missing dataset that torchvision
    fetches is downloaded by the first load; elsewhere load says what to run."""
    monkeypatch.setenv("GCSCOOP_ALLOW_DOWNLOAD", "0")
    with pytest.raises(FileNotFoundError, match="prepare --download oxford_pets"):
        paper_data.load("oxford_pets", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="fetch"):   # too big to fetch unasked, even where allowed
        monkeypatch.setenv("GCSCOOP_ALLOW_DOWNLOAD", "1")
        paper_data.load("sun397", root=tmp_path)
    assert fake_pets_download.calls == []
    with pytest.warns(UserWarning, match="no CoOp split file"):
        splits = paper_data.load("oxford_pets", root=tmp_path)
    assert len(fake_pets_download.calls) == 1 and "downloaded with torchvision" in capsys.readouterr().out
    assert splits.classnames == ["abyssinian", "bengal", "american bulldog", "yorkshire terrier"]
    paper_data.load("oxford_pets", root=tmp_path)
    assert len(fake_pets_download.calls) == 1


def test_zero_shot_and_teachers_use_the_dataset_template(clip, tmp_path, monkeypatch):
    """Oxford Pets' hand-written prompt is "a photo of a {}, a type of pet.", as in the papers."""
    from gcscoop_lib import evaluation
    from gcscoop_lib.prompts import zero_shot_weights

    split_file_fixture(tmp_path, per_split=(4, 2, 3))
    monkeypatch.setenv("GCSCOOP_DATA", str(tmp_path))
    datasets.clear_dataset_cache()
    task = prepare_task(clip, "oxford_pets", shots=2, seed=1)
    assert task.template == "a photo of a {}, a type of pet."
    assert evaluation.evaluate_zero_shot(clip, task) == evaluation.evaluate_zero_shot(clip, task, task.template)
    result = train(TrainConfig(method="kgcoop", dataset="oxford_pets", shots=2, epochs=2, batch_size=4), clip, task)
    expected = zero_shot_weights(clip, task.base_names, "a photo of a {}, a type of pet.")
    assert torch.allclose(result.model.zs_text, expected, atol=1e-6)
    assert not torch.allclose(result.model.zs_text, zero_shot_weights(clip, task.base_names), atol=1e-3)
    datasets.clear_dataset_cache()
