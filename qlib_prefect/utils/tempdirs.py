"""Temporary build folders of this process (content-store entries, handler-cache entries being written).

A build registers its folder while it writes; :func:`remove_unfinished` deletes the ones still registered. The
CLI calls it when an interrupted command exits without waiting for its stage threads (no ``.tmp-*`` left behind).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

__all__ = ["register", "release", "remove_unfinished"]

_LIVE: set[Path] = set()
_LOCK = threading.Lock()


def register(path: Path) -> None:
    with _LOCK:
        _LIVE.add(Path(path))


def release(path: Path) -> None:
    with _LOCK:
        _LIVE.discard(Path(path))


def remove_unfinished() -> int:
    """Delete every registered folder; returns how many there were."""
    with _LOCK:
        paths = list(_LIVE)
        _LIVE.clear()
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    return len(paths)
