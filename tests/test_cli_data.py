"""`qlib-prefect data import/check/sample` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qlib_prefect.cli.main import main
from qlib_prefect.data.provider import LocalProvider

CSV = """Date,Open,High,Low,Close,Volume,Ticker
2020-01-02,10,11,9,10,100,aaa
2020-01-03,10,11,9,11,0,aaa
2020-01-02,1,1,1,1,10,spx
2020-01-03,1,1,1,2,10,spx
"""


def test_import_append_check(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `data check` writes ./quality/
    src = tmp_path / "p.csv"
    src.write_text(CSV)
    q = tmp_path / "q"
    rc = main(["data", "import", str(src), "--to", str(q), "--symbol-col", "Ticker", "--date-col", "Date",
               "--market", "stocks=all-but:SPX", "--fields", "open,high,low,close,volume"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 instruments x 2 dates" in out and "stocks" in out
    assert set(LocalProvider(q).instruments("stocks")) == {"AAA"}
    (tmp_path / "n.csv").write_text("Date,Open,High,Low,Close,Volume,Ticker\n2020-01-06,11,12,10,12,100,aaa\n")
    rc = main(["data", "import", str(tmp_path / "n.csv"), "--to", str(q), "--date-col", "Date", "--append"])
    assert rc == 0
    p = LocalProvider(q)
    assert len(p.calendar()) == 3
    np.testing.assert_allclose(p.load_field("change", ["AAA"]).values[2, 0], 12 / 11 - 1, rtol=1e-6)
    capsys.readouterr()
    assert main(["data", "check", str(q)]) == 0
    out = capsys.readouterr().out
    assert "zero_volume" in out and (tmp_path / "quality" / "report.json").exists()


def test_errors_give_exit_code_2(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("date,open,high,low,close,volume,symbol\n2020-01-02,1,1,1,x,1,A\n")
    rc = main(["data", "import", str(tmp_path / "bad.csv"), "--to", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.csv" in err and "'close'" in err and "2020-01-02" in err
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    (tmp_path / "d/calendars").mkdir(parents=True)
    (tmp_path / "d/calendars/day.txt").write_text("2020-01-03\n2020-01-02\n")
    assert main(["data", "check", str(tmp_path / "d")]) == 2
    assert "out of order" in capsys.readouterr().err


def test_sample_prints_directory(capsys):
    assert main(["data", "sample"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert (path / "calendars" / "day.txt").exists() and (path / "instruments" / "sp500.txt").exists()
