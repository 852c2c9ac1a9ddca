"""Small qlib utilities used in user code: ``lazy_sort_index``, ``deepcopy_basic_type``."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["deepcopy_basic_type", "lazy_sort_index"]


def lazy_sort_index(df: pd.DataFrame, axis: int = 0) -> pd.DataFrame:
    """``df`` itself when its index (``axis=1``: columns) is already increasing, else ``df.sort_index``."""
    idx = df.index if axis == 0 else df.columns
    return df if idx.is_monotonic_increasing else df.sort_index(axis=axis)


def deepcopy_basic_type(obj: Any) -> Any:
    """Copy tuples, lists and dicts recursively; every other object is shared (qlib: for task configs that
    hold a handler object). Recursive structures are not supported, as in qlib."""
    if isinstance(obj, tuple):
        return tuple(deepcopy_basic_type(i) for i in obj)
    if isinstance(obj, list):
        return [deepcopy_basic_type(i) for i in obj]
    if isinstance(obj, dict):
        return {k: deepcopy_basic_type(v) for k, v in obj.items()}
    return obj
