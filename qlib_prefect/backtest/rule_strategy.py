"""qlib's ``FileOrderStrategy`` and ``TWAPStrategy`` (``qlib.contrib.strategy.rule_strategy``).

``FileOrderStrategy``: orders read from a file.

The file (CSV path, file object or DataFrame) has columns ``datetime, instrument, amount, direction``
(``direction``: ``buy``/``sell`` or a number, > 0 = buy, as qlib's ``Order.parse_dir``); each step sends the
orders dated that day, in file order. ``trade_range`` (qlib's intra-day range for nested executors) is accepted
and ignored (the inner steps are days).

``TWAPStrategy``: the inner strategy of a :class:`~qlib_prefect.backtest.executor.NestedExecutor`; it splits
each order of the outer (weekly) decision evenly over the inner (daily) steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.decision import BaseTradeDecision
from qlib_prefect.backtest.exchange import Exchange, Order, OrderDir
from qlib_prefect.backtest.strategy import BaseStrategy, StepContext
from qlib_prefect.backtest.utils import get_start_end_idx
from qlib_prefect.errors import BacktestError

__all__ = ["FileOrderStrategy", "TWAPStrategy", "parse_dir"]


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


class TWAPStrategy(BaseStrategy):
    """qlib's TWAP inner strategy: each outer order's amount spread evenly over the inner steps of its range.

    ``reset(outer_trade_decision=...)`` (called by the nested executor at each outer step) records the amount
    remaining per stock; at inner step ``k`` of the decision's range (``get_start_end_idx``: all inner steps
    unless the decision has a ``trade_range``; ``trade_len`` of them) a stock gets
    ``amount_expect = order.amount / trade_len * (k + 1)`` minus what was dealt so far, rounded to the trade
    unit with ``np.round`` (``trade_unit / factor``; not rounded when the exchange has no trade unit) and clipped
    to the remainder; the last step takes the whole remainder. A stock suspended on the step is skipped; orders
    of ``amount <= 1e-5`` are not sent. The remainder is decreased by each inner step's ``deal_amount``
    (``execute_result``, as qlib). Deliberate difference: the trade unit uses the factor of the inner day (qlib:
    ``get_amount_of_trade_unit`` over the outer order's times).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outer_trade_decision: BaseTradeDecision | None = None
        self.trade_amount_remain: dict[str, float] = {}
        self.trade_calendar: Any = None

    def reset(self, *, trade_exchange: Exchange | None = None, calendar: pd.DatetimeIndex | None = None,
              extra_codes: list[str] | None = None, outer_trade_decision: BaseTradeDecision | None = None,
              **kwargs: Any) -> None:
        """The engine's reset (``trade_exchange``) and qlib's (``outer_trade_decision``), in one."""
        if trade_exchange is not None and self.trade_exchange is None:
            self.trade_exchange = trade_exchange
        if outer_trade_decision is not None:
            self.outer_trade_decision = outer_trade_decision
            self.trade_amount_remain = {o.stock_id: o.amount for o in outer_trade_decision.get_decision()}

    def _trade_unit_amount(self, stock_id: str, row: int) -> float | None:
        ex = self.trade_exchange
        if ex.trade_w_adj_price or ex.trade_unit is None:
            return None
        factor = ex.factor_of(stock_id, row)
        return None if factor is None else ex.trade_unit / factor

    def generate_trade_decision(self, step: StepContext, execute_result: list | None = None) -> list[Order]:
        outer = self.outer_trade_decision
        if outer is None or len(outer.get_decision()) == 0:
            return []
        trade_step = self.trade_calendar.get_trade_step()
        start_idx, end_idx = get_start_end_idx(self.trade_calendar, outer)
        trade_len = end_idx - start_idx + 1
        if trade_step < start_idx or trade_step > end_idx:
            return []
        rel = trade_step - start_idx
        for order, *_ in execute_result or []:
            self.trade_amount_remain[order.stock_id] -= order.deal_amount
        ex = self.trade_exchange
        out = []
        for order in outer.get_decision():
            if ex.is_suspended(order.stock_id, step.row):
                continue
            amount_expect = order.amount / trade_len * (rel + 1)
            remain = self.trade_amount_remain[order.stock_id]
            delta = amount_expect - (order.amount - remain)
            unit = self._trade_unit_amount(order.stock_id, step.row)
            target = delta if unit is None else min(np.round(delta / unit) * unit, remain)
            if rel == trade_len - 1:
                target = remain
            if target > 1e-5:
                out.append(Order(order.stock_id, float(target), order.direction, step.start_time, step.end_time,
                                 row=step.row))
        return out
