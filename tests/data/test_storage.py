"""qlib binary format: round trips, an independent writer, and named errors on corrupted files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import storage as st
from qlib_prefect.errors import DataFormatError


def _qlib_style_dir(root, cal, series):
    """Minimal independent writer, exactly like the acceptance script (np.hstack(...).astype('<f4'))."""
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    (root / "calendars/day.txt").write_text("\n".join(d.strftime("%Y-%m-%d") for d in cal) + "\n")
    lines = []
    for code, (i0, vals) in series.items():
        d = root / "features" / code.lower()
        d.mkdir(parents=True)
        np.hstack([[i0], vals]).astype("<f4").tofile(d / "close.day.bin")
        lines.append(f"{code}\t{cal[i0]:%Y-%m-%d}\t{cal[i0 + len(vals) - 1]:%Y-%m-%d}")
    (root / "instruments/all.txt").write_text("\n".join(lines) + "\n")


def test_read_independent_writer(tmp_path):
    cal = pd.bdate_range("2020-01-01", periods=6)
    _qlib_style_dir(tmp_path, cal, {"AAA": (0, [1.0, 2.0, np.nan]), "BBB": (2, [5.5, 6.5, 7.5, 8.5])})
    assert list(st.read_calendar(tmp_path)) == list(cal)
    inst = st.read_instruments(tmp_path, "ALL", cal)
    assert inst == {"AAA": [(cal[0], cal[2])], "BBB": [(cal[2], cal[5])]}
    s, v = st.read_bin(tmp_path / "features/bbb/close.day.bin", len(cal))
    assert s == 2 and v.dtype == np.dtype("<f4") and v.tolist() == [5.5, 6.5, 7.5, 8.5]
    assert st.bin_span(tmp_path / "features/aaa/close.day.bin") == (0, 2)
    assert st.list_fields(tmp_path) == {"close"} and st.list_codes(tmp_path) == ["aaa", "bbb"]


def test_round_trip_bytes(tmp_path):
    cal = pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-04"])
    st.write_calendar(tmp_path, cal)
    assert (tmp_path / "calendars/day.txt").read_text() == "2021-03-01\n2021-03-02\n2021-03-04\n"
    st.write_instruments(tmp_path, "Mkt", {"X": [(cal[0], cal[0]), (cal[2], cal[2])]})
    assert (tmp_path / "instruments/mkt.txt").read_text() == "X\t2021-03-01\t2021-03-01\nX\t2021-03-04\t2021-03-04\n"
    assert st.read_instruments(tmp_path, "mkt")["X"] == [(cal[0], cal[0]), (cal[2], cal[2])]
    p = st.feature_path(tmp_path, "X", "$Close")
    st.write_bin(p, 1, [3.25, np.nan])
    assert p.read_bytes() == np.array([1.0, 3.25, np.nan], dtype="<f4").tobytes()
    st.append_bin(p, 4, [9.0])
    assert p.read_bytes()[:12] == np.array([1.0, 3.25, np.nan], dtype="<f4").tobytes()
    s, v = st.read_bin(p)
    assert s == 1 and np.isnan(v[1:3]).all() and v[3] == 9.0 and len(v) == 4
    with pytest.raises(DataFormatError, match="already stored"):
        st.append_bin(p, 3, [1.0])
    assert not list(p.parent.glob("*.tmp")), "no temp files left behind"


def test_reserved_windows_names(tmp_path):
    assert st.code_to_fname("CON") == "_qlib_con" and st.code_to_fname("SH600000") == "sh600000"
    assert st.fname_to_code("_qlib_con") == "con"
    assert st.feature_path(tmp_path, "Lpt1", "close").parent.name == "_qlib_lpt1"


def test_future_calendar_falls_back(tmp_path):
    st.write_calendar(tmp_path, pd.to_datetime(["2020-01-02"]))
    assert len(st.read_calendar(tmp_path, future=True)) == 1
    st.write_calendar(tmp_path, pd.to_datetime(["2020-01-02", "2020-01-03"]), future=True)
    assert len(st.read_calendar(tmp_path, future=True)) == 2
    assert (tmp_path / "calendars/day_future.txt").exists()


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("2020-01-02\n2020-01-02\n", "line 2: duplicate date"),
        ("2020-01-03\n2020-01-02\n", "line 2: date out of order"),
        ("2020-01-02\nnot-a-date\n", "line 2: cannot parse date 'not-a-date'"),
    ],
)
def test_bad_calendar(tmp_path, text, msg):
    (tmp_path / "calendars").mkdir()
    (tmp_path / "calendars/day.txt").write_text(text)
    with pytest.raises(DataFormatError, match=msg) as ei:
        st.read_calendar(tmp_path)
    assert "day.txt" in str(ei.value)


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ("A\t2020-01-02\tnope", "line 2: A: cannot parse end date 'nope'"),
        ("A\t2020-01-03\t2020-01-02", "line 2: A: start 2020-01-03 is after end 2020-01-02"),
        ("A\t2030-01-01\t2030-02-01", "line 2: A: span .* lies outside the calendar"),
        ("A 2020-01-02 2020-01-03", "line 2: expected SYMBOL<TAB>start<TAB>end"),
    ],
)
def test_bad_instruments(tmp_path, line, msg):
    cal = pd.bdate_range("2020-01-01", periods=5)
    st.write_calendar(tmp_path, cal)
    (tmp_path / "instruments").mkdir()
    (tmp_path / "instruments/all.txt").write_text(f"B\t2020-01-01\t2020-01-03\n{line}\n")
    with pytest.raises(DataFormatError, match=msg) as ei:
        st.read_instruments(tmp_path, "all", cal)
    assert "all.txt" in str(ei.value)


def test_unknown_market_lists_available(tmp_path):
    st.write_instruments(tmp_path, "all", {"A": [("2020-01-01", "2020-01-02")]})
    st.write_instruments(tmp_path, "sp500", {"A": [("2020-01-01", "2020-01-02")]})
    with pytest.raises(DataFormatError, match=r"unknown market 'csi300'.*\['all', 'sp500'\]"):
        st.read_instruments(tmp_path, "csi300")


def test_corrupted_bins(tmp_path):
    p = tmp_path / "x.day.bin"
    p.write_bytes(np.array([0.0, 1.0], dtype="<f4").tobytes() + b"\x00\x01")
    with pytest.raises(DataFormatError, match=r"x\.day\.bin.*not a multiple of 4"):
        st.read_bin(p)
    for bad in (1.5, -1.0, np.nan):
        np.array([bad, 1.0], dtype="<f4").tofile(p)
        with pytest.raises(DataFormatError, match=r"start index .* not a non-negative integer"):
            st.read_bin(p)
    np.array([3.0, 1.0, 2.0], dtype="<f4").tofile(p)
    assert st.read_bin(p, calendar_len=5)[0] == 3
    with pytest.raises(DataFormatError, match="run past the calendar end"):
        st.read_bin(p, calendar_len=4)
