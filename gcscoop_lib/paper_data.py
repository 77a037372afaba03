"""The papers' 11 benchmark datasets on disk: where their files go, CoOp's split files,
the hand-crafted templates, torchvision downloads, and a `prepare` check that says exactly
what is missing (07_appendix_tiny_clip).

Two layouts are read, under one root folder ($GCSCOOP_DATA, default ~/data):

* CoOp's (its DATASETS.md): `<root>/<spec.folder>/`, with the split file `split_zhou_*.json`
  beside the images. Used whenever it is complete.
* torchvision's own: `download(name)` runs torchvision's downloader with `root=<root>/torchvision`,
  so each dataset lands where torchvision puts it (see TORCHVISION: `oxford-iiit-pet/`,
  `flowers-102/`, `dtd/`, `eurosat/`, `food-101/`, `fgvc-aircraft-2013b/`, `caltech101/`,
  `SUN397/`, `stanford_cars/`). The files are read directly; no torchvision dataset is built.
  CoOp's split file goes beside those folders, in `<root>/torchvision/` itself
  (e.g. `<root>/torchvision/split_zhou_OxfordPets.json`); its relative paths name the same images.
  torchvision fetches all but ImageNet, UCF101 (CoOp's middle frames) and Stanford Cars (its
  download is broken upstream); SUN397 (37 GB) only when asked: `download("sun397", large=True)`.

Without CoOp's split file, the split is deterministic and follows the rule CoOp's own code falls
back to for that dataset (e.g. 50/20/30 per class), seeded with 0. That split differs from the
papers', so `load` warns once that its numbers are not comparable with the papers' tables, and
`FileSplits.source` names the rule. FGVC-Aircraft has no split file: its official lists are the
papers' split.

Images are read lazily, so a 50,000-image test set never sits in memory: `FileImageSet` loads a
slice at a time, resized (shorter side) and centre-cropped as CLIP's test transform does.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import settings

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


@dataclass(frozen=True)
class PaperDataset:
    name: str              # CoOp's config name, e.g. "oxford_pets"
    folder: str            # under the data root
    image_dir: str         # inside folder; the split file's relative paths start here
    split_file: str | None
    template: str          # CLIP/CoOp's hand-crafted prompt (zero-shot and teachers in CoOp's papers)
    instructions: str      # what to fetch by hand
    layout: str = "split"  # "split": split file (or class folders), "aircraft", "imagenet"
    class_folders: bool = False  # images sit in one folder per class (a deterministic split is possible)


COOP_SPLITS = "the split file from CoOp's DATASETS.md (https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"
REGISTRY = {d.name: d for d in [
    PaperDataset("imagenet", "imagenet", "images", None, "a photo of a {}.",
                 "ImageNet-1k from https://image-net.org (registration needed): extract train/ and val/ (one folder per "
                 "wnid) under imagenet/images/, and classnames.txt ('wnid class name' per line) from CoOp's DATASETS.md",
                 layout="imagenet"),
    PaperDataset("caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "a photo of a {}.",
                 f"101_ObjectCategories.tar.gz from https://data.caltech.edu/records/mzrjq-6wc02, and {COOP_SPLITS}",
                 class_folders=True),
    PaperDataset("oxford_pets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
                 "a photo of a {}, a type of pet.",
                 f"images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/, and {COOP_SPLITS}"),
    PaperDataset("stanford_cars", "stanford_cars", "", "split_zhou_StanfordCars.json", "a photo of a {}.",
                 f"cars_train/, cars_test/ and devkit/ of Stanford Cars (the original host is gone; torchvision's "
                 f"StanfordCars page lists mirrors), and {COOP_SPLITS}"),
    PaperDataset("oxford_flowers", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                 "a photo of a {}, a type of flower.",
                 f"102flowers.tgz and imagelabels.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/, "
                 f"and {COOP_SPLITS}"),
    PaperDataset("food101", "food-101", "images", "split_zhou_Food101.json", "a photo of {}, a type of food.",
                 f"food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/, and {COOP_SPLITS}",
                 class_folders=True),
    PaperDataset("fgvc_aircraft", "fgvc_aircraft", "images", None, "a photo of a {}, a type of aircraft.",
                 "fgvc-aircraft-2013b.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/: keep data/ and "
                 "rename it fgvc_aircraft/ (images/, variants.txt, images_variant_{train,val,test}.txt)",
                 layout="aircraft"),
    PaperDataset("sun397", "sun397", "SUN397", "split_zhou_SUN397.json", "a photo of a {}.",
                 f"SUN397.tar.gz from https://vision.princeton.edu/projects/2010/SUN/, and {COOP_SPLITS}"),
    PaperDataset("dtd", "dtd", "images", "split_zhou_DescribableTextures.json", "{} texture.",
                 f"dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/, and {COOP_SPLITS}",
                 class_folders=True),
    PaperDataset("eurosat", "eurosat", "2750", "split_zhou_EuroSAT.json", "a centered satellite photo of {}.",
                 f"EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT, extracted to eurosat/2750/, and {COOP_SPLITS}",
                 class_folders=True),
    PaperDataset("ucf101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "a photo of a person doing {}.",
                 f"UCF-101-midframes.zip (middle frames, linked from CoOp's DATASETS.md; there is no public "
                 f"frame-extraction step to rerun), and {COOP_SPLITS}", class_folders=True),
]}


def data_root() -> Path:
    return settings.current().data_root


@dataclass
class FileImageSet:
    """Image files with labels, read lazily: slicing returns uint8 N x size x size x 3."""

    paths: list[Path]
    labels: np.ndarray
    classnames: list[str]
    size: int = 224

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "FileImageSet":
        index = np.asarray(index, dtype=int)
        return FileImageSet([self.paths[i] for i in index], self.labels[index], self.classnames, self.size)

    def __getitem__(self, items: slice) -> np.ndarray:
        return np.stack([load_image(p, self.size) for p in self.paths[items]])

    def fingerprint(self) -> str:
        text = json.dumps([[str(p) for p in self.paths], self.labels.tolist(), self.size])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_image(path: Path, size: int) -> np.ndarray:
    """CLIP's test transform on one file: RGB, shorter side to `size` (bicubic), centre crop."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


