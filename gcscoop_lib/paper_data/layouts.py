"""The readers of the two on-disk layouts: CoOp's (its split_zhou_*.json files, class folders,
FGVC-Aircraft's lists, ImageNet's folders) and torchvision's (`TORCHVISION`: where each of its
downloaders puts a dataset, and how that folder is read).

Without CoOp's split file, the split is deterministic and follows the rule CoOp's own code falls
back to for that dataset (e.g. 50/20/30 per class), seeded with 0. FGVC-Aircraft has no split
file: its official lists are the papers' split.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .files import FileSplits, _image_set

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# CoOp's read_and_split_data proportions, used when a folder-per-class dataset has no split file.
TRAIN_SHARE, VAL_SHARE = 0.5, 0.2
# CoOp's split_trainval: the share of an official trainval list held out as val.
TRAINVAL_VAL_SHARE = 0.2
SPLIT_SEED = 0
TORCHVISION_DIR = "torchvision"  # under the data root: the `root` handed to torchvision

# CoOp's class-name cleaning for folder-per-class datasets (CoOp's datasets/eurosat.py and
# datasets/caltech101.py): readable EuroSAT names, and Caltech-101 without its clutter class and
# the duplicate face class, with singular names for the four plural folders.
EUROSAT_NAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest", "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road", "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings", "River": "River",
    "SeaLake": "Sea or Lake",
}
CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_NAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
CLASS_FOLDER_CLEANING = {
    "eurosat": {"rename": EUROSAT_NAMES},
    "caltech101": {"ignored": CALTECH_IGNORED, "rename": CALTECH_NAMES},
}


def _names_by_label(pairs, where: str) -> list[str]:
    """Class names in label order from (label, name) pairs; labels must be 0..n-1."""
    names = {}
    for label, name in pairs:
        names.setdefault(label, name.replace("_", " "))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"malformed {where}: labels must be 0..n-1, found {sorted(names)[:5]}...")
    return [names[i] for i in range(len(names))]


def _per_class_cut(groups: list[list[Path]], shares: tuple[float, ...], seed: int) -> list[tuple[list, list]]:
    """CoOp's per-class split: each class's files (groups[label]) are shuffled by one generator
    seeded `seed` and cut into the given shares of the class, the last part taking the rest.
    Returns len(shares) + 1 (paths, labels) parts."""
    rng = np.random.default_rng(seed)
    parts = [([], []) for _ in range(len(shares) + 1)]
    for label, paths in enumerate(groups):
        paths = [paths[i] for i in rng.permutation(len(paths))]
        start = 0
        for k, share in enumerate(shares):
            chunk = paths[start:start + round(len(paths) * share)]
            parts[k][0].extend(chunk)
            parts[k][1].extend([label] * len(chunk))
            start += len(chunk)
        parts[-1][0].extend(paths[start:])
        parts[-1][1].extend([label] * (len(paths) - start))
    return parts


def _groups(rows: list[tuple[Path, int]], n_classes: int) -> list[list[Path]]:
    """(path, label) rows gathered per label, each group sorted so the split ignores file order."""
    groups = [[] for _ in range(n_classes)]
    for path, label in rows:
        groups[label].append(path)
    return [sorted(g) for g in groups]


def read_split_file(path: Path, image_root: Path, size: int = 224) -> FileSplits:
    """CoOp's split_zhou_*.json: {"train"|"val"|"test": [[relative path, label, class name], ...]}."""
    try:
        raw = json.loads(Path(path).read_text())
        entries = {k: [(str(e[0]), int(e[1]), str(e[2])) for e in raw[k]] for k in ("train", "val", "test")}
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ValueError(f"malformed split file {path} ({type(error).__name__}): it needs 'train', 'val' and 'test' "
                         "lists of [relative path, label, class name]; fetch it again") from error
    classnames = _names_by_label(((l, n) for items in entries.values() for _, l, n in items), f"split file {path}")

    def files(items):
        return _image_set([Path(image_root) / p for p, _, _ in items], [l for _, l, _ in items], classnames, size)

    return FileSplits(files(entries["train"]), files(entries["val"]), files(entries["test"]), classnames,
                      source=f"CoOp split file {Path(path).name}")


