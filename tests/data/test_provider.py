"""LocalProvider over real files: panels, spans, missing files, caching, fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import storage as st
from qlib_prefect.data.base import Provider
from qlib_prefect.data.provider import LocalProvider, fingerprint_dir
from qlib_prefect.errors import DataFormatError


@pytest.fixture
def data_dir(tmp_path):
    cal = pd.bdate_range("2020-01-01", periods=6)
    st.write_calendar(tmp_path, cal)
    st.write_bin(st.feature_path(tmp_path, "AAA", "close"), 0, [1.0, 2.0, 3.0])
    st.write_bin(st.feature_path(tmp_path, "AAA", "open"), 1, [1.5, 2.5])
    st.write_bin(st.feature_path(tmp_path, "BBB", "close"), 2, [5.0, np.nan, 7.0, 8.0])
    st.write_instruments(tmp_path, "all", {"AAA": [(cal[0], cal[2])], "BBB": [(cal[2], cal[5])]})
    st.write_instruments(tmp_path, "two", {"BBB": [(cal[2], cal[3]), (cal[5], cal[5])]})
    return tmp_path


def test_protocol_and_panels(data_dir):
    p = LocalProvider(data_dir)
    assert isinstance(p, Provider)
    cal = p.calendar()
    assert len(cal) == 6 and cal[0] == pd.Timestamp("2020-01-01")
    assert p.instruments("TWO") == {"BBB": [(cal[2], cal[3]), (cal[5], cal[5])]}
    fd = p.load_field("$close", ["BBB", "AAA", "ZZZ"])
    assert fd.values.dtype == np.float32 and fd.values.shape == (6, 3)
    np.testing.assert_array_equal(fd.values[:, 0], [np.nan, np.nan, 5, np.nan, 7, 8])
    np.testing.assert_array_equal(fd.values[:, 1], [1, 2, 3, np.nan, np.nan, np.nan])
    assert np.isnan(fd.values[:, 2]).all()
    assert fd.start.tolist() == [2, 0, 6] and fd.end.tolist() == [5, 2, -1]
    op = p.load_field("open", ["AAA", "BBB"])  # BBB has no open file -> NaN column, empty span
    assert op.start.tolist() == [1, 6] and op.end.tolist() == [2, -1]
    assert p.fields() == {"close", "open"}


def test_cache_returns_copies_and_refreshes_on_append(data_dir):
    p = LocalProvider(data_dir)
    a = p.load_field("close", ["AAA"])
    a.values[:] = -1  # a caller mutating its panel must not poison the cache
    assert p.load_field("close", ["AAA"]).values[0, 0] == 1.0
    cal = [*p.calendar(), pd.Timestamp("2020-01-09")]
    st.append_bin(st.feature_path(data_dir, "AAA", "close"), 6, [4.0])
    st.write_calendar(data_dir, cal)
    fd = p.load_field("close", ["AAA"])
    assert len(p.calendar()) == 7 and fd.values[6, 0] == 4.0 and fd.end.tolist() == [6]


def test_corrupted_bin_named(data_dir):
    (data_dir / "features/bbb/close.day.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(DataFormatError, match=r"bbb/close\.day\.bin.*not a multiple of 4"):
        LocalProvider(data_dir).load_field("close", ["BBB"])
    np.array([4.0, 1, 2, 3], dtype="<f4").tofile(data_dir / "features/bbb/close.day.bin")
    with pytest.raises(DataFormatError, match="run past the calendar end"):
        LocalProvider(data_dir).load_field("close", ["BBB"])


def test_unknown_market_and_missing_dir(data_dir, tmp_path_factory):
    with pytest.raises(DataFormatError, match=r"unknown market 'csi300'.*\['all', 'two'\]"):
        LocalProvider(data_dir).instruments("csi300")
    with pytest.raises(DataFormatError, match="not found"):
        LocalProvider(tmp_path_factory.mktemp("empty") / "nope").calendar()


def test_fingerprint_changes_with_content(data_dir):
    p = LocalProvider(data_dir)
    f0 = p.fingerprint()
    assert len(f0) == 16 and int(f0, 16) >= 0
    assert p.fingerprint() == f0 == fingerprint_dir(data_dir)
    cal = [*p.calendar(), pd.Timestamp("2020-01-09")]
    st.write_calendar(data_dir, cal)
    f1 = fingerprint_dir(data_dir)
    assert f1 != f0
    path = st.feature_path(data_dir, "AAA", "close")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # same size, one bit of one value
    path.write_bytes(bytes(raw))
    f2 = fingerprint_dir(data_dir)
    assert f2 != f1
    st.write_instruments(data_dir, "extra", {"AAA": [("2020-01-01", "2020-01-02")]})
    assert fingerprint_dir(data_dir) != f2


def test_cache_bounded_by_bytes(data_dir):
    p = LocalProvider(data_dir, cache_bytes=6 * 4 * 2)  # room for one (6 dates x 2 codes) float32 panel
    p.load_field("close", ["AAA", "BBB"])
    p.load_field("open", ["AAA", "BBB"])
    assert list(p._lru) == [("open", ("AAA", "BBB"))]
    uncached = LocalProvider(data_dir, cache_bytes=0)
    a = uncached.load_field("close", ["AAA"])
    assert a.values[0, 0] == 1.0 and not uncached._lru


_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")
_ORACLE_SCRIPT = r"""
import json, sys
import qlib
from qlib.data import D
qlib.init(provider_uri=sys.argv[1], region="us")
out = {"cal": [str(d.date()) for d in D.calendar()],
       "inst": {k: [[str(a.date()), str(b.date())] for a, b in v]
                for k, v in D.list_instruments(D.instruments("two")).items()}}
df = D.features(["AAA", "BBB", "CON"], ["$close", "$open"], freq="day")
out["close"] = {f"{i}|{d.date()}": (None if v != v else float(v)) for (i, d), v in df["$close"].items()}
print(json.dumps(out))
"""


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_real_qlib_reads_our_files_the_same(data_dir):
    cal = LocalProvider(data_dir).calendar()
    st.write_bin(st.feature_path(data_dir, "CON", "close"), 4, [42.0, 43.0])  # reserved Windows name
    st.write_instruments(data_dir, "all", {"AAA": [(cal[0], cal[2])], "BBB": [(cal[2], cal[5])],
                                           "CON": [(cal[4], cal[5])]})
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([_ORACLE, "-c", _ORACLE_SCRIPT, str(data_dir)], capture_output=True, text=True, env=env,
                       timeout=300, check=True)
    q = json.loads(r.stdout.strip().splitlines()[-1])
    p = LocalProvider(data_dir)
    assert q["cal"] == list(p.calendar().strftime("%Y-%m-%d"))
    ours = {k: [[f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}"] for a, b in v] for k, v in p.instruments("two").items()}
    assert q["inst"] == ours
    fd = p.load_field("close", ["AAA", "BBB", "CON"])
    assert q["close"]["CON|2020-01-07"] == 42.0 and len(q["close"]) == 3 + 4 + 2
    for key, v in q["close"].items():
        code, day = key.split("|")
        j = ["AAA", "BBB", "CON"].index(code)
        t = p.calendar().get_loc(pd.Timestamp(day))
        ours_v = fd.values[t, j]
        assert (v is None and np.isnan(ours_v)) or v == pytest.approx(float(ours_v)), key
