"""`qlib-prefect data check` exits non-zero on damaged directories, naming the file and line (real files)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qlib_prefect.cli.main import main
from qlib_prefect.data import storage as st

CSV = """Date,Open,High,Low,Close,Volume,Ticker
2020-01-02,10,11,9,10,100,aaa
2020-01-03,10,11,9,11,100,aaa
2020-01-06,10,11,9,12,100,aaa
2020-01-02,1,1,1,1,10,spx
2020-01-03,1,1,1,2,10,spx
2020-01-06,1,1,1,3,10,spx
"""


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    (base / "p.csv").write_text(CSV)
    assert main(["data", "import", str(base / "p.csv"), "--to", str(base / "q"), "--symbol-col", "Ticker",
                 "--date-col", "Date"]) == 0
    return base / "q"


def _damage_line(q, line):
    p = st.instruments_path(q, "all")
    p.write_text(p.read_text().splitlines()[0] + "\n" + line + "\n")


DAMAGE = {
    "bad line": (lambda q: _damage_line(q, "SPX 2020-01-02 2020-01-06"), "expected SYMBOL<TAB>start<TAB>end"),
    "bad date": (lambda q: _damage_line(q, "SPX\t2020-13-45\t2020-01-06"), "cannot parse start date"),
    "start after end": (lambda q: _damage_line(q, "SPX\t2020-01-06\t2020-01-02"), "is after end"),
    "outside calendar": (lambda q: _damage_line(q, "SPX\t2019-01-02\t2020-01-06"), "outside the calendar"),
    "unknown symbol": (lambda q: _damage_line(q, "ZZZ\t2020-01-02\t2020-01-06"), "no feature folder"),
    "bin past calendar": (
        lambda q: st.feature_path(q, "AAA", "close").write_bytes(np.arange(6, dtype="<f4").tobytes()),
        "run past the calendar end",
    ),
    "bin odd size": (lambda q: st.feature_path(q, "AAA", "open").write_bytes(b"\0\0\0\0\1"), "not a multiple of 4"),
    "bin bad start": (
        lambda q: st.feature_path(q, "AAA", "low").write_bytes(np.array([-3, 1], "<f4").tobytes()),
        "start index",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_directory_fails_the_check(sound, tmp_path, capsys, case):
    q = tmp_path / "q"
    shutil.copytree(sound, q)
    damage, expected = DAMAGE[case]
    damage(q)
    assert main(["data", "check", str(q), "--no-save"]) == 1
    err = capsys.readouterr().err
    assert expected in err and str(q) in err


def test_missing_benchmark_fails_the_check(sound, capsys):
    assert main(["data", "check", str(sound), "--no-save", "--benchmark", "SPX"]) == 0
    assert main(["data", "check", str(sound), "--no-save", "--benchmark", "^GSPC"]) == 1
    assert "benchmark '^GSPC' is not listed" in capsys.readouterr().err
    shutil.rmtree(sound / "features" / "spx")
    try:
        assert main(["data", "check", str(sound), "--no-save", "--benchmark", "SPX"]) == 1
        assert "no close data" in capsys.readouterr().err
    finally:
        assert main(["data", "import", str(sound.parent / "p.csv"), "--to", str(sound), "--symbol-col", "Ticker",
                     "--date-col", "Date", "--overwrite"]) == 0
