"""``qlib.backtest.utils.TradeCalendarManager``: the step calendar a strategy sees (daily, or weekly for the
outer level of a :class:`~qlib_prefect.backtest.executor.NestedExecutor`), and ``get_start_end_idx``.

qlib builds it from ``Cal.calendar(freq, future=True)`` inside its executor; here :func:`backtest` /
:func:`collect_data` build it from the provider's calendar and set it on the strategy as ``trade_calendar``
(advanced each step), so qlib code reading ``strategy.trade_calendar`` (decision objects, ``get_step_time``)
works. The week calendar is qlib's ``resam_calendar(day, "week")``: the first trading day of each week.
Deliberate difference: no ``level_infra``, so ``get_data_cal_range`` is absent.

Example:
    >>> import pandas as pd
    >>> cal = pd.DatetimeIndex(["2016-01-04", "2016-01-05", "2016-01-06"])
    >>> tc = TradeCalendarManager("day", "2016-01-04", "2016-01-05", calendar=cal)
    >>> tc.get_trade_len(), tc.get_step_time()[1]
    (2, Timestamp('2016-01-04 23:59:59'))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import BacktestError

__all__ = ["TradeCalendarManager", "get_start_end_idx", "week_calendar"]

_DAY = ("day", "1day", "1d")
_WEEK = ("week", "1week", "1w")


def week_calendar(day_calendar: Any) -> pd.DatetimeIndex:
    """qlib's ``resam_calendar(calendar, "day", "week")``: the days whose weekday is below the previous day's."""
    cal = pd.DatetimeIndex(day_calendar).normalize().unique()
    dow = np.asarray(cal.dayofweek)
    return cal[np.ediff1d(dow, to_begin=-1) < 0]


def get_start_end_idx(trade_calendar: TradeCalendarManager, outer_trade_decision: Any) -> tuple[int, int]:
    """qlib's helper: the inner step range (closed) the outer decision allows; all inner steps if it has none."""
    try:
        return outer_trade_decision.get_range_limit(inner_calendar=trade_calendar)
    except NotImplementedError:
        return 0, trade_calendar.get_trade_len() - 1


def _epsilon_change(t: pd.Timestamp) -> pd.Timestamp:
    return t - pd.Timedelta(seconds=1)


class TradeCalendarManager:
    """qlib's trade calendar: ``trade_len`` steps from ``start_time`` to ``end_time`` (both closed)."""

    def __init__(self, freq: str, start_time: Any = None, end_time: Any = None, level_infra: Any = None, *,
                 calendar: Any = None) -> None:
        self.level_infra = level_infra
        self._given = None if calendar is None else pd.DatetimeIndex(calendar)
        self.reset(freq=freq, start_time=start_time, end_time=end_time)

    def reset(self, freq: str, start_time: Any = None, end_time: Any = None) -> None:
        if freq not in _DAY + _WEEK:
            raise BacktestError(f"TradeCalendarManager: only the daily and weekly calendars are supported, "
                                f"got {freq!r}")
        self.freq = freq
        self.start_time = pd.Timestamp(start_time) if start_time else None
        self.end_time = pd.Timestamp(end_time) if end_time else None
        cal = self._given
        if cal is None:
            from qlib_prefect.data.registry import get_provider

            prov = get_provider()
            try:
                cal = pd.DatetimeIndex(prov.calendar(future=True))
            except TypeError:
                cal = pd.DatetimeIndex(prov.calendar())
        if freq in _WEEK:
            cal = week_calendar(cal)
        self._calendar = cal.values
        s = 0 if self.start_time is None else int(np.searchsorted(self._calendar, self.start_time.to_datetime64()))
        e = (len(cal) - 1 if self.end_time is None
             else int(np.searchsorted(self._calendar, self.end_time.to_datetime64(), side="right")) - 1)
        self.start_index, self.end_index = s, e
        self.trade_len = e - s + 1
        self.trade_step = 0

    def finished(self) -> bool:
        return self.trade_step >= self.trade_len

    def step(self) -> None:
        if self.finished():
            raise RuntimeError("The calendar is finished, please reset it if you want to call it!")
        self.trade_step += 1

    def get_freq(self) -> str:
        return self.freq

    def get_trade_len(self) -> int:
        return self.trade_len

    def get_trade_step(self) -> int:
        return self.trade_step

    def get_step_time(self, trade_step: int | None = None, shift: int = 0) -> tuple[pd.Timestamp, pd.Timestamp]:
        """``(calendar[i], calendar[i + 1] - 1s)`` of step ``trade_step`` (default: the current) minus ``shift``;
        on the last calendar day the end is that day's 23:59:59 (qlib raises IndexError)."""
        if trade_step is None:
            trade_step = self.get_trade_step()
        i = self.start_index + trade_step - shift
        left = pd.Timestamp(self._calendar[i])
        if i + 1 < len(self._calendar):
            return left, _epsilon_change(pd.Timestamp(self._calendar[i + 1]))
        return left, _epsilon_change(left + pd.Timedelta(days=1))

    def get_all_time(self) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
        return self.start_time, self.end_time

    def get_range_idx(self, start_time: Any, end_time: Any) -> tuple[int, int]:
        """Step indices (closed, clipped to ``[0, trade_len - 1]``) covering ``start_time .. end_time``."""
        left = int(np.searchsorted(self._calendar, pd.Timestamp(start_time).to_datetime64(), side="right") - 1)
        right = int(np.searchsorted(self._calendar, pd.Timestamp(end_time).to_datetime64(), side="right") - 1)
        left -= self.start_index
        right -= self.start_index

        def clip(idx: int) -> int:
            return min(max(0, idx), self.trade_len - 1)

        return clip(left), clip(right)

    def __repr__(self) -> str:
        return (f"class: {self.__class__.__name__}; {self.start_time}[{self.start_index}]~{self.end_time}"
                f"[{self.end_index}]: [{self.trade_step}/{self.trade_len}]")
