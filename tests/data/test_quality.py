"""Quality checks on a small hand-made panel, plus saving/rendering."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from qlib_prefect.data.quality import compute_quality

NAN = np.nan


def _report(**kw):
    cal = pd.bdate_range("2021-01-04", periods=6)
    # two instruments; B starts at position 1
    close = np.array([[10, NAN], [10, 5], [16, 5], [10, NAN], [10, 5], [10, 5]], float)
    open_ = np.array([[10, NAN], [10, 5], [NAN, 5], [10, NAN], [10, 5], [10, 5]], float)
    high = np.array([[11, NAN], [11, 6], [17, 6], [11, NAN], [11, 6], [9.5, 6]], float)
    low = np.array([[9, NAN], [9, 4], [15, 4], [9, NAN], [9, 4], [9, -1]], float)
    vol = np.array([[1, NAN], [1, 0], [1, 1], [1, NAN], [1, 1], [1, 1]], float)
    panels = {"open": open_, "high": high, "low": low, "close": close, "volume": vol}
    return compute_quality(panels, cal, ["A", "B"], np.array([0, 1]), np.array([5, 5]), **kw), cal


def test_checks_find_planted_issues():
    rep, cal = _report()
    c = rep.counts()
    assert c["nan"] == 1 and rep.has("nan", "A", cal[2])
    assert c["gap"] == 1 and rep.has("gap", "B", cal[3])
    assert c["zero_volume"] == 1 and rep.has("zero_volume", "B", cal[1])
    assert c["non_positive"] == 1 and rep.has("non_positive", "B", cal[5])
    assert c["bracket"] == 1 and rep.has("bracket", "A", cal[5])  # high 9.5 < close 10
    assert c["jump"] == 1 and rep.has("jump", "A", cal[2])  # +60% > 0.5; the -37.5% way back is not
    assert c["spike"] == 1 and rep.has("spike", "A", cal[2])


def test_jump_threshold_configurable():
    rep, cal = _report(jump_threshold=0.3)
    assert rep.counts()["jump"] == 2 and rep.has("jump", "A", cal[2]) and rep.has("jump", "A", cal[3])
    assert _report(jump_threshold=0.7)[0].counts()["jump"] == 0


def test_summary_save_and_render(tmp_path):
    rep, _ = _report()
    row = rep.summary[(rep.summary.check == "nan") & (rep.summary.field == "open")].iloc[0]
    assert row["count"] == 1 and 0 < row["share"] < 1
    paths = rep.save(tmp_path / "quality")
    data = json.loads(paths["json"].read_text())
    assert data["counts"]["gap"] == 1 and data["n_instruments"] == 2
    issues = pd.read_csv(paths["issues"])
    assert list(issues.columns) == ["check", "symbol", "date", "field", "value"] and len(issues) == len(rep.issues)
    from rich.console import Console

    con = Console(record=True, width=150)
    rep.render(con)
    assert "zero_volume" in con.export_text()
