"""`load`: a dataset's splits from whichever layout is on disk (downloaded first where allowed),
with a warning, once, where the split is not the papers'."""
from __future__ import annotations

import warnings
from pathlib import Path

from .. import downloads
from .downloading import download
from .files import FileSplits
from .finding import LAYOUT_NAMES, _coop_missing, find_layout, torchvision_split_file
from .layouts import (CLASS_FOLDER_CLEANING, TORCHVISION, TORCHVISION_DIR, read_aircraft, read_imagenet,
                      read_split_file, split_class_folders)
from .registry import REGISTRY, _spec, data_root

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
    if find_layout(name, root) is None and tv and tv.fetch and not tv.too_big:
        fix = (f"run `python -m gcscoop_lib prepare --download {name}`, or `python -m gcscoop_lib prepare {name}` "
               "for what to fetch by hand, or set GCSCOOP_DATA")
        for line in downloads.fetch(f"{name} under {root}", lambda: download(name, root), fix):
            print(line)
    splits = _read(name, size, root)
    if not splits.notes["paper_split"] and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(f"{name}: no CoOp split file at {splits.notes['split_file']}, so the split is "
                      f"{splits.source}; accuracies are not comparable with the papers' tables", stacklevel=2)
    return splits
