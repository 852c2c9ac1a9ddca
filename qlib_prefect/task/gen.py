"""Task generators (qlib's ``qlib/workflow/task/gen.py``): rolling windows and multi-horizon labels.

A *task* is qlib's plain dict ``{"model": ..., "dataset": {"kwargs": {"handler": ..., "segments": ...}},
"record": ...}``. A :class:`TaskGen` turns one task template into a list of tasks; :func:`task_generator`
chains generators (Cartesian product).

* :class:`RollingGen` tiles the test segment into windows of ``step`` trading days and shifts the other
  segments along (``expanding``: the train start stays fixed; ``sliding``: every segment slides).
  Segment lists are identical to qlib 0.9.7's (golden-checked), with two deliberate fixes: a test window
  shifted exactly one day past the calendar ends the generation (qlib#1660 raises TypeError) and an
  open-ended last test segment extends the handler to the end of the data (qlib PR #2068).
* :class:`MultiHorizonGenBase` / :class:`MultiHorizonGen` make one task per label horizon and truncate the
  train/valid segments so that no label peeks into the test period.

Every template's segments are checked against the trading calendar before anything is generated: a
segment that is inverted, empty or outside the calendar raises a :class:`~qlib_prefect.errors.ConfigError`
naming the segment and the date.

Example:
    >>> gen = RollingGen(step=20, rtype=RollingGen.ROLL_SD)  # doctest: +SKIP
    >>> tasks = task_generator(task_template, [gen, MultiHorizonGen(horizon=[1, 5])])  # doctest: +SKIP
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.task.utils import TimeAdjuster, transform_end_date

__all__ = [
    "MultiHorizonGen",
    "MultiHorizonGenBase",
    "RollingGen",
    "TaskGen",
    "handler_mod",
    "horizon_label",
    "task_generator",
    "trunc_segments",
    "validate_segments",
]

_SEG_PATH = "dataset.kwargs.segments"


def task_generator(tasks: dict | Sequence[dict], generators: TaskGen | Sequence[TaskGen]) -> list[dict]:
    """Apply ``generators`` in order to every task (Cartesian product).

    With templates ``[a, b, c]`` and generators ``[A, B]`` making 2 and 3 tasks per template, the result
    has 3 * 2 * 3 = 18 tasks, ordered template-major.
    """
    task_list: list[dict] = [tasks] if isinstance(tasks, Mapping) else list(tasks)
    gen_list: list[Any] = [generators] if isinstance(generators, TaskGen) else list(generators)
    for i, gen in enumerate(gen_list):
        if not callable(getattr(gen, "generate", None)):
            raise ConfigError(f"task_generator: generators[{i}] is not a TaskGen (got {type(gen).__name__})")
        new_list: list[dict] = []
        for task in task_list:
            new_list.extend(gen.generate(task))
        task_list = new_list
    return task_list


class TaskGen(metaclass=abc.ABCMeta):
    """Base class of task generators: ``generate(task) -> list[task]`` (``gen(task)`` is the same)."""

    @abc.abstractmethod
    def generate(self, task: dict) -> list[dict]:
        """Generate tasks from the template ``task`` (which is left unchanged)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        return self.generate(*args, **kwargs)


def _segments_of(task: Mapping, test_key: str) -> dict:
    """``task["dataset"]["kwargs"]["segments"]`` with a ConfigError naming what is missing."""
    try:
        segments = task["dataset"]["kwargs"]["segments"]
    except (KeyError, TypeError):
        raise ConfigError(f"task: {_SEG_PATH} is missing (a task needs dataset.kwargs.segments)") from None
    if not isinstance(segments, Mapping):
        raise ConfigError(f"task: {_SEG_PATH} must be a dict of (start, end) pairs, got {segments!r}")
    if test_key not in segments:
        raise ConfigError(f"task: {_SEG_PATH}.{test_key} is missing (segments: {sorted(segments)})")
    return dict(segments)


