"""qlib's ``FileOrderStrategy`` (``qlib.contrib.strategy.rule_strategy``), daily: orders read from a file.

The file (CSV path, file object or DataFrame) has columns ``datetime, instrument, amount, direction``
(``direction``: ``buy``/``sell`` or a number, > 0 = buy, as qlib's ``Order.parse_dir``); each step sends the
orders dated that day, in file order. ``trade_range`` (qlib's intra-day range for nested executors) is accepted
and ignored: the backtest is daily.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.exchange import Order, OrderDir
from qlib_prefect.backtest.strategy import BaseStrategy, StepContext
from qlib_prefect.errors import BacktestError

__all__ = ["FileOrderStrategy", "parse_dir"]


def parse_dir(direction: Any) -> OrderDir:
    """qlib's ``Order.parse_dir``: ``"buy"``/``"sell"`` (any case), a number (> 0 buy) or an ``OrderDir``."""
    if isinstance(direction, OrderDir):
        return direction
    if isinstance(direction, (int, float, np.integer, np.floating)) and not isinstance(direction, bool):
        return OrderDir.BUY if direction > 0 else OrderDir.SELL
    if isinstance(direction, str):
        d = direction.lower().strip()
        if d in ("buy", "sell"):
            return OrderDir.BUY if d == "buy" else OrderDir.SELL
    raise BacktestError(f"FileOrderStrategy: unsupported order direction {direction!r} (use buy/sell or a number)")


class FileOrderStrategy(BaseStrategy):
    """Send the orders of ``file`` on their dates."""

    def __init__(self, file: IO | str | Path | pd.DataFrame, trade_range: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(file, pd.DataFrame):
            df = file.reset_index() if "datetime" not in file.columns else file.copy()
        else:
            try:
                df = pd.read_csv(file, dtype={"datetime": str})
            except (OSError, ValueError) as e:
                raise BacktestError(f"FileOrderStrategy: cannot read order file {file}: {e}") from e
        missing = {"datetime", "instrument", "amount", "direction"} - set(df.columns)
        if missing:
            raise BacktestError(f"FileOrderStrategy: order file {file!r} lacks column(s) {sorted(missing)}")
        df["datetime"] = df["datetime"].apply(pd.Timestamp)
        self.order_df = df.set_index(["datetime", "instrument"]).sort_index(level="datetime", sort_remaining=False)
        self.trade_range = trade_range
        self._by_day = {
            d: [(str(c), float(a), parse_dir(r)) for c, a, r in zip(g["instrument"], g["amount"], g["direction"])]
            for d, g in df.groupby("datetime", sort=True)
        }

    def generate_trade_decision(self, step: StepContext) -> list[Order]:
        rows = self._by_day.get(pd.Timestamp(step.start_time).normalize(), [])
        return [Order(c, a, d, step.start_time, step.end_time, row=step.row) for c, a, d in rows]