def split_class_folders(image_root: Path, size: int = 224, seed: int = SPLIT_SEED, ignored=(),
                        rename: dict | None = None) -> FileSplits:
    """The documented fallback: classes are sorted folder names (less `ignored`, named through
    `rename`, as CoOp does); each class's files, sorted and shuffled with `seed`, go 50 % train,
    20 % val, 30 % test (CoOp's proportions)."""
    folders = sorted(p for p in Path(image_root).iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in ignored)
    if not folders:
        raise FileNotFoundError(f"no class folders in {image_root}")
    groups = [sorted(p for p in f.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) for f in folders]
    classnames = [(rename or {}).get(f.name, f.name).replace("_", " ") for f in folders]
    sets = [_image_set(p, l, classnames, size) for p, l in _per_class_cut(groups, (TRAIN_SHARE, VAL_SHARE), seed)]
    return FileSplits(*sets, classnames, source=f"deterministic 50/20/30 split of class folders (seed {seed})")


def read_aircraft(folder: Path, size: int = 224) -> FileSplits:
    """FGVC-Aircraft: variants.txt lists the 100 classes; images_variant_<split>.txt maps image ids to them."""
    classnames = [line.strip() for line in (folder / "variants.txt").read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(classnames)}
    sets = {}
    for split in ("train", "val", "test"):
        paths, labels = [], []
        for line in (folder / f"images_variant_{split}.txt").read_text().splitlines():
            if not line.strip():
                continue
            image_id, variant = line.strip().split(" ", 1)
            if variant not in index:
                raise ValueError(f"malformed {folder / f'images_variant_{split}.txt'}: unknown variant {variant!r}")
            paths.append(folder / "images" / f"{image_id}.jpg")
            labels.append(index[variant])
        sets[split] = _image_set(paths, labels, classnames, size)
    return FileSplits(sets["train"], sets["val"], sets["test"], classnames, source="FGVC-Aircraft variant files")


