"""The ``sys`` section of a config: ``sys.path``/``sys.rel_path`` entries appended to ``sys.path`` (qrun)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError

__all__ = ["apply_sys_path"]


def _as_list(v: Any, where: str) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (str, Path)):
        return [str(v)]
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, Path)) for x in v):
        return [str(x) for x in v]
    raise ConfigError(f"{where}: expected a path or a list of paths, got {v!r}")


def apply_sys_path(raw: Mapping[str, Any], config_dir: Path) -> list[str]:
    """Append ``sys.path``/``sys.rel_path`` entries to ``sys.path`` (once each); returns the entries added."""
    sysc = raw.get("sys") or {}
    if not isinstance(sysc, Mapping):
        raise ConfigError(f"sys: expected a mapping with 'path'/'rel_path', got {type(sysc).__name__}")
    entries = _as_list(sysc.get("path"), "sys.path")
    entries += [str((config_dir / p).resolve()) for p in _as_list(sysc.get("rel_path"), "sys.rel_path")]
    added = []
    for e in entries:
        if e not in sys.path:
            sys.path.append(e)
            added.append(e)
    return added
