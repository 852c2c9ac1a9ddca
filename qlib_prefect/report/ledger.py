"""Ledgers of a backtest: the daily positions and the orders/trades, as flat tables (qlib keeps positions only
inside ``positions_normal_1day.pkl`` and orders inside the pickled ``Indicator``).

Both are built from PortAnaRecord's artifacts, so they exist for old runs too:

* positions (``positions_normal_<freq>.pkl``): ``datetime, instrument, amount, price, value, weight, count_day``
  -- per day ``sum(value) + report.cash == report.account``;
* trades (``indicators_normal_<freq>_obj.pkl``): ``datetime, instrument, direction, amount, deal_amount, price,
  value, cost, weight`` (``value`` = dealt value, ``weight`` = value / account value at that day's close) -- per
  day ``sum(cost)`` is the day's increase of ``report.total_cost`` (``report.cost`` = that / previous account).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.report.analysis import holdings

__all__ = ["LEDGER_DIR", "positions_ledger", "trades_ledger", "write_ledgers"]

#: artifact folder of the ledgers
LEDGER_DIR = "ledgers"


def positions_ledger(positions: dict[Any, Any]) -> pd.DataFrame:
    """One row per (day, held instrument)."""
    return holdings(positions)


def trades_ledger(indicator: Any, report: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per order of each day (unfilled orders have ``deal_amount`` 0 and ``cost`` 0)."""
    cols = ["datetime", "instrument", "direction", "amount", "deal_amount", "price", "value", "cost", "weight"]
    records = getattr(indicator, "order_records", None)
    if callable(records):  # ours: one concatenation (no frame per day)
        df = records()
        if not len(df):
            return pd.DataFrame(columns=cols)
        dates, codes = df["datetime"].to_numpy(), df["instrument"].astype(str).to_numpy(dtype=object)
    else:  # qlib's Indicator (a report of a qlib run): one frame per day
        his = getattr(indicator, "order_indicator_his", None)
        frames = {pd.Timestamp(d): df for d, df in (his or {}).items() if len(df)}
        if not frames:
            return pd.DataFrame(columns=cols)
        df = pd.concat(frames.values())
        dates = np.repeat(np.array(list(frames), dtype="datetime64[ns]"), [len(f) for f in frames.values()])
        codes = df.index.astype(str).to_numpy(dtype=object)
    out = pd.DataFrame({
        "datetime": pd.DatetimeIndex(dates),
        "instrument": codes,
        "direction": np.where(df["trade_dir"].to_numpy() == 1, "buy", "sell"),
        "amount": np.abs(df["amount"].to_numpy(dtype=float)),
        "deal_amount": np.abs(df["deal_amount"].to_numpy(dtype=float)),
        "price": df["trade_price"].to_numpy(dtype=float),
        "value": np.abs(df["trade_value"].to_numpy(dtype=float)),
        "cost": df["trade_cost"].to_numpy(dtype=float),
    })
    if report is not None and "account" in report:
        out["weight"] = out["value"].to_numpy() / report["account"].astype(float).reindex(out["datetime"]).to_numpy()
    else:
        out["weight"] = np.nan
    return out[cols]


def write_ledgers(folder: Path, *, positions: dict[Any, Any] | pd.DataFrame | None, indicator: Any,
                  report: pd.DataFrame | None, freq: str = "1day") -> list[Path]:
    """Write ``positions_<freq>`` and ``trades_<freq>`` as parquet + CSV into ``folder``; returns the files.
    ``positions``: the positions artifact, or its ledger already built."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    tables = {}
    if positions is not None:
        tables[f"positions_{freq}"] = positions if isinstance(positions, pd.DataFrame) else positions_ledger(positions)
    if indicator is not None:
        tables[f"trades_{freq}"] = trades_ledger(indicator, report)
    for name, df in tables.items():
        for suffix, write in ((".parquet", lambda d, p: d.to_parquet(p, index=False)),
                              (".csv", lambda d, p: d.to_csv(p, index=False))):
            path = folder / f"{name}{suffix}"
            write(df, path)
            written.append(path)
    return written
