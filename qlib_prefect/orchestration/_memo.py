"""The in-process memo of heavy objects shared by the tasks of a flow run (datasets, fitted models, raw frames).

Objects are built once per ``(kind, key)`` under a per-key lock (concurrent tasks wait for the first builder).
Kinds listed in ``single`` keep only their latest object (a flow run needs one dataset and one model); the other
kinds keep every object until dropped (the raw frames of a rolling run, one per raw group).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MEMO", "Memo"]


class Memo:
    """Build-once memo keyed by ``(kind, key)``."""

    def __init__(self, *, single: Iterable[str] = ()) -> None:
        self._single = frozenset(single)
        self._objects: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, kind: str, key: str, build: Callable[[], Any]) -> Any:
        """The object of ``(kind, key)``, built with ``build()`` on the first call."""
        mk = (kind, key)
        with self._guard:
            if mk in self._objects:
                return self._objects[mk]
            lock = self._locks.setdefault(mk, threading.Lock())
        with lock:
            if mk in self._objects:
                return self._objects[mk]
            obj = build()
            self.put(kind, key, obj)
            return obj

    def put(self, kind: str, key: str, obj: Any) -> None:
        with self._guard:
            if kind in self._single:
                for other in [k for k in self._objects if k[0] == kind]:
                    del self._objects[other]
            self._objects[(kind, key)] = obj

    def drop(self, *kinds: str) -> None:
        """Forget the objects of ``kinds`` (every kind when none is given)."""
        with self._guard:
            for k in [k for k in self._objects if not kinds or k[0] in kinds]:
                del self._objects[k]
            for k in [k for k in self._locks if not kinds or k[0] in kinds]:
                del self._locks[k]


#: the one memo of this process
MEMO = Memo(single=("dataset", "model"))