def validate_segments(
    task_or_segments: Mapping, *, test_key: str = "test", ta: TimeAdjuster | None = None
) -> dict:
    """Check a task's (or a segments dict's) windows against the trading calendar before anything runs.

    Every segment must be a ``(start, end)`` pair of parseable dates, not inverted, not empty (at least one
    trading day) and not outside the calendar (start after its last date / end before its first date); the
    test segment must exist and have a start. ``None`` / ``"-1"`` ends and ends past the calendar are valid.

    Returns:
        the segments, aligned to trading days.

    Raises:
        ConfigError: naming the segment (``dataset.kwargs.segments.<key>``) and the date at fault.
    """
    ta = ta or TimeAdjuster(future=True)
    if "dataset" in task_or_segments:
        segments = _segments_of(task_or_segments, test_key)
    else:
        segments = dict(task_or_segments)
        if test_key not in segments:
            raise ConfigError(f"task: {_SEG_PATH}.{test_key} is missing (segments: {sorted(segments)})")
    _validate_segments(ta, segments, test_key)
    return ta.align_seg(segments, where=_SEG_PATH)


def _validate_segments(ta: TimeAdjuster, segments: Mapping, test_key: str) -> None:
    """Check every segment against the calendar; the test segment needs a start."""
    for key, seg in segments.items():
        ta.validate_seg(seg, where=f"{_SEG_PATH}.{key}")
    if segments[test_key][0] is None:
        raise ConfigError(f"{_SEG_PATH}.{test_key}: the test segment needs a start date, got None")


def handler_mod(task: dict, rolling_gen: Any) -> None:
    """Extend the handler's ``end_time`` to cover the task's test segment (RollingGen's default hook).

    If the test segment ends after ``handler.kwargs.end_time``, the handler end becomes the test end; if the
    test segment is open-ended (``None``, the last rolling window), the handler end becomes ``None`` (all
    data; qlib PR #2068). A task without a handler, or with a handler given as a file string, is left as is.
    """
    try:
        kwargs = task["dataset"]["kwargs"]["handler"]["kwargs"]
        handler_end = kwargs["end_time"]
        test_end = task["dataset"]["kwargs"]["segments"][rolling_gen.test_key][1]
        if test_end is None:
            kwargs["end_time"] = None
        elif rolling_gen.ta.cal_interval(handler_end, test_end) < 0:
            kwargs["end_time"] = copy.deepcopy(test_end)
    except KeyError:
        pass  # no handler (or no end_time): nothing to extend
    except TypeError:
        pass  # handler is a string (e.g. "file:///.../handler.pkl") or its end is unbounded (None)


def trunc_segments(ta: TimeAdjuster, segments: dict, days: int, test_key: str = "test") -> None:
    """Truncate every non-test segment ``days`` trading days before the test start (**in place**)."""
    starts = [t for t in segments[test_key] if t is not None]
    if not starts:
        raise ConfigError(f"{_SEG_PATH}.{test_key}: cannot truncate around an unbounded test segment")
    test_start = min(starts)
    for k in list(segments.keys()):
        if k != test_key:
            segments[k] = ta.truncate(segments[k], test_start, days, where=f"{_SEG_PATH}.{k}")


