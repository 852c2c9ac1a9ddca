"""qlib's trade-decision objects (``qlib.backtest.decision``): ``Order``, ``OrderDir``, ``OrderHelper``, trade
ranges and ``BaseTradeDecision`` / ``TradeDecisionWO`` / ``EmptyTradeDecision``.

Our daily engine deals a plain list of orders per step (strategies return ``list[Order]`` from
``generate_trade_decision(step)``); these classes are the qlib face around that list:
:func:`~qlib_prefect.backtest.engine.collect_data` yields one :class:`TradeDecisionWO` per step, and a user
strategy may return a decision object instead of a list (the engine deals ``decision.get_decision()``).
A decision reads ``strategy.trade_calendar`` (set by the engine) for its step times, as in qlib.

Deliberate differences: ``Order`` is our slotted class (same fields, ``parse_dir``/``key``/``date`` as qlib);
trade ranges only matter to nested executors: an outer decision's range limits the inner days of a weekly
:class:`~qlib_prefect.backtest.executor.NestedExecutor` (and ``TWAPStrategy``'s split), otherwise they are stored
and evaluated but restrict nothing; ``get_data_cal_range_limit`` (minute data) is not offered.

Example:
    >>> d = TradeDecisionWO([Order("AAPL", 10.0, OrderDir.BUY)], strategy=None)
    >>> d.get_decision()[0].stock_id, d.empty()
    ('AAPL', False)
"""

from __future__ import annotations

from datetime import time
from typing import Any, Generic, TypeVar

import pandas as pd

from qlib_prefect.backtest.exchange import Order, OrderDir
from qlib_prefect.utils.logs import get_module_logger

__all__ = [
    "BaseTradeDecision",
    "EmptyTradeDecision",
    "IdxTradeRange",
    "Order",
    "OrderDir",
    "OrderHelper",
    "TradeDecisionWO",
    "TradeDecisionWithDetails",
    "TradeRange",
    "TradeRangeByTime",
]

DecisionType = TypeVar("DecisionType")


