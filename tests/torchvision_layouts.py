"""Tiny datasets in torchvision's own on-disk layouts (what `torchvision.datasets.X(root, download=True)`
leaves under `root`), a few 8x8 images per class, for the paper_data tests.

Each builder writes under `tv_root` (the `root` torchvision gets) and returns a Fixture: the class
names paper_data should report (after CoOp's cleaning) and every image it should read with its
class name. `open_with_torchvision` opens the same files with the real torchvision classes
(download=False), which is the check that a layout is torchvision's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Fixture:
    classnames: list[str]
    images: dict = field(default_factory=dict)  # path -> class name, for every image paper_data should read
    test_images: set | None = None              # the official test list, where paper_data keeps it
    image_root: Path | None = None              # where CoOp's split-file paths start


def write_image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def pets(tv_root: Path, trainval=5, test=3) -> Fixture:
    """oxford-iiit-pet/: images/<Breed>_<n>.jpg (cats capitalised, dogs not, as in the archive) and
    annotations/{trainval,test}.txt with '<image id> <class id> <species> <breed id>'."""
    folder = tv_root / "oxford-iiit-pet"
    breeds = [("Abyssinian", 1), ("Bengal", 1), ("american_bulldog", 2), ("yorkshire_terrier", 2)]
    fixture = Fixture(["abyssinian", "bengal", "american bulldog", "yorkshire terrier"], test_images=set(),
                      image_root=folder / "images")
    lines = {"trainval": [], "test": []}
    for label, (breed, species) in enumerate(breeds):
        for i in range(1, trainval + test + 1):
            path = write_image(folder / "images" / f"{breed}_{i}.jpg", 100 * label + i)
            split = "trainval" if i <= trainval else "test"
            lines[split].append(f"{breed}_{i} {label + 1} {species} {label // 2 + 1}")
            fixture.images[path] = fixture.classnames[label]
            if split == "test":
                fixture.test_images.add(path)
    (folder / "annotations").mkdir()
    for split, rows in lines.items():
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return fixture


def dtd(tv_root: Path, per_class=10) -> Fixture:
    """dtd/dtd/: images/<texture>/<texture>_<n>.jpg and labels/{train,val,test}1.txt ('<texture>/<file>')."""
    data = tv_root / "dtd" / "dtd"
    textures = ["banded", "blotchy", "braided"]
    fixture = Fixture(list(textures), image_root=data / "images")
    lines = {"train": [], "val": [], "test": []}
    for label, texture in enumerate(textures):
        for i in range(1, per_class + 1):
            path = write_image(data / "images" / texture / f"{texture}_{i:04d}.jpg", 100 * label + i)
            lines[("train", "val", "test")[i % 3]].append(f"{texture}/{path.name}")
            fixture.images[path] = texture
    (data / "labels").mkdir()
    for split, rows in lines.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
    return fixture


def eurosat(tv_root: Path, per_class=10) -> Fixture:
    """eurosat/2750/<Class>/<Class>_<n>.jpg (the RGB zip's folder)."""
    folders = ["AnnualCrop", "HerbaceousVegetation", "Highway", "SeaLake"]
    fixture = Fixture(["Annual Crop Land", "Herbaceous Vegetation Land", "Highway or Road", "Sea or Lake"],
                      image_root=tv_root / "eurosat" / "2750")
    for label, name in enumerate(folders):
        for i in range(1, per_class + 1):
            path = write_image(fixture.image_root / name / f"{name}_{i}.jpg", 100 * label + i)
            fixture.images[path] = fixture.classnames[label]
    return fixture


def food101(tv_root: Path, per_class=10) -> Fixture:
    """food-101/: images/<dish>/<id>.jpg and meta/{train,test}.json ({dish: ["<dish>/<id>", ...]})."""
    folder = tv_root / "food-101"
    dishes = ["apple_pie", "baby_back_ribs", "beignets"]
    fixture = Fixture(["apple pie", "baby back ribs", "beignets"], image_root=folder / "images")
    meta = {"train": {}, "test": {}}
    for label, dish in enumerate(dishes):
        for i in range(per_class):
            image_id = 1000 + 17 * i
            path = write_image(folder / "images" / dish / f"{image_id}.jpg", 100 * label + i)
            meta["train" if i % 4 else "test"].setdefault(dish, []).append(f"{dish}/{image_id}")
            fixture.images[path] = fixture.classnames[label]
    (folder / "meta").mkdir()
    (folder / "meta" / "classes.txt").write_text("\n".join(dishes) + "\n")
    for split, entries in meta.items():
        (folder / "meta" / f"{split}.json").write_text(json.dumps(entries))
    return fixture


def flowers(tv_root: Path, per_class=10) -> Fixture:
    """flowers-102/: jpg/image_00001.jpg..., imagelabels.mat (labels 1..102 in file order) and setid.mat."""
    from scipy.io import savemat
    from torchvision.datasets import Flowers102

    folder = tv_root / "flowers-102"
    n_classes = 3
    fixture = Fixture(list(Flowers102.classes[:n_classes]), image_root=folder / "jpg")
    labels = [i % n_classes + 1 for i in range(per_class * n_classes)]  # classes interleaved, as in the archive
    for i, label in enumerate(labels, 1):
        path = write_image(folder / "jpg" / f"image_{i:05d}.jpg", i)
        fixture.images[path] = fixture.classnames[label - 1]
    ids = np.arange(1, len(labels) + 1)
    savemat(folder / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(folder / "setid.mat", {"trnid": ids[0::3][None], "valid": ids[1::3][None], "tstid": ids[2::3][None]})
    return fixture


def aircraft(tv_root: Path) -> Fixture:
    """fgvc-aircraft-2013b/data/: images/<id>.jpg, variants.txt, images_variant_{train,val,trainval,test}.txt."""
    data = tv_root / "fgvc-aircraft-2013b" / "data"
    variants = ["707-320", "A300B4", "F/A-18", "Cessna 172"]
    fixture = Fixture(list(variants), image_root=data / "images")
    lines = {"train": [], "val": [], "test": []}
    for label, variant in enumerate(variants):
        for i, split in enumerate(("train", "train", "val", "test", "test")):
            image_id = f"{1000000 + 10 * label + i:07d}"
            path = write_image(data / "images" / f"{image_id}.jpg", 10 * label + i)
            lines[split].append(f"{image_id} {variant}")
            fixture.images[path] = variant
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    lines["trainval"] = lines["train"] + lines["val"]
    for split, rows in lines.items():
        (data / f"images_variant_{split}.txt").write_text("\n".join(rows) + "\n")
    return fixture


def caltech101(tv_root: Path, per_class=10) -> Fixture:
    """caltech101/101_ObjectCategories/<category>/image_0001.jpg..., with the clutter class
    BACKGROUND_Google and the duplicate Faces_easy that CoOp leaves out."""
    root = tv_root / "caltech101" / "101_ObjectCategories"
    kept = {"Faces": "face", "Leopards": "leopard", "accordion": "accordion", "airplanes": "airplane"}
    fixture = Fixture([kept[c] for c in sorted(kept)], image_root=root)
    for label, category in enumerate(sorted(list(kept) + ["BACKGROUND_Google", "Faces_easy"])):
        for i in range(1, per_class + 1):
            path = write_image(root / category / f"image_{i:04d}.jpg", 100 * label + i)
            if category in kept:
                fixture.images[path] = kept[category]
    return fixture


def sun397(tv_root: Path, per_class=10) -> Fixture:
    """SUN397/: ClassName.txt ('/a/abbey' ...) and the images in those folders, named sun_<code>.jpg."""
    folder = tv_root / "SUN397"
    keys = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop"]
    fixture = Fixture(["abbey", "outdoor apartment building", "shop bakery"], image_root=folder)
    for label, key in enumerate(keys):
        for i in range(per_class):
            path = write_image(folder / key / f"sun_{label}{i:03d}abc.jpg", 100 * label + i)
            fixture.images[path] = fixture.classnames[label]
    (folder / "ClassName.txt").write_text("".join(f"/{key}\n" for key in keys))
    return fixture


def stanford_cars(tv_root: Path, train=5, test=3) -> Fixture:
    """stanford_cars/: cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat,
    cars_test_annos_withlabels.mat (annotations with 'fname' and 1-based 'class')."""
    from scipy.io import savemat

    folder = tv_root / "stanford_cars"
    names = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "BMW M3 Coupe 2012"]
    fixture = Fixture(["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 BMW M3 Coupe"], test_images=set(),
                      image_root=folder)
    (folder / "devkit").mkdir(parents=True)
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = names
    savemat(folder / "devkit" / "cars_meta.mat", {"class_names": class_names})
    for split, n, mat in (("train", train, folder / "devkit" / "cars_train_annos.mat"),
                          ("test", test, folder / "cars_test_annos_withlabels.mat")):
        rows = np.zeros((1, n * len(names)), dtype=[("fname", "O"), ("class", "O")])
        for k in range(n * len(names)):
            label = k % len(names)
            path = write_image(folder / f"cars_{split}" / f"{k + 1:05d}.jpg", k + (0 if split == "train" else 500))
            rows[0, k] = (path.name, np.array([[label + 1]], dtype=np.uint8))
            fixture.images[path] = fixture.classnames[label]
            if split == "test":
                fixture.test_images.add(path)
        savemat(mat, {"annotations": rows})
    return fixture


BUILDERS = {"oxford_pets": pets, "dtd": dtd, "eurosat": eurosat, "food101": food101, "oxford_flowers": flowers,
            "fgvc_aircraft": aircraft, "caltech101": caltech101, "sun397": sun397, "stanford_cars": stanford_cars}


def open_with_torchvision(name: str, tv_root: Path) -> list:
    """The fixture opened by torchvision's own class, once per split it offers (download=False)."""
    from torchvision import datasets

    root = str(tv_root)
    opened = {
        "oxford_pets": lambda: [datasets.OxfordIIITPet(root, split=s) for s in ("trainval", "test")],
        "dtd": lambda: [datasets.DTD(root, split=s) for s in ("train", "val", "test")],
        "eurosat": lambda: [datasets.EuroSAT(root)],
        "food101": lambda: [datasets.Food101(root, split=s) for s in ("train", "test")],
        "oxford_flowers": lambda: [datasets.Flowers102(root, split=s) for s in ("train", "val", "test")],
        "fgvc_aircraft": lambda: [datasets.FGVCAircraft(root, split=s) for s in ("train", "val", "trainval", "test")],
        "caltech101": lambda: [datasets.Caltech101(root)],
        "sun397": lambda: [datasets.SUN397(root)],
        "stanford_cars": lambda: [datasets.StanfordCars(root, split=s) for s in ("train", "test")],
    }
    return opened[name]()
