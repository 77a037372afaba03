"""Every setting the library reads from the environment, in one place (intro, README).

One rule everywhere: an explicit argument wins over the environment variable, and the
variable wins over the default below. No other module reads `os.environ`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

VARIABLES = {  # field -> (environment variable, what it sets)
    "cache": ("GCSCOOP_CACHE", "cached image features, the drawn embedded tasks and downloaded Fashion-MNIST"),
    "results": ("GCSCOOP_RESULTS", "where your runs' records, solutions and tables are written (default "
                                   "~/gcscoop_runs: the book's own records are never written by a reader's run)"),
    "book_results": ("GCSCOOP_BOOK_RESULTS", "the book's records, tuned recipe and tables, read by every run "
                                             "(default: results/ of the clone the library is installed from, "
                                             "or of the clone a chapter's first cell makes in Colab)"),
    "tiny_dir": ("GCSCOOP_TINY_DIR", "another copy of the tiny CLIP's weights"),
    "fashion_dir": ("GCSCOOP_FASHION_DIR", "a folder with Fashion-MNIST's four idx .gz files"),
    "allow_download": ("GCSCOOP_ALLOW_DOWNLOAD", "1: fetch Fashion-MNIST, and the papers' datasets that torchvision "
                                                 "fetches, when they are missing (the default in Colab)"),
    "data_root": ("GCSCOOP_DATA", "the papers' datasets"),
    "compile": ("GCSCOOP_COMPILE", "1: torch.compile the text encoder"),
    "text_chunk": ("GCSCOOP_TEXT_CHUNK", "encode class prompts this many at a time (0: all at once)"),
    "population": ("GCSCOOP_POPULATION", "train at most this many runs of a sweep together (1: each alone)"),
    "paper_model": ("GCSCOOP_PAPER_MODEL", "the CLIP of the 'paper' profile"),
    "paper_pretrained": ("GCSCOOP_PAPER_PRETRAINED", "its pretrained tag"),
}


COLAB_BOOK = Path("/content/book")   # where a chapter's first cell clones the book in Colab


def _book_results() -> Path:
    clone = Path(__file__).resolve().parent.parent / "results"
    return clone if clone.is_dir() else COLAB_BOOK / "results"


@dataclass(frozen=True)
class Settings:
    cache: Path
    results: Path
    book_results: Path
    tiny_dir: Path
    fashion_dir: Path
    allow_download: bool
    data_root: Path
    compile: bool
    text_chunk: int
    population: int
    paper_model: str
    paper_pretrained: str | None


def _flag(name: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def _count(name: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return int(value)


def current() -> Settings:
    """The settings in force now (read on every call, so a changed variable takes effect)."""
    def env(field: str, default: str | None) -> str | None:
        return os.environ.get(VARIABLES[field][0], default)

    return Settings(
        cache=Path(env("cache", str(Path.home() / ".cache" / "gcscoop_lib"))),
        results=Path(env("results", str(Path.home() / "gcscoop_runs"))),
        book_results=Path(env("book_results", str(_book_results()))),
        tiny_dir=Path(env("tiny_dir", str(Path(__file__).parent / "weights" / "tiny"))),
        fashion_dir=Path(env("fashion_dir", "/usr/share/datasets/fashion-mnist")),
        allow_download=_flag("GCSCOOP_ALLOW_DOWNLOAD", env("allow_download", "1" if "google.colab" in sys.modules else "0")),
        data_root=Path(env("data_root", str(Path.home() / "data"))),
        compile=_flag("GCSCOOP_COMPILE", env("compile", "0")),
        text_chunk=_count("GCSCOOP_TEXT_CHUNK", env("text_chunk", "0")),
        population=max(1, _count("GCSCOOP_POPULATION", env("population", "16"))),
        paper_model=env("paper_model", "ViT-B-16"),
        paper_pretrained=env("paper_pretrained", "openai"),
    )


def pick(value, field: str):
    """An explicit value if given, else the setting in force."""
    return getattr(current(), field) if value is None else value
