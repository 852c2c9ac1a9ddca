"""qlib's ``Serializable`` pickling rules (``qlib/utils/serial.py``), shared by handlers, datasets, models and
collectors.

Which attributes survive pickling, highest priority first: names in ``config_attr`` are dropped; names in the
include list are kept; names in the exclude list are dropped; public names are kept; ``_private`` names are kept
only when ``dump_all``. So a pickled handler drops its frames (``_data``/``_infer``/``_learn``) unless
``config(dump_all=True)``, and a model keeps its fitted booster (a public attribute).

Example:
    >>> class Box(Serializable):
    ...     def __init__(self):
    ...         self.kept, self._dropped = 1, 2
    >>> Box().__getstate__()
    {'kept': 1}
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, ClassVar

from qlib_prefect.errors import ConfigError

__all__ = ["Serializable", "general_dump", "state_digest"]


class Serializable:
    """Pickle only the attributes qlib would keep (see the module docstring).

    ``config(recursive=True)`` also configures nested Serializable attributes (a dataset's handler).
    """

    pickle_backend: ClassVar[str] = "pickle"

    default_dump_all: ClassVar[bool] = False
    config_attr: ClassVar[list[str]] = ["_include", "_exclude"]
    exclude_attr: ClassVar[list[str]] = []
    include_attr: ClassVar[list[str]] = []
    FLAG_KEY: ClassVar[str] = "_qlib_serial_flag"

    @property
    def dump_all(self) -> bool:
        return bool(getattr(self, "_dump_all", self.default_dump_all))

    def _get_attr_list(self, attr_type: str) -> list[str]:
        if hasattr(self, f"_{attr_type}"):
            return list(getattr(self, f"_{attr_type}", []) or [])
        return list(getattr(type(self), f"{attr_type}_attr", []) or [])

    def _is_kept(self, key: str) -> bool:
        if key in self.config_attr:
            return False
        if key in self._get_attr_list("include"):
            return True
        if key in self._get_attr_list("exclude"):
            return False
        return self.dump_all or not key.startswith("_")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if self._is_kept(k)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        """Set ``dump_all`` / ``exclude`` / ``include`` (optionally on nested Serializable attributes)."""
        for k, v in kwargs.items():
            if k not in {"dump_all", "exclude", "include"}:
                raise ConfigError(f"{type(self).__name__}.config: unknown parameter {k!r}")
            setattr(self, f"_{k}", v)
        if recursive:
            self.__dict__[self.FLAG_KEY] = True
            try:
                for obj in list(self.__dict__.values()):
                    if isinstance(obj, Serializable) and self.FLAG_KEY not in obj.__dict__:
                        obj.config(recursive=True, **kwargs)
            finally:
                del self.__dict__[self.FLAG_KEY]

    def to_pickle(self, path: str | Path, **kwargs: Any) -> None:
        """Pickle ``self`` to ``path`` atomically; kwargs as in :meth:`config` (e.g. ``dump_all=True``)."""
        self.config(**kwargs)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(self, f, protocol=4)
        os.replace(tmp, path)

    @classmethod
    def load(cls, filepath: str | Path) -> Any:
        """Unpickle an instance of ``cls`` from ``filepath``."""
        with Path(filepath).open("rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, cls):
            raise TypeError(f"{filepath}: the pickled {type(obj).__name__} is not a {cls.__name__}")
        return obj


def general_dump(obj: Any, path: str | Path) -> None:
    """qlib's ``Serializable.general_dump``: an object's own ``to_pickle`` for qlib-style serialisables, else
    pickle (protocol ``C.dump_protocol_version``)."""
    from qlib_prefect.config.runtime import C

    path = Path(path)
    to_pickle = getattr(obj, "to_pickle", None)
    if callable(to_pickle) and getattr(obj, "_qlib_serializable", False):
        to_pickle(path)
        return
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=C.get("dump_protocol_version", 4))


def state_digest(obj: Any) -> str:
    """SHA-256 of what ``obj`` pickles to, taken structurally: two objects whose pickled states are equal value by
    value digest alike even when one shares a sub-object between two attributes and the other holds two equal
    copies (plain ``pickle.dumps`` bytes differ then: the pickle memo writes a back-reference). Leaves (arrays,
    frames, dates, foreign objects) are digested by their own pickle."""
    import hashlib

    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            h.update(b"{%d" % len(x))
            for k in sorted(x, key=repr):
                h.update(repr(k).encode() + b":")
                walk(x[k])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[%d%s" % (len(x), type(x).__name__.encode()))
            for v in x:
                walk(v)
            h.update(b"]")
        elif isinstance(x, Serializable) or (hasattr(x, "__dict__") and type(x).__module__.startswith("qlib_prefect")
                                              and not isinstance(x, type)):
            h.update(f"<{type(x).__module__}.{type(x).__qualname__}".encode())
            state = x.__getstate__()
            walk(state if isinstance(state, dict) else {"__state__": state})
            h.update(b">")
        else:
            h.update(pickle.dumps(x, protocol=pickle.HIGHEST_PROTOCOL))

    walk(obj)
    return h.hexdigest()
