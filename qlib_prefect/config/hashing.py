"""Canonical JSON and stable hashes of (nested) configs, used for cache keys and run tags.

Two configs that mean the same thing hash the same:

* mapping key order does not matter (keys are sorted; keys become strings);
* tuples, lists and ranges are all JSON lists; sets are sorted;
* dates (``datetime.date``/``datetime``, ``pd.Timestamp``, ``np.datetime64`` and date-like strings such as
  ``"2020-01-01"`` or ``"20200101"``) become ISO strings: ``"2020-01-01"`` at midnight, full ISO otherwise
  (timezone-aware values are converted to UTC first) -- YAML's unquoted ``2020-01-01`` (a ``datetime.date``)
  and the quoted string hash the same, as both mean ``pd.Timestamp("2020-01-01")`` downstream;
* numpy scalars become Python numbers; non-finite floats their ``repr``;
* classes become ``"module.QualName"``; qlib-prefect objects their class plus public attributes.

Data-carrying values (DataFrames, Series, arrays) and foreign objects raise ``TypeError``: they have no
canonical form and must not silently produce an unstable key.

This is the single implementation; ``qlib_prefect.data.cache`` (same semantics) can delegate here, as the
``config`` layer sits below ``data`` (``config`` must never import ``data``).

Example:
    >>> import datetime
    >>> config_hash({"b": (1, 2), "a": datetime.date(2020, 1, 1)}) == config_hash({"a": "2020-01-01", "b": [1, 2]})
    True
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["canonical_hash", "canonical_json", "config_hash", "describe"]

_DATE_RE = re.compile(r"^\d{4}-?\d{2}-?\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


def _norm_date(x: Any) -> str:
    ts = pd.Timestamp(x)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def describe(obj: Any) -> Any:
    """A JSON-able canonical description of ``obj`` (raises ``TypeError`` for values without one)."""
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else repr(obj)
    if isinstance(obj, str):
        if _DATE_RE.match(obj):
            try:
                return _norm_date(obj)
            except ValueError:
                return obj
        return obj
    if isinstance(obj, (pd.Timestamp, _dt.datetime, _dt.date, np.datetime64)):
        return _norm_date(obj)
    if isinstance(obj, np.generic):
        return describe(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): describe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, range)):
        return [describe(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((describe(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, slice):
        return {"__slice__": [describe(obj.start), describe(obj.stop), describe(obj.step)]}
    if isinstance(obj, (pd.DataFrame, pd.Series, np.ndarray, pd.Index)):
        raise TypeError(f"cannot hash a {type(obj).__name__} canonically")
    state = getattr(obj, "__dict__", None)
    if state is not None and type(obj).__module__.startswith("qlib_prefect"):
        public = {k: v for k, v in state.items() if not k.startswith("_")}
        return {"__class__": f"{type(obj).__module__}.{type(obj).__qualname__}", **describe(public)}
    raise TypeError(f"cannot hash an object of type {type(obj).__name__} canonically")


def canonical_json(obj: Any) -> str:
    """Stable JSON text of :func:`describe` ``(obj)`` (sorted keys, compact, ASCII)."""
    return json.dumps(describe(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_hash(obj: Any) -> str:
    """SHA-256 hex digest (64 characters) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def config_hash(obj: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of :func:`canonical_hash` (a short cache key / run tag)."""
    if not 1 <= length <= 64:
        raise ValueError(f"config_hash: length must be in 1..64, got {length}")
    return canonical_hash(obj)[:length]
