"""Extend a recorder's predictions / labels to new dates (qlib's ``qlib/workflow/online/update.py``).

:class:`PredUpdater` reloads the run's ``dataset`` artifact (processors with their fitted state, no refit) over
``[last_end + 1 - hist_ref, to_date]``, predicts ``[last_end + 1, to_date]`` with ``params.pkl`` and merges the new
rows into ``pred.pkl`` (:func:`replace_range`); :class:`LabelUpdater` does the same for ``label.pkl``. ``last_end``
is the last date whose rows have no NaN (or the trading day before ``from_date``). Semantics are qlib 0.9.7's,
including the no-op rules (nothing written when ``last_end >= to_date``) and the clipping of ``to_date`` to the last
calendar date.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.utils.serial import state_digest

__all__ = [
    "DSBasedUpdater",
    "LabelUpdater",
    "PredUpdater",
    "RMDLoader",
    "RecordUpdater",
    "get_date_by_shift",
    "replace_range",
]

logger = logging.getLogger(__name__)


def _calendar(freq: str = "day", future: bool = False) -> pd.DatetimeIndex:
    from qlib_prefect.data.api import D

    return pd.DatetimeIndex(D.calendar(freq=freq, future=future))


def get_date_by_shift(trading_date: Any, shift: int, future: bool = False, clip_shift: bool = True,
                      freq: str = "day", align: str | None = None) -> pd.Timestamp:
    """qlib's ``get_date_by_shift``: the trading day ``shift`` positions after ``trading_date``.

    ``align=None`` needs a trading day; ``"right"`` aligns to the next trading day, ``"left"`` to the previous one.
    Out of range: clipped to the calendar when ``clip_shift``, else :class:`IndexError`.
    """
    cal = _calendar(freq, future)
    d = pd.Timestamp(trading_date)
    if align is None:
        pos = int(cal.searchsorted(d, side="left"))
        if pos >= len(cal) or cal[pos] != d:
            raise ConfigError(f"get_date_by_shift: {d.date()} is not a trading day (use align='left'/'right')")
    elif align == "right":
        pos = int(cal.searchsorted(d, side="left"))
    elif align == "left":
        pos = int(cal.searchsorted(d, side="right")) - 1
    else:
        raise ConfigError(f"get_date_by_shift: align must be None, 'left' or 'right', got {align!r}")
    pos += shift
    if pos < 0 or pos >= len(cal):
        if not clip_shift:
            raise IndexError(f"get_date_by_shift: {d.date()} shifted by {shift} is outside the calendar "
                             f"({cal[0].date()} .. {cal[-1].date()})")
        pos = int(np.clip(pos, 0, len(cal) - 1))
    return cal[pos]


def replace_range(data: pd.DataFrame, new_data: pd.DataFrame) -> pd.DataFrame:
    """qlib's ``_replace_range``: drop the old rows whose date lies in the new rows' date range, append the new
    rows (a duplicated index keeps the new one) and sort. An empty ``new_data`` leaves ``data`` unchanged."""
    data = data.sort_index()
    dates = new_data.index.get_level_values("datetime")
    if len(dates) == 0:
        return data
    old_dates = data.index.get_level_values("datetime")
    data = data[(old_dates < dates.min()) | (old_dates > dates.max())]
    cb = pd.concat([data, new_data], axis=0)
    return cb[~cb.index.duplicated(keep="last")].sort_index()


class RMDLoader:
    """Load the model (``params.pkl``) and the dataset (``dataset``) of a recorder (qlib's ``RMDLoader``)."""

    def __init__(self, rec: Any) -> None:
        self.rec = rec

    def get_dataset(self, start_time: Any, end_time: Any, segments: dict | None = None,
                    unprepared_dataset: Any = None) -> Any:
        """The stored dataset re-pointed at ``[start_time, end_time]`` and set up with its fitted processor state
        (``init_type="load_state"``); ``segments`` default ``{"test": (start_time, end_time)}``."""
        if segments is None:
            segments = {"test": (start_time, end_time)}
        dataset = self.rec.load_object("dataset") if unprepared_dataset is None else unprepared_dataset
        dataset.config(handler_kwargs={"start_time": start_time, "end_time": end_time}, segments=segments)
        dataset.setup_data(handler_kwargs={"init_type": "load_state"})
        return dataset

    def get_model(self) -> Any:
        return self.rec.load_object("params.pkl")


class RecordUpdater:
    """Update a specific part of a recorder (abstract)."""

    def __init__(self, record: Any, *args: Any, **kwargs: Any) -> None:
        self.record = record
        self.logger = logger

    def update(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Please implement the `update` method.")


class DSBasedUpdater(RecordUpdater):
    """Update an artifact (``fname``) of a recorder from its stored dataset (qlib's ``DSBasedUpdater``).

    Args:
        record: the recorder.
        to_date: update up to this date (None or a date at/after the last calendar date: the last calendar date).
        from_date: recompute from this date (None: the day after the last date whose rows have no NaN).
        hist_ref: trading days of history a sample needs before its date (None: ``step_len - 1`` for a
            ``TSDatasetH``, else 0).
        freq: the calendar frequency.
        fname: the artifact (``pred.pkl``).
        loader_cls: loads model and dataset (:class:`RMDLoader`).

    Raises:
        LoadObjectError: the recorder has no ``fname`` (as in qlib; :class:`OnlineToolR` skips such models).
    """

    def __init__(self, record: Any, to_date: Any = None, from_date: Any = None, hist_ref: int | None = None,
                 freq: str = "day", fname: str = "pred.pkl", loader_cls: type = RMDLoader) -> None:
        super().__init__(record=record)
        self.hist_ref = hist_ref
        self.freq = freq
        self.fname = fname
        self.rmdl = loader_cls(rec=record)
        latest = _calendar(freq)[-1]
        to_date = latest if to_date is None else pd.Timestamp(to_date)
        if to_date >= latest:
            if to_date > latest:
                logger.warning("The given `to_date`(%s) is later than `latest_date`(%s). So `to_date` is clipped "
                               "to `latest_date`.", to_date, latest)
            to_date = latest
        self.to_date = to_date
        self.old_data: pd.DataFrame = record.load_object(fname)
        if from_date is None:
            self.last_end = self.old_data.dropna().index.get_level_values("datetime").max()
            if pd.isna(self.last_end):
                raise ConfigError(f"{type(self).__name__}: every row of {fname} of recorder "
                                  f"{record.info['id']} has a NaN; give from_date")
        else:
            self.last_end = get_date_by_shift(from_date, -1, align="right")  # qlib: always the daily calendar

    def _window(self, dataset: Any) -> tuple[pd.Timestamp, dict]:
        """``(start_time_buffer, {"test": (last_end + 1, to_date)})`` for ``dataset``'s ``hist_ref``."""
        from qlib_prefect.data.dataset import TSDatasetH

        hist_ref = self.hist_ref
        if hist_ref is None:
            hist_ref = dataset.step_len - 1 if isinstance(dataset, TSDatasetH) else 0
        start_time_buffer = get_date_by_shift(self.last_end, -hist_ref + 1, clip_shift=False, freq=self.freq)
        start_time = get_date_by_shift(self.last_end, 1, freq=self.freq)
        return start_time_buffer, {"test": (start_time, self.to_date)}

    def prepare_data(self, unprepared_dataset: Any = None, memo: dict | None = None) -> Any:
        """The dataset for ``[last_end + 1, to_date]``, loaded from ``last_end + 1 - hist_ref``.

        ``memo`` (ours; qlib has none): a dict shared by the updaters of one update pass. Datasets that are equal
        once re-pointed at the new dates (same handler config, same fitted processor state, same window: equal
        pickled states, see :func:`~qlib_prefect.utils.serial.state_digest`) are set up once and shared, so the
        online models of one template compute the new dates' features once. The data must not change while a memo
        is in use."""
        dataset = self.record.load_object("dataset") if unprepared_dataset is None else unprepared_dataset
        start, seg = self._window(dataset)
        if memo is None or not isinstance(self.rmdl, RMDLoader):
            return self.rmdl.get_dataset(start_time=start, end_time=self.to_date, segments=seg,
                                         unprepared_dataset=dataset)
        dataset.config(handler_kwargs={"start_time": start, "end_time": self.to_date}, segments=seg)
        key = state_digest(dataset)
        if key not in memo:
            dataset.setup_data(handler_kwargs={"init_type": "load_state"})
            memo[key] = dataset
        return memo[key]

    def update(self, dataset: Any = None, write: bool = True, ret_new: bool = False, memo: dict | None = None) -> Any:
        """Recompute ``[last_end + 1, to_date]`` and (``write``) save the merged artifact; returns it when
        ``ret_new``. Nothing happens (None) when ``last_end >= to_date``. ``memo``: see :meth:`prepare_data`."""
        if self.last_end >= self.to_date:
            logger.info("The data in %s are latest (%s). No need to update to %s.", self.record.info["id"],
                        self.last_end, self.to_date)
            return None
        if dataset is None:
            dataset = self.prepare_data(memo=memo)
        updated = self.get_update_data(dataset)
        if write:
            self.record.save_objects(**{self.fname: updated})
        if ret_new:
            return updated
        return None

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        raise NotImplementedError("Please implement the `get_update_data` method.")


class PredUpdater(DSBasedUpdater):
    """Extend ``pred.pkl`` with the stored model's predictions for the new dates."""

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        model = self.rmdl.get_model()
        new_pred = model.predict(dataset)
        if isinstance(new_pred, pd.Series):
            new_pred = new_pred.to_frame("score")
        data = replace_range(self.old_data, new_pred)
        logger.info("Finish updating new %d predictions in %s.", len(new_pred), self.record.info["id"])
        return data


class LabelUpdater(DSBasedUpdater):
    """Extend ``label.pkl`` with the raw label of the new dates (the label ``SignalRecord`` writes)."""

    def __init__(self, record: Any, to_date: Any = None, **kwargs: Any) -> None:
        super().__init__(record, to_date=to_date, fname="label.pkl", **kwargs)

    def get_update_data(self, dataset: Any) -> pd.DataFrame:
        from qlib_prefect.workflow.record_temp import SignalRecord

        new_label = SignalRecord.generate_label(dataset)
        return replace_range(self.old_data.sort_index(), new_label)
