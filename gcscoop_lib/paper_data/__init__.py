"""The papers' 11 benchmark datasets on disk: where their files go, how each layout is read,
torchvision downloads, and a `prepare` check that says exactly what is missing
(09_appendix_tiny_clip).

Two layouts are read, under one root folder ($GCSCOOP_DATA, default ~/data):

* CoOp's (its DATASETS.md): `<root>/<spec.folder>/`, with the split file `split_zhou_*.json`
  beside the images. Used whenever it is complete.
* torchvision's own: `download(name)` runs torchvision's downloader with `root=<root>/torchvision`,
  so each dataset lands where torchvision puts it (see layouts.TORCHVISION: `oxford-iiit-pet/`,
  `flowers-102/`, `dtd/`, `eurosat/`, `food-101/`, `fgvc-aircraft-2013b/`, `caltech101/`,
  `SUN397/`, `stanford_cars/`). The files are read directly; no torchvision dataset is built.
  CoOp's split file goes beside those folders, in `<root>/torchvision/` itself
  (e.g. `<root>/torchvision/split_zhou_OxfordPets.json`); its relative paths name the same images.
  torchvision fetches all but ImageNet, UCF101 (CoOp's middle frames) and Stanford Cars (its
  download is broken upstream); SUN397 (37 GB) only when asked: `download("sun397", large=True)`.

Without CoOp's split file the split is deterministic but differs from the papers', so `load`
warns once that its numbers are not comparable with the papers' tables, and `FileSplits.source`
names the rule.
"""
from .downloading import download
from .finding import find_layout, missing, torchvision_split_file
from .loading import load
from .readiness import prepare
from .registry import REGISTRY, data_root

__all__ = ["REGISTRY", "data_root", "download", "find_layout", "load", "missing", "prepare",
           "torchvision_split_file"]
