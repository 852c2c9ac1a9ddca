"""The bundled S&P 500 sample materialises to the acceptance layout (once per session)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.data.quality import check_dir
from qlib_prefect.data.sample import (
    SAMPLE_BENCHMARK,
    SAMPLE_MARKET,
    SAMPLE_REGION,
    bundled_dir,
    sample_data_dir,
)


@pytest.fixture(scope="session")
def sample_dir():
    return sample_data_dir()  # under the session's QLIB_PREFECT_HOME (tests/conftest.py)


def test_layout(sample_dir):
    assert (SAMPLE_MARKET, SAMPLE_BENCHMARK, SAMPLE_REGION) == ("sp500", "SPX", "us")
    p = LocalProvider(sample_dir)
    cal = p.calendar()
    assert len(cal) == 1259 and cal[0] == pd.Timestamp("2013-02-08") and cal[-1] == pd.Timestamp("2018-02-07")
    allm, sp = p.instruments("all"), p.instruments("sp500")
    assert len(allm) == 506 and len(sp) == 505 and "SPX" in allm and "SPX" not in sp and "BRK_B" in sp
    assert p.fields() == {"open", "high", "low", "close", "volume", "factor", "change"}
    assert json.loads((sample_dir / "sample.json").read_text())["instruments"] == 506
    assert sample_data_dir() == sample_dir  # cached


def test_values_match_csv_bytes(sample_dir):
    """Independent minimal writer (acceptance-script style) for two codes gives identical bytes."""
    df = pd.read_csv(bundled_dir() / "all_stocks_5yr.csv.gz", parse_dates=["date"])
    cal = pd.DatetimeIndex(sorted(df["date"].unique()))
    for name in ("AAPL", "APTV"):
        g = df[df.Name == name].sort_values("date").set_index("date")
        i0, i1 = cal.get_loc(g.index[0]), cal.get_loc(g.index[-1])
        full = g.reindex(cal[i0 : i1 + 1])
        change = g["close"].pct_change().reindex(full.index)
        for f, v in (("close", full["close"]), ("volume", full["volume"]), ("change", change)):
            want = np.hstack([[i0], v.to_numpy(dtype="float64")]).astype("<f4").tobytes()
            assert (sample_dir / "features" / name.lower() / f"{f}.day.bin").read_bytes() == want, (name, f)
    spx = LocalProvider(sample_dir).load_field("close", ["SPX"]).values[:, 0]
    assert not np.isnan(spx).any() and 1400 < spx[0] < 1600


def test_known_glitches_found(sample_dir):
    saved = pd.read_csv(sample_dir / "quality" / "issues.csv")
    rep = check_dir(sample_dir, save=False)
    c = rep.counts()
    assert c["nan"] == 11 and c["zero_volume"] == 4 and c["bracket"] == 12
    assert rep.has("bracket", "LNT", "2016-05-19") and rep.has("spike", "LNT", "2016-05-19")
    assert rep.has("spike", "NWL", "2017-09-14")
    assert len(saved) == len(rep.issues)
