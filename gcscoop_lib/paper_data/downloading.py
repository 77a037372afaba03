"""`download`: torchvision's downloaders, run in a staging folder and moved into
<root>/torchvision/ only once complete."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .finding import LAYOUT_NAMES, _torchvision_missing, find_layout, torchvision_split_file
from .layouts import TORCHVISION, TORCHVISION_DIR
from .registry import REGISTRY, _spec, data_root

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