class RollingGen(TaskGen):
    """Turn a task into rolling tasks whose test windows are ``step`` trading days long.

    Args:
        step: rolling step in trading days (the length of every test window).
        rtype: ``RollingGen.ROLL_EX`` (``"expanding"``: the train start stays, its end moves) or
            ``RollingGen.ROLL_SD`` (``"sliding"``: every segment slides). Valid/test always slide.
        ds_extra_mod_func: ``f(task, rolling_gen)`` applied to every generated task (default
            :func:`handler_mod`); ``None`` for nothing.
        test_key / train_key: segment names.
        trunc_days: if set, the first task's other segments are truncated this many trading days before
            the test start (:func:`trunc_segments`) to avoid label leakage; later tasks shift that layout.
        task_copy_func: copies a task (default ``copy.deepcopy``).
    """

    ROLL_EX = TimeAdjuster.SHIFT_EX
    ROLL_SD = TimeAdjuster.SHIFT_SD

    def __init__(
        self,
        *,
        step: int = 40,
        rtype: str = ROLL_EX,
        ds_extra_mod_func: Callable[[dict, Any], Any] | None = handler_mod,
        test_key: str = "test",
        train_key: str = "train",
        trunc_days: int | None = None,
        task_copy_func: Callable[[Any], Any] = copy.deepcopy,
    ) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ConfigError(f"RollingGen.step: a positive number of trading days, got {step!r}")
        if rtype not in (self.ROLL_EX, self.ROLL_SD):
            raise ConfigError(f"RollingGen.rtype: {self.ROLL_EX!r} or {self.ROLL_SD!r}, got {rtype!r}")
        if trunc_days is not None and (isinstance(trunc_days, bool) or not isinstance(trunc_days, int)
                                       or trunc_days < 0):
            raise ConfigError(f"RollingGen.trunc_days: a non-negative int or None, got {trunc_days!r}")
        self.step = step
        self.rtype = rtype
        self.ds_extra_mod_func = ds_extra_mod_func
        self.ta = TimeAdjuster(future=True)
        self.test_key = test_key
        self.train_key = train_key
        self.trunc_days = trunc_days
        self.task_copy_func = task_copy_func

    def _update_task_segs(self, task: dict, segs: dict) -> None:
        task["dataset"]["kwargs"]["segments"] = copy.deepcopy(segs)
        if self.ds_extra_mod_func is not None:
            self.ds_extra_mod_func(task, self)

    def gen_following_tasks(self, task: dict, test_end: pd.Timestamp) -> Iterator[dict]:
        """Yield the rolling tasks after ``task`` (excluded) until a test window starts after ``test_end``."""
        prev_seg = task["dataset"]["kwargs"]["segments"]
        while True:
            segments = {}
            try:
                for k, seg in prev_seg.items():
                    expanding = k == self.train_key and self.rtype == self.ROLL_EX
                    rtype = self.ta.SHIFT_EX if expanding else self.ta.SHIFT_SD
                    segments[k] = self.ta.shift(seg, step=self.step, rtype=rtype)
            except KeyError:
                break  # a segment moved past the calendar: no more rolling
            new_start = segments[self.test_key][0]
            # new_start is None when the window starts exactly one day past the calendar (qlib#1660: TypeError)
            if new_start is None or new_start > test_end:
                break
            prev_seg = segments
            t = self.task_copy_func(task)
            self._update_task_segs(t, segments)
            yield t

    def generate(self, task: dict) -> list[dict]:
        """Rolling tasks for ``task``: the first test window starts at the aligned test start, the last one
        contains the test end (``None`` / ``-1`` / past the calendar: the last trading day)."""
        t = self.task_copy_func(task)
        raw = _segments_of(t, self.test_key)
        _validate_segments(self.ta, raw, self.test_key)
        segments: dict = copy.deepcopy(self.ta.align_seg(raw, where=_SEG_PATH))
        test_end = transform_end_date(segments[self.test_key][1])
        test_start_idx = self.ta.align_idx(segments[self.test_key][0])
        segments[self.test_key] = (self.ta.get(test_start_idx), self.ta.get(test_start_idx + self.step - 1))
        if self.trunc_days is not None:
            trunc_segments(self.ta, segments, self.trunc_days, self.test_key)
        self._update_task_segs(t, segments)
        res = [t]
        res.extend(self.gen_following_tasks(t, test_end))
        return res


