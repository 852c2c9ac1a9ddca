"""Hostile CSV imports: symbols that would escape the data directory or corrupt instrument files, float32 overflow."""

from __future__ import annotations

import csv

import pytest

from qlib_prefect.data import storage as st
from qlib_prefect.data.importer import import_csv
from qlib_prefect.errors import DataError


def _csv(path, symbols, close="10.5"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["symbol", "date", "open", "high", "low", "close", "volume"])
        for i, s in enumerate(symbols):
            w.writerow([s, f"2021-01-{4 + i:02d}", 10, 11, 9, close if i == len(symbols) - 1 else 10.5, 100])
    return path


@pytest.mark.parametrize(
    "bad", ["/tmp/evil", "..", "../escape", "a/b", "a\\b", "A\tB", "A\nB", ".hidden", "A B", "x" * 65, "A\x00B"]
)
def test_hostile_symbol_refused_naming_file_and_line(tmp_path, bad):
    src = _csv(tmp_path / "in.csv", ["AAA", "BBB", bad])
    dest = tmp_path / "q"
    with pytest.raises(DataError) as e:
        import_csv(src, dest)
    msg = str(e.value)
    assert str(src) in msg and "line 4" in msg and "not allowed" in msg
    assert not dest.exists()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "escape").exists()


def test_ordinary_symbols_accepted(tmp_path):
    src = _csv(tmp_path / "in.csv", ["BRK.B", "^GSPC", "ABC-W", "X=F"])
    import_csv(src, tmp_path / "q")
    assert sorted(st.read_instruments(tmp_path / "q", "all")) == ["ABC-W", "BRK_B", "X=F", "^GSPC"]


@pytest.mark.parametrize("value", ["1e39", "-1e39", "inf", "-inf"])
def test_float32_overflow_refused_naming_file_line_and_column(tmp_path, value):
    src = _csv(tmp_path / "in.csv", ["AAA", "AAA", "AAA"], close=value)
    dest = tmp_path / "q"
    with pytest.raises(DataError) as e:
        import_csv(src, dest)
    msg = str(e.value)
    assert str(src) in msg and "line 4" in msg and "'close'" in msg and "float32" in msg
    assert not dest.exists()
