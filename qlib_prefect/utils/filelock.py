"""An exclusive inter-process file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows).

Used where several processes may create the same store at once: MLflow's SQLite schema and Prefect's database.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_lock"]

_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 120.0) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (created if needed); also serialises threads of this process.
    Raises ``TimeoutError`` naming the file after ``timeout`` seconds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _thread_lock_for(str(path)):
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _os_lock(fd, timeout, path)
            try:
                yield
            finally:
                _os_unlock(fd)
        finally:
            os.close(fd)


def _thread_lock_for(key: str) -> threading.Lock:
    with _path_locks_guard:
        return _path_locks.setdefault(key, threading.Lock())


def _os_lock(fd: int, timeout: float, path: Path) -> None:
    deadline = time.monotonic() + timeout
    if os.name == "nt":  # pragma: no cover - POSIX machines run the tests
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not lock {path} within {timeout} s") from None
                time.sleep(0.05)
    import fcntl

    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not lock {path} within {timeout} s") from None
            time.sleep(0.02)


def _os_unlock(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