class MultiHorizonGenBase(TaskGen):
    """One task per prediction horizon; subclasses say how a horizon changes the task (:meth:`set_horizon`).

    Args:
        horizon: the horizons (trading days).
        label_leak_n: trading days of future information a label needs after the prediction day (qlib's
            ``Ref($close, -2)/Ref($close, -1) - 1``: bought at T+1, sold at T+2 -> 2). The non-test
            segments are truncated ``horizon + label_leak_n`` trading days before the test start.
    """

    def __init__(self, *, horizon: Sequence[int] = (5,), label_leak_n: int = 2) -> None:
        self.horizon = list(horizon)
        for h in self.horizon:
            if isinstance(h, bool) or not isinstance(h, int) or h < 0:
                raise ConfigError(f"{type(self).__name__}.horizon: non-negative ints, got {self.horizon!r}")
        if isinstance(label_leak_n, bool) or not isinstance(label_leak_n, int) or label_leak_n < 0:
            raise ConfigError(f"{type(self).__name__}.label_leak_n: a non-negative int, got {label_leak_n!r}")
        self.label_leak_n = label_leak_n
        self.ta = TimeAdjuster(future=True)
        self.test_key = "test"

    @abc.abstractmethod
    def set_horizon(self, task: dict, hr: int) -> None:
        """Change ``task`` **in place** for horizon ``hr``."""

    def generate(self, task: dict) -> list[dict]:
        res = []
        for hr in self.horizon:
            t = copy.deepcopy(task)
            self.set_horizon(t, hr)
            raw = _segments_of(t, self.test_key)
            _validate_segments(self.ta, raw, self.test_key)
            segments = self.ta.align_seg(raw, where=_SEG_PATH)
            trunc_segments(self.ta, segments, days=hr + self.label_leak_n, test_key=self.test_key)
            t["dataset"]["kwargs"]["segments"] = segments
            res.append(t)
        return res


def horizon_label(hr: int, price: str = "$close") -> str:
    """The qlib-style label for horizon ``hr``: buy at the next close, sell ``hr`` days later.

    ``hr=1`` gives qlib's Alpha158/Alpha360 default ``Ref($close, -2)/Ref($close, -1) - 1``.
    """
    return f"Ref({price}, -{hr + 1})/Ref({price}, -1) - 1"


class MultiHorizonGen(MultiHorizonGenBase):
    """Multi-horizon tasks for Alpha158/Alpha360-style handlers: sets ``handler.kwargs.label`` to
    ``([horizon_label(hr, price)], [label_name])`` (horizon 1 = the handlers' default label).

    Args:
        horizon: horizons in trading days (each >= 1).
        label_leak_n: see :class:`MultiHorizonGenBase` (2 for these labels).
        price: the price field of the label (``$close``; ``$vwap`` for the ``*vwap`` handlers).
        label_name: the label column name.
    """

    def __init__(
        self,
        *,
        horizon: Sequence[int] = (5,),
        label_leak_n: int = 2,
        price: str = "$close",
        label_name: str = "LABEL0",
    ) -> None:
        super().__init__(horizon=horizon, label_leak_n=label_leak_n)
        if any(h < 1 for h in self.horizon):
            raise ConfigError(f"MultiHorizonGen.horizon: horizons are >= 1 trading day, got {self.horizon!r}")
        self.price = price
        self.label_name = label_name

    def set_horizon(self, task: dict, hr: int) -> None:
        try:
            handler = task["dataset"]["kwargs"]["handler"]
        except (KeyError, TypeError):
            raise ConfigError("MultiHorizonGen: the task has no dataset.kwargs.handler to set a label on") from None
        if not isinstance(handler, dict):
            raise ConfigError(
                f"MultiHorizonGen: dataset.kwargs.handler must be a handler config dict to set its label, "
                f"got {type(handler).__name__}"
            )
        kwargs = handler.setdefault("kwargs", {})
        if kwargs is None:
            kwargs = handler["kwargs"] = {}
        kwargs["label"] = ([horizon_label(hr, self.price)], [self.label_name])
