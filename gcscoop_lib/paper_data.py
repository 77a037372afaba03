"""The papers' 11 benchmark datasets on disk: where their files go, CoOp's split files,
the hand-crafted templates, and a `prepare` check that says exactly what is missing
(07_appendix_tiny_clip).

Layout: CoOp's DATASETS.md, under one root folder ($GCSCOOP_DATA, default ~/data). Images
are read lazily, so a 50,000-image test set never sits in memory: `FileImageSet` loads a
slice at a time, resized (shorter side) and centre-cropped as CLIP's test transform does.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# CoOp's read_and_split_data proportions, used when a folder-per-class dataset has no split file.
TRAIN_SHARE, VAL_SHARE = 0.5, 0.2


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
    return Path(os.environ.get("GCSCOOP_DATA", Path.home() / "data"))


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


def read_split_file(path: Path, image_root: Path, size: int = 224) -> FileSplits:
    """CoOp's split_zhou_*.json: {"train"|"val"|"test": [[relative path, label, class name], ...]}."""
    try:
        raw = json.loads(Path(path).read_text())
        entries = {k: [(str(e[0]), int(e[1]), str(e[2])) for e in raw[k]] for k in ("train", "val", "test")}
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ValueError(f"malformed split file {path} ({type(error).__name__}): it needs 'train', 'val' and 'test' "
                         "lists of [relative path, label, class name]; fetch it again") from error
    names = {}
    for items in entries.values():
        for _, label, name in items:
            names.setdefault(label, name.replace("_", " "))
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"malformed split file {path}: labels must be 0..n-1, found {sorted(names)[:5]}...")
    classnames = [names[i] for i in range(len(names))]

    def files(items):
        return FileImageSet([Path(image_root) / p for p, _, _ in items], np.array([l for _, l, _ in items], dtype=np.int64),
                            classnames, size)

    return FileSplits(files(entries["train"]), files(entries["val"]), files(entries["test"]), classnames,
                      source=f"CoOp split file {Path(path).name}")


def split_class_folders(image_root: Path, size: int = 224, seed: int = 0) -> FileSplits:
    """The documented fallback: classes are sorted folder names; each class's files, sorted and
    shuffled with `seed`, go 50 % train, 20 % val, 30 % test (CoOp's proportions)."""
    folders = sorted(p for p in Path(image_root).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no class folders in {image_root}")
    rng = np.random.default_rng(seed)
    parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
    for label, folder in enumerate(folders):
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        images = [images[i] for i in rng.permutation(len(images))]
        n_train, n_val = round(len(images) * TRAIN_SHARE), round(len(images) * VAL_SHARE)
        for split, chunk in (("train", images[:n_train]), ("val", images[n_train:n_train + n_val]),
                             ("test", images[n_train + n_val:])):
            parts[split][0].extend(chunk)
            parts[split][1].extend([label] * len(chunk))
    classnames = [f.name.replace("_", " ") for f in folders]
    sets = {k: FileImageSet(p, np.array(l, dtype=np.int64), classnames, size) for k, (p, l) in parts.items()}
    return FileSplits(sets["train"], sets["val"], sets["test"], classnames,
                      source=f"deterministic 50/20/30 split of class folders (seed {seed})")


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
        sets[split] = FileImageSet(paths, np.array(labels, dtype=np.int64), classnames, size)
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
        return FileImageSet(paths, np.array(labels, dtype=np.int64), classnames, size)

    test = read("val")
    return FileSplits(read("train"), test, test, classnames, source="ImageNet train/val folders")


def missing(name: str, root: Path | None = None) -> list[str]:
    """What a dataset still lacks on disk (empty when it is ready)."""
    spec = REGISTRY[name]
    folder = (root or data_root()) / spec.folder
    needed = [folder / spec.image_dir]
    if spec.layout == "aircraft":
        needed += [folder / "variants.txt"] + [folder / f"images_variant_{s}.txt" for s in ("train", "val", "test")]
    elif spec.layout == "imagenet":
        needed += [folder / "classnames.txt", folder / "images" / "train", folder / "images" / "val"]
    elif not spec.class_folders:
        needed.append(folder / spec.split_file)
    return [str(p) for p in needed if not p.exists()]


def load(name: str, size: int = 224, root: Path | None = None) -> FileSplits:
    """A paper dataset's train/val/test files (see `prepare` for what to fetch)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: the papers' datasets are {sorted(REGISTRY)}")
    spec = REGISTRY[name]
    root = root or data_root()
    lacking = missing(name, root)
    if lacking:
        raise FileNotFoundError(f"{name} is not ready under {root} (missing {lacking[0]}): run "
                                f"`python -m gcscoop_lib prepare {name}` for what to fetch, or set GCSCOOP_DATA")
    folder = root / spec.folder
    if spec.layout == "aircraft":
        return read_aircraft(folder, size)
    if spec.layout == "imagenet":
        return read_imagenet(folder, size)
    split_file = folder / spec.split_file
    if split_file.exists():
        return read_split_file(split_file, folder / spec.image_dir, size)
    return split_class_folders(folder / spec.image_dir, size)


def prepare(names: list[str], root: Path | None = None) -> list[str]:
    """One line per dataset: ready (and how it is split) or exactly what to fetch by hand."""
    root = root or data_root()
    lines = []
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown dataset {name!r}: the papers' datasets are {sorted(REGISTRY)}")
        spec = REGISTRY[name]
        lacking = missing(name, root)
        if lacking:
            lines.append(f"{name}: missing {', '.join(lacking)}. Fetch {spec.instructions}.")
            continue
        try:
            splits = load(name, root=root)
        except (ValueError, OSError) as error:
            lines.append(f"{name}: present but unreadable: {error}")
            continue
        absent = [p for s in (splits.train, splits.val, splits.test) for p in s.paths if not p.exists()]
        if absent:
            lines.append(f"{name}: {len(absent)} image files listed by the split are missing, e.g. {absent[0]}")
            continue
        lines.append(f"{name}: ready, {len(splits.classnames)} classes, {len(splits.train)}/{len(splits.val)}/"
                     f"{len(splits.test)} train/val/test images ({splits.source}; no checksum is published for "
                     "these files, so none is verified)")
    return lines