@dataclass
class FileSplits:
    train: FileImageSet
    val: FileImageSet
    test: FileImageSet
    classnames: list[str]
    source: str = ""               # which rule produced the split
    notes: dict = field(default_factory=dict)


def _names_by_label(pairs, where: str) -> list[str]:
    """Class names in label order from (label, name) pairs; labels must be 0..n-1."""
    names = {}
    for label, name in pairs:
        names.setdefault(label, name.replace("_", " "))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"malformed {where}: labels must be 0..n-1, found {sorted(names)[:5]}...")
    return [names[i] for i in range(len(names))]


def _image_set(paths, labels, classnames, size) -> FileImageSet:
    return FileImageSet(list(paths), np.array(labels, dtype=np.int64), classnames, size)


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


# ----------------------------------------------------------------------------- finding and loading

def _spec(name: str) -> PaperDataset:
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: the papers' datasets are {sorted(REGISTRY)}")
    return REGISTRY[name]


def _coop_missing(name: str, root: Path) -> list[str]:
    spec = REGISTRY[name]
    folder = root / spec.folder
    needed = [folder / spec.image_dir]
    if spec.layout == "aircraft":
        needed += [folder / "variants.txt"] + [folder / f"images_variant_{s}.txt" for s in ("train", "val", "test")]
    elif spec.layout == "imagenet":
        needed += [folder / "classnames.txt", folder / "images" / "train", folder / "images" / "val"]
    elif not spec.class_folders:
        needed.append(folder / spec.split_file)
    return [str(p) for p in needed if not p.exists()]


def torchvision_split_file(name: str, root: Path | None = None) -> Path | None:
    """Where CoOp's split file goes for torchvision's layout: <root>/torchvision/split_zhou_*.json
    (None for FGVC-Aircraft and ImageNet, which have none)."""
    spec = _spec(name)
    return Path(root or data_root()) / TORCHVISION_DIR / spec.split_file if spec.split_file else None


def _torchvision_missing(name: str, root: Path) -> list[str]:
    tv = TORCHVISION[name]
    folder = root / TORCHVISION_DIR / tv.folder
    split_file = torchvision_split_file(name, root)
    needed = (tv.image_dir,) if split_file and split_file.exists() else tv.needs
    return [str(folder / p) for p in needed if not (folder / p).exists()]


LAYOUT_NAMES = {"coop": "CoOp's", "torchvision": "torchvision's"}


def find_layout(name: str, root: Path | None = None) -> str | None:
    """Which layout holds the dataset: "coop" when CoOp's is complete, else "torchvision" when
    torchvision's is, else None."""
    _spec(name)
    root = Path(root or data_root())
    if not _coop_missing(name, root):
        return "coop"
    if name in TORCHVISION and not _torchvision_missing(name, root):
        return "torchvision"
    return None


