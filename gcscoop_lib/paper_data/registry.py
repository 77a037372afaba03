"""The papers' 11 datasets: each one's folder, split file, hand-crafted template, layout and what
to fetch by hand, and the data root they live under."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import settings

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


def _spec(name: str) -> PaperDataset:
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: the papers' datasets are {sorted(REGISTRY)}")
    return REGISTRY[name]
