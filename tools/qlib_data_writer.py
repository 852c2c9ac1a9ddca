"""A tiny, independent writer of qlib-format data directories (used only by tools/ and benchmarks/).

Layout (qlib 0.9.x, spec section 8.1):

* ``calendars/day.txt``: one ``YYYY-MM-DD`` per line, ascending;
* ``instruments/<market>.txt``: ``CODE<TAB>start<TAB>end`` per membership span;
* ``features/<code lower>/<field>.day.bin``: little-endian float32, element 0 = calendar index of the
  first value, then the values of the contiguous calendar positions ``start, start+1, ...``.

This module deliberately does not import ``qlib_prefect`` (it must stay an independent oracle-side writer).

Example:
    >>> import tempfile, numpy as np, pandas as pd
    >>> root = tempfile.mkdtemp()
    >>> cal = pd.bdate_range("2020-01-01", periods=3)
    >>> write_calendar(root, cal)
    >>> write_feature(root, "AAA", "close", 1, np.array([1.0, 2.0]))
    >>> np.fromfile(f"{root}/features/aaa/close.day.bin", dtype="<f4").tolist()
    [1.0, 1.0, 2.0]
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["write_calendar", "write_feature", "write_instruments", "write_long_frame"]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_calendar(root: str | Path, dates: Iterable, freq: str = "day") -> None:
    """Write ``calendars/<freq>.txt`` from an ascending sequence of dates."""
    idx = pd.DatetimeIndex(list(dates))
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise ValueError("calendar dates must be strictly ascending")
    text = "".join(d.strftime("%Y-%m-%d") + "\n" for d in idx)
    _atomic_write_bytes(Path(root) / "calendars" / f"{freq}.txt", text.encode())


def write_instruments(root: str | Path, market: str, spans: Sequence[tuple[str, object, object]]) -> None:
    """Write ``instruments/<market>.txt``: one ``CODE\\tstart\\tend`` line per span (dates as YYYY-MM-DD)."""
    lines = [f"{code}\t{pd.Timestamp(s):%Y-%m-%d}\t{pd.Timestamp(e):%Y-%m-%d}\n" for code, s, e in spans]
    _atomic_write_bytes(Path(root) / "instruments" / f"{market.lower()}.txt", "".join(lines).encode())


def write_feature(root: str | Path, code: str, field: str, start_index: int, values: np.ndarray,
                  freq: str = "day") -> None:
    """Write one feature file: ``[start_index, *values]`` as little-endian float32."""
    arr = np.hstack([[float(start_index)], np.asarray(values, dtype="float64")]).astype("<f4")
    _atomic_write_bytes(Path(root) / "features" / code.lower() / f"{field.lower()}.{freq}.bin", arr.tobytes())


def write_long_frame(root: str | Path, df: pd.DataFrame, calendar: pd.DatetimeIndex, fields: Sequence[str],
                     code_col: str = "code", date_col: str = "date") -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """Write a long ``(code, date, fields...)`` frame; each code's series spans its first..last date.

    Dates inside the span without a row become NaN. Returns the ``(code, first, last)`` spans.
    """
    pos = pd.Series(np.arange(len(calendar)), index=calendar)
    spans = []
    for code, g in df.groupby(code_col, sort=True):
        g = g.sort_values(date_col).set_index(date_col)
        i0, i1 = int(pos[g.index[0]]), int(pos[g.index[-1]])
        full = g.reindex(calendar[i0:i1 + 1])
        for f in fields:
            write_feature(root, str(code), f, i0, full[f].to_numpy(dtype="float64"))
        spans.append((str(code), calendar[i0], calendar[i1]))
    return spans