def missing(name: str, root: Path | None = None) -> list[str]:
    """What a dataset still lacks in CoOp's layout (empty when it is ready in either layout)."""
    _spec(name)
    root = Path(root or data_root())
    return [] if find_layout(name, root) else _coop_missing(name, root)


def _read_coop(name: str, size: int, root: Path) -> FileSplits:
    spec = REGISTRY[name]
    folder = root / spec.folder
    split_file = folder / spec.split_file if spec.split_file else None
    if spec.layout == "aircraft":
        splits = read_aircraft(folder, size)
    elif spec.layout == "imagenet":
        splits = read_imagenet(folder, size)
    elif split_file.exists():
        splits = read_split_file(split_file, folder / spec.image_dir, size)
    else:
        splits = split_class_folders(folder / spec.image_dir, size, **CLASS_FOLDER_CLEANING.get(name, {}))
    splits.notes.update(layout="coop", folder=str(folder), split_file=split_file)
    return splits


def _read_torchvision(name: str, size: int, root: Path) -> FileSplits:
    tv = TORCHVISION[name]
    folder = root / TORCHVISION_DIR / tv.folder
    split_file = torchvision_split_file(name, root)
    if split_file and split_file.exists():
        splits = read_split_file(split_file, folder / tv.image_dir, size)
    else:
        splits = tv.read(folder, size)
    splits.notes.update(layout="torchvision", folder=str(folder), split_file=split_file)
    return splits


def _read(name: str, size: int, root: Path) -> FileSplits:
    """The splits from whichever layout is there, with notes on where they came from."""
    layout = find_layout(name, root)
    if layout is None:
        lacking = _coop_missing(name, root)
        also = f", or `python -m gcscoop_lib prepare --download {name}`" if name in TORCHVISION and TORCHVISION[name].fetch else ""
        raise FileNotFoundError(f"{name} is not ready under {root} (missing {lacking[0]}): run "
                                f"`python -m gcscoop_lib prepare {name}` for what to fetch{also}, or set GCSCOOP_DATA")
    splits = _read_coop(name, size, root) if layout == "coop" else _read_torchvision(name, size, root)
    split_file = splits.notes["split_file"]
    splits.notes["split_file_found"] = bool(split_file and split_file.exists())
    # Only CoOp's split file, or a dataset's official lists where CoOp has no file, give the papers' split.
    splits.notes["paper_split"] = splits.notes["split_file_found"] or split_file is None
    splits.source += f", {LAYOUT_NAMES[layout]} layout"
    return splits


_WARNED: set[str] = set()  # datasets already warned about, so the warning prints once per process


def load(name: str, size: int = 224, root: Path | None = None) -> FileSplits:
    """A paper dataset's train/val/test files from CoOp's or torchvision's layout (see `prepare`
    for what to fetch). A dataset that is missing and that torchvision fetches by default is
    downloaded first where downloads are allowed (GCSCOOP_ALLOW_DOWNLOAD=1, the default in Colab).
    Warns once when the split is not the papers' (no CoOp split file)."""
    _spec(name)
    root = Path(root or data_root())
    tv = TORCHVISION.get(name)
    if find_layout(name, root) is None and settings.current().allow_download and tv and tv.fetch and not tv.too_big:
        for line in download(name, root):
            print(line)
    splits = _read(name, size, root)
    if not splits.notes["paper_split"] and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(f"{name}: no CoOp split file at {splits.notes['split_file']}, so the split is "
                      f"{splits.source}; accuracies are not comparable with the papers' tables", stacklevel=2)
    return splits


