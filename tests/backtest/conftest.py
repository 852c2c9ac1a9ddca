"""Fixtures for the backtest tests: the golden qlib-format dataset served through a MemoryProvider."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.config import runtime
from qlib_prefect.data.base import MemoryProvider

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "backtest"
FIELDS = ["open", "close", "high", "low", "volume", "factor", "change", "vwap"]


def load_qlib_dir(root: Path, fields: list[str] = FIELDS) -> MemoryProvider:
    """Read a small qlib-format directory (calendar, instruments/all.txt, features/*/*.day.bin) into memory."""
    cal = pd.DatetimeIndex(pd.to_datetime((root / "calendars" / "day.txt").read_text().split()))
    spans: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for line in (root / "instruments" / "all.txt").read_text().splitlines():
        code, s, e = line.split("\t")
        spans.setdefault(code, []).append((pd.Timestamp(s), pd.Timestamp(e)))
    frames: dict[str, pd.DataFrame] = {}
    codes = sorted(p.name.upper() for p in (root / "features").iterdir())
    for f in fields:
        data = np.full((len(cal), len(codes)), np.nan, dtype=np.float32)
        for j, c in enumerate(codes):
            path = root / "features" / c.lower() / f"{f}.day.bin"
            if path.exists():
                arr = np.fromfile(path, dtype="<f4")
                i0 = int(arr[0])
                data[i0:i0 + len(arr) - 1, j] = arr[1:]
        frames[f] = pd.DataFrame(data, index=cal, columns=codes)
    return MemoryProvider(frames, markets={"all": spans}, calendar=cal)


@pytest.fixture(scope="session")
def golden_provider() -> MemoryProvider:
    return load_qlib_dir(GOLDEN / "data")


@pytest.fixture(scope="session")
def golden_adj_provider() -> MemoryProvider:
    """``data`` with $factor of S002 NaN on day 40 (qlib's adjusted-price mode), as the golden tool builds it."""
    prov = load_qlib_dir(GOLDEN / "data")
    frames = {k: v.copy() for k, v in prov._fields.items()}
    frames["factor"].iloc[40, frames["factor"].columns.get_loc("S002")] = np.nan
    return MemoryProvider(frames, markets={"all": prov.instruments("all")}, calendar=prov.calendar())


@pytest.fixture(scope="session")
def golden_pred() -> pd.DataFrame:
    return pd.read_parquet(GOLDEN / "pred.parquet")


@pytest.fixture(scope="session")
def golden_configs() -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((GOLDEN / "configs.json").read_text())}


@pytest.fixture
def region():
    """Switch the runtime region (trade_unit / limit_threshold / deal_price defaults); restored afterwards."""

    def _set(name: str) -> None:
        runtime.configure(region=name)

    yield _set
    runtime.reset()