def read_imagenet(folder: Path, size: int = 224) -> FileSplits:
    """ImageNet: classnames.txt gives wnid order and names; val serves as test (and as val), as in CoOp."""
    rows = [line.strip().split(" ", 1) for line in (folder / "classnames.txt").read_text().splitlines() if line.strip()]
    wnids, classnames = [r[0] for r in rows], [r[1] for r in rows]

    def read(split):
        paths, labels = [], []
        for label, wnid in enumerate(wnids):
            files = sorted(p for p in (folder / "images" / split / wnid).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            paths += files
            labels += [label] * len(files)
        return _image_set(paths, labels, classnames, size)

    test = read("val")
    return FileSplits(read("train"), test, test, classnames, source="ImageNet train/val folders")


# ----------------------------------------------------------------------------- torchvision's layouts
# Each reader takes the folder torchvision's class creates under <root>/torchvision/ and applies
# the rule CoOp's code falls back to without its split file (the layouts follow torchvision 0.29's
# torchvision/datasets/*.py).

def read_torchvision_pets(folder: Path, size: int = 224, seed: int = SPLIT_SEED) -> FileSplits:
    """oxford-iiit-pet/: images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt with lines
    '<Breed>_<n> <class id> <species> <breed id>'. As CoOp: the class is the lower-cased breed
    part of the file name, test is the official test list, val is 20 % of trainval per class."""
    def read(split):
        rows = []
        for line in (folder / "annotations" / f"{split}.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                image_id, class_id = line.split()[:2]
                breed = image_id.rsplit("_", 1)[0].lower()
                rows.append((folder / "images" / f"{image_id}.jpg", int(class_id) - 1, breed))
        return rows

    trainval, test = read("trainval"), read("test")
    classnames = _names_by_label(((l, n) for _, l, n in trainval + test), folder / "annotations")
    val, train = _per_class_cut(_groups([(p, l) for p, l, _ in trainval], len(classnames)), (TRAINVAL_VAL_SHARE,), seed)
    test = ([p for p, _, _ in test], [l for _, l, _ in test])
    sets = [_image_set(p, l, classnames, size) for p, l in (train, val, test)]
    return FileSplits(*sets, classnames, source=f"official test list, deterministic 80/20 train/val split of the "
                                                f"trainval list (seed {seed})")


def flower_names(folder: Path) -> list[str]:
    """The 102 flower names in label order: CoOp's cat_to_name.json if it is in `folder`, else
    torchvision's Flowers102.classes (the same names in label order, added in torchvision 0.21 by
    pytorch/vision PR #8838, which checked them against each class's image count)."""
    names_file = folder / "cat_to_name.json"
    if names_file.exists():
        names = json.loads(names_file.read_text())
        return [names[str(i)] for i in range(1, len(names) + 1)]
    try:
        from torchvision.datasets import Flowers102
        return list(Flowers102.classes)
    except (ImportError, AttributeError):
        raise FileNotFoundError(f"no flower names: put CoOp's cat_to_name.json (DATASETS.md) in {folder}, or install "
                                "a torchvision whose Flowers102 has .classes") from None


def read_torchvision_flowers(folder: Path, size: int = 224, seed: int = SPLIT_SEED) -> FileSplits:
    """flowers-102/: jpg/image_00001.jpg..., labelled 1..102 in that order by imagelabels.mat.
    As CoOp: 50/20/30 per class (torchvision's setid.mat split is not CoOp's)."""
    from scipy.io import loadmat

    labels = np.atleast_1d(loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"]).astype(int) - 1
    names = flower_names(folder)
    n_classes = int(labels.max()) + 1
    if n_classes > len(names):
        raise ValueError(f"{folder / 'imagelabels.mat'} has {n_classes} classes but there are {len(names)} names")
    rows = [(folder / "jpg" / f"image_{i:05d}.jpg", int(label)) for i, label in enumerate(labels, 1)]
    classnames = names[:n_classes]
    parts = _per_class_cut(_groups(rows, n_classes), (TRAIN_SHARE, VAL_SHARE), seed)
    return FileSplits(*[_image_set(p, l, classnames, size) for p, l in parts], classnames,
                      source=f"deterministic 50/20/30 split per class of imagelabels.mat (seed {seed})")


def read_torchvision_dtd(folder: Path, size: int = 224) -> FileSplits:
    """dtd/: the archive's dtd/images/<texture>/ (torchvision nests it: dtd/dtd/images)."""
    return split_class_folders(folder / "dtd" / "images", size)


def read_torchvision_eurosat(folder: Path, size: int = 224) -> FileSplits:
    """eurosat/: 2750/<Class>/, with CoOp's readable class names."""
    return split_class_folders(folder / "2750", size, **CLASS_FOLDER_CLEANING["eurosat"])


def read_torchvision_food101(folder: Path, size: int = 224) -> FileSplits:
    """food-101/: images/<dish>/ (CoOp splits these folders, not meta/{train,test}.json)."""
    return split_class_folders(folder / "images", size)


def read_torchvision_caltech101(folder: Path, size: int = 224) -> FileSplits:
    """caltech101/: 101_ObjectCategories/<category>/, less CoOp's ignored folders."""
    return split_class_folders(folder / "101_ObjectCategories", size, **CLASS_FOLDER_CLEANING["caltech101"])


def read_torchvision_aircraft(folder: Path, size: int = 224) -> FileSplits:
    """fgvc-aircraft-2013b/: the archive's data/ folder, which is CoOp's fgvc_aircraft/."""
    return read_aircraft(folder / "data", size)


def read_torchvision_sun397(folder: Path, size: int = 224, seed: int = SPLIT_SEED) -> FileSplits:
    """SUN397/: ClassName.txt lists '/a/abbey', '/b/bakery/shop', ...; the images sit in those
    folders. CoOp's names drop the letter and put the last word first ('shop bakery'). CoOp splits
    its Training_01/Testing_01 lists, which torchvision does not fetch: 50/20/30 per class here."""
    keys = [line.strip().strip("/") for line in (folder / "ClassName.txt").read_text().splitlines() if line.strip()]
    classnames = [" ".join(key.split("/")[1:][::-1]).replace("_", " ") for key in keys]
    groups = [sorted((folder / key).glob("sun_*.jpg")) for key in keys]
    parts = _per_class_cut(groups, (TRAIN_SHARE, VAL_SHARE), seed)
    return FileSplits(*[_image_set(p, l, classnames, size) for p, l in parts], classnames,
                      source=f"deterministic 50/20/30 split per class of ClassName.txt's folders (seed {seed})")


def read_torchvision_cars(folder: Path, size: int = 224, seed: int = SPLIT_SEED) -> FileSplits:
    """stanford_cars/: devkit/cars_meta.mat (names), devkit/cars_train_annos.mat with cars_train/,
    cars_test_annos_withlabels.mat with cars_test/. As CoOp: the model year goes first, test is the
    official test set, val is 20 % of the training set per class."""
    from scipy.io import loadmat

    names = loadmat(folder / "devkit" / "cars_meta.mat", squeeze_me=True)["class_names"].tolist()
    classnames = [" ".join(n.split()[-1:] + n.split()[:-1]) for n in names]

    def read(annotations, images):
        rows = np.atleast_1d(loadmat(folder / annotations, squeeze_me=True)["annotations"])
        return [(folder / images / str(row["fname"]), int(row["class"]) - 1) for row in rows]

    val, train = _per_class_cut(_groups(read("devkit/cars_train_annos.mat", "cars_train"), len(classnames)),
                                (TRAINVAL_VAL_SHARE,), seed)
    test = read("cars_test_annos_withlabels.mat", "cars_test")
    test = ([p for p, _ in test], [l for _, l in test])
    return FileSplits(*[_image_set(p, l, classnames, size) for p, l in (train, val, test)], classnames,
                      source=f"official test set, deterministic 80/20 train/val split of the training set "
                             f"(seed {seed})")


@dataclass(frozen=True)
class TorchvisionLayout:
    """Where `torchvision.datasets.<cls>(<root>/torchvision, download=True)` puts a dataset."""

    cls: str                 # the class in torchvision.datasets
    folder: str              # what it creates under <root>/torchvision/
    image_dir: str           # inside folder: where CoOp's split-file paths start
    needs: tuple[str, ...]   # inside folder: what `read` uses
    read: Callable[[Path, int], FileSplits]  # the split without CoOp's split file
    fetch: bool = True       # False where torchvision's downloader does not work
    too_big: str = ""        # set where the download is only made on request (download(..., large=True))


_AIRCRAFT_FILES = ("data/images", "data/variants.txt", "data/images_variant_train.txt", "data/images_variant_val.txt",
                   "data/images_variant_test.txt")
TORCHVISION = {
    "oxford_pets": TorchvisionLayout("OxfordIIITPet", "oxford-iiit-pet", "images",
                                     ("images", "annotations/trainval.txt", "annotations/test.txt"),
                                     read_torchvision_pets),
    "oxford_flowers": TorchvisionLayout("Flowers102", "flowers-102", "jpg", ("jpg", "imagelabels.mat"),
                                        read_torchvision_flowers),
    "dtd": TorchvisionLayout("DTD", "dtd", "dtd/images", ("dtd/images",), read_torchvision_dtd),
    "eurosat": TorchvisionLayout("EuroSAT", "eurosat", "2750", ("2750",), read_torchvision_eurosat),
    "food101": TorchvisionLayout("Food101", "food-101", "images", ("images",), read_torchvision_food101),
    "fgvc_aircraft": TorchvisionLayout("FGVCAircraft", "fgvc-aircraft-2013b", "data/images", _AIRCRAFT_FILES,
                                       read_torchvision_aircraft),
    "caltech101": TorchvisionLayout("Caltech101", "caltech101", "101_ObjectCategories", ("101_ObjectCategories",),
                                    read_torchvision_caltech101),
    "sun397": TorchvisionLayout("SUN397", "SUN397", "", ("ClassName.txt",), read_torchvision_sun397,
                                too_big="a 37 GB archive, about twice that on disk while it is extracted"),
    "stanford_cars": TorchvisionLayout("StanfordCars", "stanford_cars", "",
                                       ("devkit/cars_meta.mat", "devkit/cars_train_annos.mat", "cars_train",
                                        "cars_test_annos_withlabels.mat", "cars_test"),
                                       read_torchvision_cars, fetch=False),
}
