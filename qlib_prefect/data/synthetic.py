"""Synthetic qlib-format markets (benchmarks and tests at scale; no network, deterministic from a seed).

``write_synthetic_market(root, n_stocks=N, n_days=T)`` writes a qlib data directory of N stocks over T business
days: geometric random-walk closes, open/high/low around them, volume, ``factor`` (1, with a few split-like steps)
and ``vwap``; a share of the stocks list late or delist early (their files and membership spans cover only their
life), and a few NaN runs (suspensions) inside the lives. Markets: ``all`` (everything) and ``csi300`` (the same
spans, so qlib's example configs run unchanged). Written with the project's own binary writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qlib_prefect.data.storage import feature_path, write_bin, write_calendar, write_instruments

__all__ = ["FIELDS", "write_synthetic_market"]

FIELDS = ("open", "high", "low", "close", "volume", "factor", "vwap")


def write_synthetic_market(
    root: str | Path,
    *,
    n_stocks: int,
    n_days: int,
    seed: int = 0,
    start: str = "2005-01-04",
    late_share: float = 0.2,
    delist_share: float = 0.1,
    nan_runs: int = 2,
) -> Path:
    """Write the market under ``root`` and return it. Stock ``i`` is ``SH{600000 + i}``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    cal = pd.bdate_range(start, periods=n_days)
    write_calendar(root, cal)
    spans: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for i in range(n_stocks):
        code = f"SH{600000 + i}"
        a = int(rng.integers(1, max(2, n_days // 2))) if rng.random() < late_share else 0
        b = int(rng.integers(max(a + 2, n_days // 2), n_days)) if rng.random() < delist_share else n_days - 1
        n = b - a + 1
        ret = rng.normal(0.0003, 0.02, n)
        close = 10.0 * np.exp(np.cumsum(ret)) * float(rng.uniform(0.5, 5))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.008, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.008, n)))
        volume = np.round(np.exp(rng.normal(13, 0.6, n)))
        factor = np.ones(n)
        if n > 20 and rng.random() < 0.1:
            factor[int(rng.integers(10, n)):] = 2.0
        vwap = (high + low + close) / 3
        cols = {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "factor": factor,
                "vwap": vwap}
        for _ in range(nan_runs if n > 40 else 0):  # suspensions: every field NaN for a few days
            s = int(rng.integers(0, n - 5))
            ln = int(rng.integers(1, 6))
            for v in cols.values():
                v[s : s + ln] = np.nan
        for f, v in cols.items():
            p = feature_path(root, code, f)
            p.parent.mkdir(parents=True, exist_ok=True)
            write_bin(p, a, v)
        spans[code] = [(cal[a], cal[b])]
    write_instruments(root, "all", spans)
    write_instruments(root, "csi300", spans)
    return root