# ----------------------------------------------------------------------------- fetching and checking

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def download(name: str, root: Path | None = None, *, large: bool = False) -> list[str]:
    """Fetch a dataset with torchvision's downloader (download=True) into <root>/torchvision/<folder>
    (see TORCHVISION) and return lines to print. torchvision works in a hidden staging folder that
    is moved into place only once it returns, so an interrupted download leaves no dataset folder
    behind; the archives are deleted once extracted. Raises ValueError, with what to fetch by hand,
    for the datasets torchvision cannot fetch, and for SUN397 unless `large` is set."""
    spec = _spec(name)
    root = Path(root or data_root())
    tv = TORCHVISION.get(name)
    if tv is None or not tv.fetch:
        why = f" (torchvision's {tv.cls} download is broken upstream)" if tv else ""
        raise ValueError(f"{name}: torchvision cannot download it{why}; fetch by hand {spec.instructions}")
    if tv.too_big and not large:
        raise ValueError(f"{name}: torchvision's download is {tv.too_big}, so it is not fetched by default: call "
                         f"download({name!r}, large=True), or fetch by hand {spec.instructions}")
    found = find_layout(name, root)
    if found:
        return [f"{name}: already on disk in {LAYOUT_NAMES[found]} layout; nothing downloaded",
                _split_file_line(name, root, found)]
    target = root / TORCHVISION_DIR / tv.folder
    if target.exists():
        raise FileExistsError(f"{target} exists but is incomplete (missing {_torchvision_missing(name, root)[0]}): "
                              "remove it and call download again")
    staging = root / TORCHVISION_DIR / f".downloading-{name}"
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    staging.mkdir(parents=True)
    try:
        import torchvision.datasets

        try:
            getattr(torchvision.datasets, tv.cls)(str(staging), download=True)
        except OSError as error:    # offline: urllib's URLError, socket errors
            raise RuntimeError(f"{name}: torchvision's download failed ({error}): this needs internet; or fetch "
                               f"by hand {spec.instructions}") from error
        for archive in (staging / tv.folder).iterdir():
            if archive.is_file() and archive.name.endswith(ARCHIVE_SUFFIXES):
                archive.unlink()
        os.replace(staging / tv.folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [f"{name}: downloaded with torchvision.datasets.{tv.cls} into {target}", _split_file_line(name, root)]


def _split_file_line(name: str, root: Path, layout: str = "torchvision") -> str:
    """Which split `load` will use, and where CoOp's split file goes when it is absent."""
    spec = REGISTRY[name]
    if spec.split_file is None:
        return f"{name}: split: the official lists, as in the papers"
    path = root / spec.folder / spec.split_file if layout == "coop" else torchvision_split_file(name, root)
    if path.exists():
        return f"{name}: split: CoOp's split file {path}"
    return (f"{name}: no CoOp split file: put {spec.split_file} (CoOp's DATASETS.md) at {path} for the papers' split; "
            "without it the split is deterministic but accuracies are not comparable with the papers' tables")


def _missing_line(name: str, root: Path) -> str:
    spec = REGISTRY[name]
    line = f"{name}: missing {', '.join(_coop_missing(name, root))}. Fetch {spec.instructions}."
    tv = TORCHVISION.get(name)
    if tv is None:
        return line + " torchvision cannot fetch it."
    folder = root / TORCHVISION_DIR / tv.folder
    if folder.exists():
        line += f" The torchvision folder {folder} is incomplete (missing {_torchvision_missing(name, root)[0]})."
    if not tv.fetch:
        return line + f" torchvision's {tv.cls} download is broken; its layout is read from {folder} if put there."
    if tv.too_big:
        return line + f" Or `python -m gcscoop_lib prepare --download --large {name}` fetches it ({tv.too_big}) into {folder}."
    return line + f" Or `python -m gcscoop_lib prepare --download {name}` fetches it with torchvision into {folder}."


def prepare(names: list[str], root: Path | None = None) -> list[str]:
    """One line per dataset: ready (which layout, which split, whether CoOp's split file is there)
    or exactly what to fetch by hand and whether `download` can fetch it."""
    root = Path(root or data_root())
    lines = []
    for name in names:
        _spec(name)
        layout = find_layout(name, root)
        if layout is None:
            lines.append(_missing_line(name, root))
            continue
        try:
            splits = _read(name, 224, root)
        except (ValueError, OSError, KeyError) as error:
            lines.append(f"{name}: present but unreadable: {error}")
            continue
        absent = [p for s in (splits.train, splits.val, splits.test) for p in s.paths if not p.exists()]
        if absent:
            lines.append(f"{name}: {len(absent)} image files listed by the split are missing, e.g. {absent[0]}")
            continue
        note = ""
        if not splits.notes["paper_split"]:
            note = (f"; no CoOp split file: put {REGISTRY[name].split_file} at {splits.notes['split_file']} "
                    "for the papers' split")
        if layout == "coop":
            note += "; no checksum is published for these files, so none is verified"
        lines.append(f"{name}: ready, {len(splits.classnames)} classes, {len(splits.train)}/{len(splits.val)}/"
                     f"{len(splits.test)} train/val/test images in {splits.notes['folder']} ({splits.source}{note})")
    return lines
