"""Which layout holds a dataset under the data root, and what it still lacks."""
from __future__ import annotations

from pathlib import Path

from .layouts import TORCHVISION, TORCHVISION_DIR
from .registry import REGISTRY, _spec, data_root

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
