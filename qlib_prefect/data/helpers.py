"""qlib's data-side utilities (``qlib.utils`` / ``qlib.utils.data``): trading-date shifts, a data-directory
check and ``guess_horizon``, over the process-wide provider."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.api import D
from qlib_prefect.data.storage import fname_to_code, read_instruments

__all__ = [
    "exists_qlib_data",
    "get_date_by_shift",
    "get_date_range",
    "get_next_trading_date",
    "get_pre_trading_date",
    "guess_horizon",
]


def get_date_by_shift(
    trading_date: Any,
    shift: int,
    future: bool = False,
    clip_shift: bool = True,
    freq: str = "day",
    align: str | None = None,
) -> pd.Timestamp:
    """The trading date ``shift`` days from ``trading_date`` (qlib's rules: ``align=None`` requires a trading
    day, ``"left"``/``"right"`` align to the nearest one first; out-of-range shifts clip unless
    ``clip_shift=False``)."""
    cal = list(D.calendar(future=future, freq=freq))
    trading_date = pd.to_datetime(trading_date)
    if align is None:
        if trading_date not in cal:
            raise ValueError(f"{trading_date} is not trading day!")
        idx = bisect.bisect_left(cal, trading_date)
    elif align == "left":
        idx = bisect.bisect_right(cal, trading_date) - 1
    elif align == "right":
        idx = bisect.bisect_left(cal, trading_date)
    else:
        raise ValueError(f"align with value `{align}` is not supported")
    k = idx + shift
    if k < 0 or k >= len(cal):
        if not clip_shift:
            raise IndexError(f"The shift_index({k}) of the trading day ({trading_date}) is out of range")
        k = int(np.clip(k, 0, len(cal) - 1))
    return cal[k]


def get_date_range(trading_date: Any, left_shift: int = 0, right_shift: int = 0, future: bool = False) -> np.ndarray:
    """Trading dates from ``trading_date + left_shift`` to ``trading_date + right_shift``."""
    start = get_date_by_shift(trading_date, left_shift, future=future)
    end = get_date_by_shift(trading_date, right_shift, future=future)
    return D.calendar(start, end, future=future)


def get_next_trading_date(trading_date: Any, future: bool = False) -> pd.Timestamp:
    return get_date_by_shift(trading_date, 1, future=future)


def get_pre_trading_date(trading_date: Any, future: bool = False) -> pd.Timestamp:
    return get_date_by_shift(trading_date, -1, future=future)


def exists_qlib_data(qlib_dir: str | Path) -> bool:
    """Whether ``qlib_dir`` holds qlib-format data: non-empty ``calendars/``, ``instruments/``, ``features/``,
    feature files for each (non-future) calendar and every code of ``instruments/all.txt``."""
    root = Path(qlib_dir).expanduser()
    dirs = [root / "calendars", root / "instruments", root / "features"]
    if not all(d.is_dir() and any(d.iterdir()) for d in dirs):
        return False
    features = dirs[2]
    for cal in dirs[0].iterdir():
        if "_future" not in cal.name and not any(features.rglob(f"*.{cal.name.split('.')[0]}.bin")):
            return False
    codes = {fname_to_code(p.name.lower()) for p in features.iterdir()}
    try:
        listed = {c.lower() for c in read_instruments(root, "all")}
    except Exception:
        return False
    missing = listed - codes
    return not (missing and any("sht" not in c for c in missing))


def guess_horizon(label: list[str]) -> int:
    """How many dates after ``t`` the first label expression reads (qlib: its right window extension)."""
    from qlib_prefect.data.expression.engine import window_size
    from qlib_prefect.data.expression.parser import parse

    return int(window_size(parse(str(label[0]).replace(" ", "")))[1])