class OrderHelper:
    """qlib's ``OrderHelper``: ``create(code, amount, direction, start_time, end_time)`` builds an :class:`Order`."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange

    @staticmethod
    def create(code: str, amount: float, direction: Any, start_time: Any = None, end_time: Any = None) -> Order:
        return Order(stock_id=code, amount=amount, direction=Order.parse_dir(direction),
                     start_time=None if start_time is None else pd.Timestamp(start_time),
                     end_time=None if end_time is None else pd.Timestamp(end_time))


class TradeRange:
    """A step range an outer decision allows an inner strategy (qlib: nested executors)."""

    def __call__(self, trade_calendar: Any) -> tuple[int, int]:
        raise NotImplementedError("Please implement the `__call__` method")

    def clip_time_range(self, start_time: pd.Timestamp, end_time: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        raise NotImplementedError("Please implement the `clip_time_range` method")


class IdxTradeRange(TradeRange):
    """A fixed ``(start_idx, end_idx)`` step range (both closed)."""

    def __init__(self, start_idx: int, end_idx: int) -> None:
        self._start_idx = start_idx
        self._end_idx = end_idx

    def __call__(self, trade_calendar: Any = None) -> tuple[int, int]:
        return self._start_idx, self._end_idx

    def clip_time_range(self, start_time: pd.Timestamp, end_time: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        raise NotImplementedError


def _concat(date: Any, t: time) -> pd.Timestamp:
    return pd.Timestamp(f"{pd.Timestamp(date).date()} {t}")


class TradeRangeByTime(TradeRange):
    """An intra-day time window, e.g. ``TradeRangeByTime("9:30", "14:30")`` (both closed; qlib: minute bars)."""

    def __init__(self, start_time: str | time, end_time: str | time) -> None:
        self.start_time = pd.Timestamp(start_time).time() if isinstance(start_time, str) else start_time
        self.end_time = pd.Timestamp(end_time).time() if isinstance(end_time, str) else end_time
        assert self.start_time < self.end_time

    def __call__(self, trade_calendar: Any) -> tuple[int, int]:
        if trade_calendar is None:
            raise NotImplementedError("trade_calendar is necessary for getting TradeRangeByTime.")
        start_date = trade_calendar.start_time.date()
        return trade_calendar.get_range_idx(_concat(start_date, self.start_time), _concat(start_date, self.end_time))

    def clip_time_range(self, start_time: pd.Timestamp, end_time: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        start_date = start_time.date()
        val_start, val_end = _concat(start_date, self.start_time), _concat(start_date, self.end_time)
        return max(val_start, start_time), min(val_end, end_time)


class BaseTradeDecision(Generic[DecisionType]):
    """A strategy's decision for one step: ``strategy``, ``start_time``/``end_time`` (the step's interval, from
    ``strategy.trade_calendar``; None when the strategy has none), ``trade_range``, ``total_step``."""

    def __init__(self, strategy: Any, trade_range: tuple[int, int] | TradeRange | None = None) -> None:
        self.strategy = strategy
        cal = getattr(strategy, "trade_calendar", None)
        self.start_time, self.end_time = cal.get_step_time() if cal is not None else (None, None)
        self.total_step: int | None = None
        if isinstance(trade_range, tuple):
            trade_range = IdxTradeRange(*trade_range)
        self.trade_range: TradeRange | None = trade_range

    def get_decision(self) -> list[DecisionType]:
        raise NotImplementedError("This type of input is not supported")

    def update(self, trade_calendar: Any) -> BaseTradeDecision | None:
        """Called at the start of each inner step in qlib; returns the strategy's updated decision or None."""
        self.total_step = trade_calendar.get_trade_len()
        upd = getattr(self.strategy, "update_trade_decision", None)
        return upd(self, trade_calendar) if upd is not None else None

    def _get_range_limit(self, **kwargs: Any) -> tuple[int, int]:
        if self.trade_range is not None:
            return self.trade_range(trade_calendar=kwargs.get("inner_calendar"))
        raise NotImplementedError("The decision didn't provide an index range")

    def get_range_limit(self, **kwargs: Any) -> tuple[int, int]:
        """The step range (both closed) the decision allows; ``default_value`` when it has none."""
        try:
            s, e = self._get_range_limit(**kwargs)
        except NotImplementedError as exc:
            if "default_value" in kwargs:
                return kwargs["default_value"]
            raise NotImplementedError("The decision didn't provide an index range") from exc
        if self.total_step is not None and (s < 0 or e >= self.total_step):
            get_module_logger("decision").warning(
                f"[{s},{e}] go beyond the total_step({self.total_step}), it will be clipped.")
            s, e = max(0, s), min(self.total_step - 1, e)
        return s, e

    def empty(self) -> bool:
        """True unless an order of amount > 1e-6 is in the decision (qlib's rule)."""
        for obj in self.get_decision():
            if isinstance(obj, Order):
                if obj.amount > 1e-6:
                    return False
            else:
                return True
        return True

    def mod_inner_decision(self, inner_trade_decision: BaseTradeDecision) -> None:
        if inner_trade_decision.trade_range is None:
            inner_trade_decision.trade_range = self.trade_range


class EmptyTradeDecision(BaseTradeDecision[object]):
    def get_decision(self) -> list[object]:
        return []

    def empty(self) -> bool:
        return True


class TradeDecisionWO(BaseTradeDecision[Order]):
    """Trade decision (W)ith (O)rders; orders without times get the step's ``start_time``/``end_time``."""

    def __init__(self, order_list: list[Order], strategy: Any,
                 trade_range: tuple[int, int] | TradeRange | None = None) -> None:
        super().__init__(strategy, trade_range=trade_range)
        self.order_list = list(order_list)
        for o in self.order_list:
            if not isinstance(o, Order):
                raise TypeError(f"TradeDecisionWO: expected Order objects, got {type(o).__name__}")
            if o.start_time is None:
                o.start_time = self.start_time
            if o.end_time is None:
                o.end_time = self.end_time

    def get_decision(self) -> list[Order]:
        return self.order_list

    def __repr__(self) -> str:
        return (f"class: {self.__class__.__name__}; strategy: {self.strategy}; trade_range: {self.trade_range}; "
                f"order_list[{len(self.order_list)}]")


class TradeDecisionWithDetails(TradeDecisionWO):
    """A :class:`TradeDecisionWO` with ``details`` (used by qlib's execution reports)."""

    def __init__(self, order_list: list[Order], strategy: Any, trade_range: tuple[int, int] | None = None,
                 details: Any = None) -> None:
        super().__init__(order_list, strategy, trade_range)
        self.details = details
