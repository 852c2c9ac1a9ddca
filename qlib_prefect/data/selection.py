"""Selecting rows and columns of a handler frame (qlib's ``qlib/data/dataset/utils.py`` helpers).

Shared by the handlers, the data loaders and the processors (``qlib_prefect.data.handler`` re-exports them,
as qlib's handler module does); this module imports none of them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qlib_prefect.errors import DataError

__all__ = ["CS_ALL", "CS_RAW", "fetch_df_by_col", "fetch_df_by_index", "get_level_index", "is_scalar_key"]

#: ``col_set`` that drops the column-group level (qlib's ``DataHandler.CS_ALL``).
CS_ALL = "__all"
#: ``col_set`` that keeps the columns as stored (qlib's ``DataHandler.CS_RAW``).
CS_RAW = "__raw"


def get_level_index(df: pd.DataFrame, level: str | int) -> int:
    """Position of ``level`` in the row index (``("datetime", "instrument")`` when unnamed)."""
    if isinstance(level, str):
        try:
            return list(df.index.names).index(level)
        except ValueError:
            try:
                return ("datetime", "instrument").index(level)
            except ValueError:
                raise DataError(f"unknown index level {level!r}; index levels: {list(df.index.names)}") from None
    if isinstance(level, int):
        return level
    raise DataError(f"level must be a name or a position, got {level!r}")


def is_scalar_key(sel: Any) -> bool:
    """Whether ``sel`` selects one index value (a date or a code), not a slice or a list."""
    return isinstance(sel, (str, pd.Timestamp)) or (hasattr(sel, "year") and not isinstance(sel, pd.Index))


def fetch_df_by_index(
    df: pd.DataFrame, selector: Any, level: str | int | None, fetch_orig: bool = True
) -> pd.DataFrame:
    """Rows of ``df`` selected on one index level; slices are inclusive and need not hit existing dates.

    A slice or a single date on the first (sorted) level is resolved by binary search and returns a
    view; other selectors go through ``DataFrame.loc``.
    """
    if level is None or isinstance(selector, pd.MultiIndex):
        return df.loc(axis=0)[selector]
    li = get_level_index(df, level)
    if isinstance(selector, slice) and selector == slice(None, None):
        return df
    if not isinstance(df.index, pd.MultiIndex):
        if li != 0:
            raise DataError(f"level {level!r} not in a single-level index")
        return df.loc[selector]
    if li == 0 and ((isinstance(selector, slice) and selector.step is None) or is_scalar_key(selector)):
        slc = selector if isinstance(selector, slice) else slice(selector, selector)
        values = df.index.get_level_values(0)
        if values.is_monotonic_increasing:
            try:
                pos = values.slice_indexer(slc.start, slc.stop)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"cannot select {selector!r} on level {level!r}: {e}") from e
            return df.iloc[pos]
    idx_slc: tuple[Any, Any] = (selector, slice(None, None))
    if li == 1:
        idx_slc = (idx_slc[1], idx_slc[0])
    try:
        return df.loc[pd.IndexSlice[idx_slc], :]
    except KeyError as e:
        raise DataError(f"cannot select {selector!r} on level {level!r}: {e}") from e


def fetch_df_by_col(df: pd.DataFrame, col_set: str | list[str]) -> pd.DataFrame:
    """Columns of a ``(group, name)`` frame: ``__all`` drops the group level, ``__raw`` keeps everything,
    a group name selects it (single-level), a list of groups keeps 2-level columns."""
    if not isinstance(df.columns, pd.MultiIndex) or col_set == CS_RAW:
        return df
    if col_set == CS_ALL:
        return df.droplevel(axis=1, level=0)
    groups = list(dict.fromkeys(df.columns.get_level_values(0)))
    if isinstance(col_set, (list, tuple)):
        if list(col_set) == groups:
            return df
        missing = [g for g in col_set if g not in groups]
    else:
        missing = [] if col_set in groups else [col_set]
    if missing:
        raise DataError(f"column group(s) {missing} not in the data; groups: {groups}")
    return df.loc(axis=1)[col_set]
