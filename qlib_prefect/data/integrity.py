"""Structural check of a qlib data directory: every problem that makes files unusable, listed at once.

Used by ``qlib-prefect data check`` (non-zero exit when any is found) before the quality report. Looks at:
the calendar (parseable, ascending); every ``instruments/<market>.txt`` line (three tab-separated fields, ISO
dates, start <= end, inside the calendar, a feature folder for the symbol); every ``features/*/*.day.bin``
(size a multiple of 4, a valid start index, not running past the calendar end, unless an append is under way);
and, when given, the benchmark (listed in ``all.txt`` with a ``close`` file). qlib checks none of this and fails
later, or not at all.

Example:
    >>> problems("~/qlib_data/us", benchmark="^GSPC")  # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from qlib_prefect.data import storage as st
from qlib_prefect.errors import DataFormatError

__all__ = ["problems"]


def problems(root: str | Path, *, benchmark: str | None = None, freq: str = "day") -> list[str]:
    """Every structural problem of ``root`` as one message each (file and line named); ``[]`` when sound.

    Raises:
        DataFormatError: no usable calendar (not a data directory; nothing else can be checked).
    """
    root = Path(root).expanduser()
    out: list[str] = []
    cal = st.read_calendar(root, freq)
    features = root / "features"
    codes_on_disk = {e.name for e in os.scandir(features) if e.is_dir()} if features.is_dir() else set()
    listed: dict[str, str] = {}
    for market in st.list_markets(root):
        out.extend(_instrument_problems(st.instruments_path(root, market), cal, codes_on_disk, listed, market))
    suffix = f".{freq}.bin"
    cal_len = None if st.append_pending(root) else len(cal)  # an append under way: tails precede its calendar
    if features.is_dir():
        for d in sorted(os.scandir(features), key=lambda e: e.name):
            if not d.is_dir():
                continue
            for f in sorted(os.scandir(d.path), key=lambda e: e.name):
                if f.name.endswith(suffix):
                    try:
                        with open(f.path, "rb") as fh:
                            st.decode_bin(f.path, fh.read(), cal_len)
                    except DataFormatError as e:
                        out.append(str(e))
    if benchmark is not None:
        code = listed.get(benchmark.lower())
        if code is None:
            out.append(f"{st.instruments_path(root, 'all')}: benchmark {benchmark!r} is not listed")
        elif not st.feature_path(root, code, "close", freq).exists():
            out.append(f"{st.feature_path(root, code, 'close', freq)}: benchmark {benchmark!r} has no close data")
    return out


def _instrument_problems(
    path: Path, cal: pd.DatetimeIndex, on_disk: set[str], listed: dict[str, str], market: str
) -> list[str]:
    out: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [f"{path}: unreadable ({e})"]
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        parts = raw.split("\t")
        if len(parts) != 3 or not parts[0].strip():
            out.append(f"{path}: line {i}: expected SYMBOL<TAB>start<TAB>end, got {raw!r}")
            continue
        code, a, b = (p.strip() for p in parts)
        dates = []
        for what, txt in (("start", a), ("end", b)):
            try:
                dates.append(pd.Timestamp(txt) if len(txt) >= 8 else None)
            except ValueError:
                dates.append(None)
            if dates[-1] is None:
                out.append(f"{path}: line {i}: {code}: cannot parse {what} date {txt!r}")
        if market == "all":
            listed[code.lower()] = code
        if st.code_to_fname(code) not in on_disk:
            out.append(f"{path}: line {i}: {code}: no feature folder {st.code_to_fname(code)!r}")
        if None in dates:
            continue
        s, e = dates
        if s > e:
            out.append(f"{path}: line {i}: {code}: start {a} is after end {b}")
        elif len(cal) and (s < cal[0] or e > cal[-1]):
            out.append(
                f"{path}: line {i}: {code}: span {a}..{b} lies outside the calendar "
                f"{cal[0]:%Y-%m-%d}..{cal[-1]:%Y-%m-%d}"
            )
    return out
