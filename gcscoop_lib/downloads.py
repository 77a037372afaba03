"""The one gate in front of every download: fetch only where GCSCOOP_ALLOW_DOWNLOAD allows it,
else fail in one line that names the fix."""
from __future__ import annotations

from typing import Callable, TypeVar

from . import settings

T = TypeVar("T")


def allowed() -> bool:
    """Whether downloads are allowed now (GCSCOOP_ALLOW_DOWNLOAD=1, the default in Colab)."""
    return settings.current().allow_download


def fetch(what: str, fetch_fn: Callable[[], T], fix: str) -> T:
    """`fetch_fn()` where downloads are allowed; else a one-line FileNotFoundError saying that
    `what` (e.g. "Fashion-MNIST in /some/folder") is missing, and naming both routes:
    GCSCOOP_ALLOW_DOWNLOAD=1, or `fix` (the manual one, e.g. "set GCSCOOP_FASHION_DIR to ...")."""
    if not allowed():
        raise FileNotFoundError(f"{what} is missing and downloads are off: set GCSCOOP_ALLOW_DOWNLOAD=1 to fetch "
                                f"it, or {fix}")
    return fetch_fn()
