"""Opt-in: regenerate the backtest goldens with the real qlib and check they equal the stored ones.

Run with ``QLIB_ORACLE_PYTHON=/work/qlib-venv/bin/python pytest -m qlib tests/backtest`` (about a minute).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "backtest"
_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_goldens_are_reproducible_with_real_qlib(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0", "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([_ORACLE, str(ROOT / "tools" / "make_backtest_goldens.py"), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ["report", "indicators", "positions", "positions_account", "risk", "indicator_analysis", "pred"]:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"),
                                      pd.read_parquet(GOLDEN / f"{name}.parquet"), check_exact=False, rtol=1e-12)
    for f in sorted((GOLDEN / "data").rglob("*.bin")):
        assert (tmp_path / "data" / f.relative_to(GOLDEN / "data")).read_bytes() == f.read_bytes(), f
