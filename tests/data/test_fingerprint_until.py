"""``LocalProvider.fingerprint(until=...)``: a digest of the data dated up to ``until`` only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.errors import DataFormatError


def _frame(end: str, *, late_code: bool = False) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", end)
    rows = []
    for k, code in enumerate(["AAA", "BBB", "CCC"]):
        d = dates[5:] if code == "CCC" else dates  # CCC starts later
        x = np.arange(len(d), dtype=float) + 10 * (k + 1)
        rows.append(pd.DataFrame({"symbol": code, "date": d, "close": x, "volume": x * 100}))
    if late_code:  # an instrument whose data starts after 2020-03-01
        d = dates[dates > "2020-03-01"]
        rows.append(pd.DataFrame({"symbol": "DDD", "date": d, "close": 1.0, "volume": 1.0}))
    return pd.concat(rows, ignore_index=True)


def _make(dest: Path, end: str, **kw: bool) -> LocalProvider:
    import_frame(_frame(end, **kw), dest, fields=["close", "volume"], markets={"mkt": "all"}, quality=False)
    return LocalProvider(dest)


def test_prefix_unchanged_by_appended_data(tmp_path: Path) -> None:
    short = _make(tmp_path / "a", "2020-02-28")
    long = _make(tmp_path / "b", "2020-04-30", late_code=True)
    assert short.fingerprint() != long.fingerprint()
    for until in ("2020-01-15", "2020-02-28", pd.Timestamp("2020-02-28")):
        assert short.fingerprint(until=until) == long.fingerprint(until=until)
    # a date the short data lacks: the long data has more -> different
    assert short.fingerprint(until="2020-03-02") != long.fingerprint(until="2020-03-02")
    assert long.fingerprint(until="2020-01-15") != long.fingerprint(until="2020-02-28")


def _patch_value(root: Path, code: str, field: str, pos: int, value: float) -> None:
    p = root / "features" / code.lower() / f"{field}.day.bin"
    arr = np.fromfile(p, dtype="<f4")
    arr[1 + pos] = value
    arr.tofile(p)


def test_prefix_sees_changes_up_to_until_only(tmp_path: Path) -> None:
    prov = _make(tmp_path / "a", "2020-03-31")
    cal = prov.calendar()
    until = cal[30]
    before = prov.fingerprint(until=until)
    _patch_value(tmp_path / "a", "AAA", "close", 35, -1.0)  # after until: same digest
    assert LocalProvider(tmp_path / "a").fingerprint(until=until) == before
    _patch_value(tmp_path / "a", "AAA", "close", 30, -1.0)  # the until date itself: changes
    assert LocalProvider(tmp_path / "a").fingerprint(until=until) != before


def test_bad_until(tmp_path: Path) -> None:
    prov = _make(tmp_path / "a", "2020-02-28")
    with pytest.raises(DataFormatError, match="not a date"):
        prov.fingerprint(until="not-a-date")
