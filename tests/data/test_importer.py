"""CSV importer: layouts, derived fields, markets, append, and named errors (real files in tmp_path)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.importer import import_csv, resolve_market
from qlib_prefect.data.provider import LocalProvider, fingerprint_dir
from qlib_prefect.errors import DataError

LONG = """date,open,high,low,close,volume,Name
2020-01-02,10,11,9,10,100,AAA
2020-01-03,10,11,9,11,100,AAA
2020-01-06,11,12,10,12,100,AAA
2020-01-02,5,6,4,5,50,BRK.B
2020-01-06,5,6,4,6,50,BRK.B
2020-01-03,1,1,1,1,10,IDX
2020-01-06,1,1,1,2,10,IDX
"""


def _write(p, text, gz=False):
    if gz:
        with gzip.open(p, "wt") as f:
            f.write(text)
    else:
        p.write_text(text)
    return p


def test_long_csv_gz(tmp_path):
    src = _write(tmp_path / "prices.csv.gz", LONG, gz=True)
    res = import_csv(src, tmp_path / "q", symbol_col="Name", markets={"stocks": "all-but:IDX", "one": "brk.b"})
    assert (res.n_instruments, res.n_dates) == (3, 3)
    p = LocalProvider(tmp_path / "q")
    cal = p.calendar()
    assert list(cal.strftime("%Y-%m-%d")) == ["2020-01-02", "2020-01-03", "2020-01-06"]
    assert set(p.instruments("all")) == {"AAA", "BRK_B", "IDX"}
    assert set(p.instruments("stocks")) == {"AAA", "BRK_B"} and set(p.instruments("one")) == {"BRK_B"}
    assert p.fields() == {"open", "high", "low", "close", "volume", "factor", "change"}
    codes = ["AAA", "BRK_B", "IDX"]
    close = p.load_field("close", codes)
    np.testing.assert_array_equal(close.values[:, 1], [5, np.nan, 6])  # gap inside the span is NaN
    assert close.start.tolist() == [0, 0, 1] and close.end.tolist() == [2, 2, 2]
    ch = p.load_field("change", codes).values
    np.testing.assert_allclose(ch[:, 0], [np.nan, 0.1, 12 / 11 - 1], rtol=1e-6)
    np.testing.assert_allclose(ch[:, 1], [np.nan, np.nan, 0.2], rtol=1e-6)  # change over consecutive rows
    fac = p.load_field("factor", codes).values
    np.testing.assert_array_equal(fac[:, 1], [1, np.nan, 1])
    assert res.quality is not None and res.quality.counts()["gap"] == 1
    assert (tmp_path / "q/quality/issues.csv").exists() and (tmp_path / "q/quality/report.json").exists()


def test_directory_of_csvs_and_field_mapping(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "msft.csv", "Date,Open,Close,Vol\n01/02/2020,1,2,3\n01/03/2020,2,3,4\n")
    _write(d / "con.csv", "Date,Open,Close,Vol\n01/03/2020,7,8,9\n")
    import_csv(d, tmp_path / "q", date_format="%m/%d/%Y", fields={"open": "Open", "close": "close", "volume": "Vol"})
    assert (tmp_path / "q/features/_qlib_con/close.day.bin").exists()
    p = LocalProvider(tmp_path / "q")
    assert p.instruments() == {
        "CON": [(pd.Timestamp("2020-01-03"), pd.Timestamp("2020-01-03"))],
        "MSFT": [(pd.Timestamp("2020-01-02"), pd.Timestamp("2020-01-03"))],
    }
    np.testing.assert_array_equal(p.load_field("volume", ["CON", "MSFT"]).values, [[np.nan, 3.0], [9.0, 4.0]])


def test_append_extends_without_touching_history(tmp_path):
    src = _write(tmp_path / "a.csv", LONG)
    q = tmp_path / "q"
    import_csv(src, q, symbol_col="Name", markets={"stocks": "all-but:IDX"})
    before = {p: p.read_bytes() for p in (q / "features").rglob("*.bin")}
    fp0 = fingerprint_dir(q)
    new = (
        "date,open,high,low,close,volume,Name\n"
        "2020-01-06,99,99,99,99,99,AAA\n"  # already stored date -> skipped
        "2020-01-07,12,13,11,13.2,100,AAA\n"
        "2020-01-08,5,6,4,6.6,50,BRK.B\n"
        "2020-01-08,3,3,3,3,30,NEW\n"
    )
    res = import_csv(_write(tmp_path / "b.csv", new), q, symbol_col="Name", append=True)
    assert res.skipped_rows == 1 and res.new_dates == 2
    for p, b in before.items():
        assert p.read_bytes()[: len(b)] == b, p
    assert fingerprint_dir(q) != fp0
    p = LocalProvider(q)
    assert len(p.calendar()) == 5
    codes = ["AAA", "BRK_B", "IDX", "NEW"]
    c = p.load_field("close", codes)
    np.testing.assert_allclose(c.values[3:, 0], [13.2, np.nan], rtol=1e-6)
    assert c.end.tolist() == [3, 4, 2, 4] and c.start.tolist() == [0, 0, 1, 4]
    np.testing.assert_allclose(c.values[3:, 1], [np.nan, 6.6], rtol=1e-6)  # NaN padding for the gap
    ch = p.load_field("change", codes).values
    np.testing.assert_allclose([ch[3, 0], ch[4, 1]], [13.2 / 12 - 1, 6.6 / 6 - 1], rtol=1e-6)  # uses last stored close
    assert np.isnan(ch[4, 3])
    inst = p.instruments("all")
    assert inst["AAA"][-1][1] == pd.Timestamp("2020-01-07") and inst["NEW"] == [(p.calendar()[4], p.calendar()[4])]
    assert inst["IDX"][-1][1] == pd.Timestamp("2020-01-06")
    stocks = p.instruments("stocks")
    assert stocks["BRK_B"][-1][1] == pd.Timestamp("2020-01-08") and "NEW" not in stocks


def test_dest_not_empty_needs_flag(tmp_path):
    src = _write(tmp_path / "a.csv", LONG)
    import_csv(src, tmp_path / "q", symbol_col="Name")
    with pytest.raises(DataError, match="not empty"):
        import_csv(src, tmp_path / "q", symbol_col="Name")
    import_csv(src, tmp_path / "q", symbol_col="Name", overwrite=True, markets={"x": "AAA"})
    assert (tmp_path / "q/instruments/x.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q.")]


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("date,open,high,low,close,volume,Name\n", "no data rows"),
        ("date,open,high,low,volume,Name\n2020-01-02,1,1,1,1,A\n", "missing required field 'close' column"),
        ("date,open,high,low,close,volume,Name\n2020-01-02,1,1,1,1,1,A\n2020-13-45,1,1,1,1,1,A\n",
         "line 3: symbol A: cannot parse date '2020-13-45'"),
        ("date,open,high,low,close,volume,Name\n2020-01-02,1,1,1,abc,1,A\n",
         "line 2: symbol A, date 2020-01-02: field 'close' .* not numeric: 'abc'"),
        ("date,open,high,low,close,volume,Name\n2020-01-02,1,1,1,1,1,A\n2020-01-02,1,1,1,2,1,A\n",
         "duplicate rows for symbol A, date 2020-01-02 with conflicting field 'close'"),
    ],
)
def test_unusable_input_named(tmp_path, text, msg):
    src = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=msg) as ei:
        import_csv(src, tmp_path / "q", symbol_col="Name")
    assert "bad.csv" in str(ei.value)
    assert not (tmp_path / "q").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]


def test_failed_append_writes_nothing(tmp_path):
    q = tmp_path / "q"
    import_csv(_write(tmp_path / "a.csv", LONG), q, symbol_col="Name")
    snap = {p: p.read_bytes() for p in q.rglob("*") if p.is_file()}
    bad = "date,open,high,low,close,volume,Name\n2020-01-07,1,1,1,x,1,AAA\n"
    with pytest.raises(DataError, match="not numeric"):
        import_csv(_write(tmp_path / "b.csv", bad), q, symbol_col="Name", append=True)
    assert {p: p.read_bytes() for p in q.rglob("*") if p.is_file()} == snap


def test_exact_duplicates_dropped_and_market_specs(tmp_path):
    text = LONG + "2020-01-02,10,11,9,10,100,AAA\n"
    res = import_csv(_write(tmp_path / "a.csv", text), tmp_path / "q", symbol_col="Name")
    assert res.rows == 7
    codes = ["AAA", "BRK_B", "IDX"]
    assert resolve_market("m", "all", codes) == codes
    assert resolve_market("m", ["idx", "aaa"], codes) == ["AAA", "IDX"]
    with pytest.raises(DataError, match=r"market 'm': unknown symbols \['ZZZ'\]"):
        resolve_market("m", "AAA,ZZZ", codes)
