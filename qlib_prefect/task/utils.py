"""Trading-calendar arithmetic for task generation (qlib's ``qlib/workflow/task/utils.py``).

:class:`TimeAdjuster` answers "which trading day is this?" questions on the provider's calendar
(``get_provider().calendar(future=...)``): index lookup, alignment of dates and segments to trading
days, truncation of segments before a test start, and shifting of segments by a number of trading days.
It reproduces qlib 0.9.7 index for index (checked against goldens from the real qlib); the few places
where qlib crashes or silently returns a wrong date raise a :class:`~qlib_prefect.errors.ConfigError`
naming the date instead (see docs/rolling.md, "Deviations").

Example:
    >>> ta = TimeAdjuster(future=True)  # doctest: +SKIP
    >>> ta.align_seg({"train": ("2014-01-01", "2015-12-31"), "test": ("2016-01-01", None)})  # doctest: +SKIP
    {'train': (Timestamp('2014-01-02 00:00:00'), Timestamp('2015-12-31 00:00:00')),
     'test': (Timestamp('2016-01-04 00:00:00'), None)}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError

__all__ = ["TimeAdjuster", "is_open_end", "list_recorders", "to_timestamp", "transform_end_date"]

logger = logging.getLogger(__name__)

TimePoint = Any  # str | datetime.date | pd.Timestamp | None | "-1"


def is_open_end(value: Any) -> bool:
    """``True`` for the end markers qlib treats as "up to the last date": ``None`` and ``-1`` / ``"-1"``."""
    return value is None or str(value).strip() == "-1"


def to_timestamp(value: Any, where: str = "time point") -> pd.Timestamp:
    """``pd.Timestamp(value)`` with a :class:`ConfigError` naming ``where`` on an unparsable value."""
    if isinstance(value, pd.Timestamp):
        return value
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: cannot parse {value!r} as a date ({e})") from None
    if ts is pd.NaT:
        raise ConfigError(f"{where}: {value!r} is not a date")
    return ts


def _provider_calendar(future: bool) -> pd.DatetimeIndex:
    from qlib_prefect.data.registry import get_provider

    provider = get_provider()
    cal = pd.DatetimeIndex(provider.calendar(future=future))
    if future:
        path = getattr(provider, "path", None)
        freq = getattr(provider, "freq", "day")
        if path is not None and not (path / "calendars" / f"{freq}_future.txt").exists():
            logger.warning(
                "%s: calendars/%s_future.txt not found; the future calendar falls back to the normal one",
                path, freq,
            )
    return cal


def transform_end_date(end_date: Any = None) -> Any:
    """qlib's ``transform_end_date``: ``None`` / ``-1`` / a date after the last (non-future) trading day
    -> the last trading day; otherwise ``end_date`` unchanged."""
    cal = _provider_calendar(False)
    if len(cal) == 0:
        raise ConfigError("transform_end_date: the trading calendar is empty")
    last = cal[-1]
    if is_open_end(end_date) or last < to_timestamp(end_date, "end date"):
        logger.info("end date %s -> the last calendar date %s is used", end_date, last.date())
        return last
    return end_date


def list_recorders(experiment: Any, rec_filter_func: Callable[[Any], bool] | None = None) -> dict[str, Any]:
    """``{recorder_id: recorder}`` of an experiment (a name, resolved with ``R.get_exp`` which creates it if
    missing, as in qlib; or an experiment object), keeping those for which ``rec_filter_func`` returns True."""
    if isinstance(experiment, str):
        from qlib_prefect.workflow import R  # lazy: generation itself needs no tracking store

        experiment = R.get_exp(experiment_name=experiment)
    recs = experiment.list_recorders()
    return {rid: rec for rid, rec in recs.items() if rec_filter_func is None or rec_filter_func(rec)}


class TimeAdjuster:
    """Find and adjust trading dates on the provider calendar.

    Args:
        future: use the future calendar (``calendars/day_future.txt``; the normal one when absent).
        end_time: cut the calendar after this date (``None``: the whole calendar).

    The calendar is read on first use (construction has no side effects); :attr:`cals` is a
    ``pd.DatetimeIndex``.
    """

    SHIFT_SD = "sliding"
    SHIFT_EX = "expanding"

    def __init__(self, *, future: bool = True, end_time: TimePoint = None) -> None:
        self._future = bool(future)
        self._end_time = end_time
        self._cals: pd.DatetimeIndex | None = None
        self._values: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------ calendar
    @property
    def cals(self) -> pd.DatetimeIndex:
        """The (possibly truncated) trading calendar."""
        if self._cals is None:
            cal = _provider_calendar(self._future)
            if self._end_time is not None and str(self._end_time) != "None":
                cal = cal[cal <= to_timestamp(self._end_time, "TimeAdjuster end_time")]
            self._cals = cal
            self._values = cal.values
        return self._cals

    def _vals(self) -> np.ndarray:
        self.cals  # noqa: B018 (loads the calendar)
        assert self._values is not None
        return self._values

    def set_end_time(self, end_time: TimePoint = None) -> None:
        """Reload the calendar cut at ``end_time`` (``None``: the calendar's own end)."""
        self._end_time = end_time
        self._cals = None
        self._values = None

    def _require_nonempty(self) -> None:
        if len(self.cals) == 0:
            raise ConfigError(f"TimeAdjuster: the trading calendar is empty (end_time={self._end_time!r})")

    def get(self, idx: int | None) -> pd.Timestamp | None:
        """The date at calendar index ``idx``; ``None`` if ``idx`` is None or past the end (negative wraps)."""
        if idx is None or idx >= len(self.cals):
            return None
        return self.cals[idx]

    def max(self) -> pd.Timestamp:
        """The last calendar date."""
        self._require_nonempty()
        return self.cals[-1]

    # ------------------------------------------------------------------------------------------ alignment
    def align_idx(self, time_point: TimePoint, tp_type: str = "start") -> int | None:
        """Calendar index of ``time_point``: ``start`` -> first date >= t, ``end`` -> last date <= t.

        ``None`` -> ``None`` (unbounded). As in qlib, the result may be ``len(cals)`` (a start after the
        calendar) or ``-1`` (an end before it; also for the ``"-1"`` end marker, which parses as year -1).
        """
        if time_point is None:
            return None
        ts = to_timestamp(time_point)
        vals = self._vals()
        if tp_type == "start":
            return int(np.searchsorted(vals, ts.to_datetime64(), side="left"))
        if tp_type == "end":
            return int(np.searchsorted(vals, ts.to_datetime64(), side="right")) - 1
        raise ConfigError(f"align_idx: tp_type must be 'start' or 'end', got {tp_type!r}")

    def cal_interval(self, time_point_a: TimePoint, time_point_b: TimePoint) -> int:
        """Trading-day interval ``a - b`` (both aligned as ``start``)."""
        a, b = self.align_idx(time_point_a), self.align_idx(time_point_b)
        if a is None or b is None:
            raise TypeError(f"cal_interval: unbounded time point ({time_point_a!r}, {time_point_b!r})")
        return a - b

    def align_time(self, time_point: TimePoint, tp_type: str = "start", where: str = "time point") -> Any:
        """The trading date ``time_point`` aligns to (``None`` passthrough).

        Raises:
            ConfigError: ``time_point`` lies outside the calendar on the side it is aligned to (a start after
                the last date, an end before the first date); qlib raises IndexError / returns the last date.
        """
        if time_point is None:
            return None
        if tp_type == "end" and is_open_end(time_point):
            self._require_nonempty()
            return self.cals[-1]  # qlib: "-1" -> index -1 -> the last date
        idx = self.align_idx(time_point, tp_type=tp_type)
        assert idx is not None
        if idx < 0 or idx >= len(self.cals):
            self._require_nonempty()
            side = "after the last" if idx >= 0 else "before the first"
            raise ConfigError(
                f"{where}: {tp_type} {time_point!s} is {side} calendar date "
                f"({self.cals[0].date()} .. {self.cals[-1].date()})"
            )
        return self.cals[idx]

    def align_seg(self, segment: Any, where: str = "segment") -> Any:
        """Align a ``(start, end)`` pair (start forward, end backward) or a dict of them to trading dates."""
        if isinstance(segment, Mapping):
            return {k: self.align_seg(seg, where=f"{where}.{k}") for k, seg in segment.items()}
        if isinstance(segment, (tuple, list)):
            if len(segment) != 2:
                raise ConfigError(f"{where}: a segment is a (start, end) pair, got {segment!r}")
            return (
                self.align_time(segment[0], tp_type="start", where=where),
                self.align_time(segment[1], tp_type="end", where=where),
            )
        raise ConfigError(f"{where}: a segment is a (start, end) pair or a dict of them, got {segment!r}")

    def validate_seg(self, segment: Any, where: str = "segment") -> None:
        """Check a ``(start, end)`` pair against the calendar before anything runs.

        Raises:
            ConfigError: naming ``where`` and the date, if the pair is malformed, inverted (start > end),
                out of the calendar (start after its last date / end before its first date) or empty
                (no trading day between start and end).
        """
        if not isinstance(segment, (tuple, list)) or len(segment) != 2:
            raise ConfigError(f"{where}: a segment is a (start, end) pair, got {segment!r}")
        start, end = segment
        s = None if start is None else to_timestamp(start, f"{where} start")
        e = None if is_open_end(end) else to_timestamp(end, f"{where} end")
        if s is not None and e is not None and s > e:
            raise ConfigError(f"{where}: inverted segment, start {start!s} is after end {end!s}")
        s_aligned = self.align_time(start, "start", where=where)
        e_aligned = None if e is None else self.align_time(end, "end", where=where)
        if s_aligned is not None and e_aligned is not None and s_aligned > e_aligned:
            raise ConfigError(f"{where}: empty segment, no trading day between {start!s} and {end!s}")

    # ------------------------------------------------------------------------------------------ arithmetic
    def truncate(self, segment: tuple, test_start: TimePoint, days: int, where: str = "segment") -> tuple:
        """Cut ``segment`` so that it ends at least ``days`` trading days before ``test_start``.

        Each endpoint becomes ``min(align_idx(endpoint), align_idx(test_start) - days)``. For a label that
        looks ``k`` days ahead with horizon ``h`` (``Ref($close, -2)/Ref($close, -1) - 1``: k=2, h=1), use
        ``days = k + h``. An unbounded (``None``) start stays unbounded; a ``None`` end is cut like a date.

        Raises:
            ConfigError: the cut would move an endpoint before the first calendar date.
        """
        if not isinstance(segment, (tuple, list)) or len(segment) != 2:
            raise ConfigError(f"{where}: truncate needs a (start, end) pair, got {segment!r}")
        self._require_nonempty()
        test_idx = self.align_idx(test_start)
        if test_idx is None:
            raise ConfigError(f"{where}: truncate needs a test start, got None")
        limit = test_idx - int(days)
        new_seg = []
        for i, tp in enumerate(segment):
            if tp is None and i == 0:
                new_seg.append(None)
                continue
            tp_idx = limit if tp is None else min(self.align_idx(tp), limit)  # type: ignore[type-var]
            if tp_idx < 0:
                raise ConfigError(
                    f"{where}: truncating {days} trading days before the test start {test_start!s} "
                    f"leaves no data (before the first calendar date {self.cals[0].date()})"
                )
            new_seg.append(self.get(tp_idx))
        return tuple(new_seg)

    @staticmethod
    def _add_step(index: int | None, step: int) -> int | None:
        return None if index is None else index + step

    def shift(self, seg: tuple, step: int, rtype: str = SHIFT_SD) -> tuple:
        """Shift a segment by ``step`` trading days (``sliding``: both ends; ``expanding``: the end only).

        ``None`` ends stay ``None``; an end shifted past the calendar becomes ``None``.

        Raises:
            KeyError: the shifted start is more than one position past the calendar (qlib's signal to stop).
        """
        if not isinstance(seg, (tuple, list)) or len(seg) != 2:
            raise ConfigError(f"shift needs a (start, end) pair, got {seg!r}")
        start_idx, end_idx = self.align_idx(seg[0], tp_type="start"), self.align_idx(seg[1], tp_type="end")
        if rtype == self.SHIFT_SD:
            start_idx = self._add_step(start_idx, step)
            end_idx = self._add_step(end_idx, step)
        elif rtype == self.SHIFT_EX:
            end_idx = self._add_step(end_idx, step)
        else:
            raise ConfigError(f"shift: rtype must be {self.SHIFT_SD!r} or {self.SHIFT_EX!r}, got {rtype!r}")
        if start_idx is not None and start_idx > len(self.cals):
            raise KeyError("The segment is out of valid calendar")
        return self.get(start_idx), self.get(end_idx)
