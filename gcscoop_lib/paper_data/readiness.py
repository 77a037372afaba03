"""`prepare`: one line per dataset saying what is on disk and which split it gives, or exactly what
to fetch."""
from __future__ import annotations

from pathlib import Path

from .finding import _coop_missing, _torchvision_missing, find_layout
from .layouts import TORCHVISION, TORCHVISION_DIR
from .loading import _read
from .registry import REGISTRY, _spec, data_root

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
