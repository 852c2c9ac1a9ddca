"""Datasets (qlib's ``qlib.data.dataset``): ``DatasetH`` serves handler data by named date segments.

Segments are inclusive ``(start, end)`` date ranges on the ``datetime`` level; they need not be trading days.

Example:
    >>> import numpy as np, pandas as pd
    >>> from qlib_prefect.data.handler import DataHandlerLP
    >>> idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=4), ["A"]],
    ...                                  names=["datetime", "instrument"])
    >>> df = pd.DataFrame({("feature", "x"): np.arange(4, dtype="float32")}, index=idx)
    >>> ds = DatasetH(handler=DataHandlerLP.from_df(df), segments={"train": ("2019-12-30", "2020-01-02")})
    >>> len(ds.prepare("train"))
    2
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from qlib_prefect.data.handler import DataHandler, DataHandlerLP, Serializable, fetch_df_by_col, fetch_df_by_index
from qlib_prefect.errors import ConfigError

__all__ = ["Dataset", "DatasetH", "fetch_df_by_col", "fetch_df_by_index"]


class Dataset(Serializable):
    """Base dataset: ``setup_data`` loads, ``prepare`` returns model-ready data (qlib pickling rules)."""

    def __init__(self, **kwargs: Any) -> None:
        self.setup_data(**kwargs)

    def config(self, **kwargs: Any) -> None:
        """``dump_all`` / ``exclude`` / ``include`` / ``recursive`` (qlib's ``Serializable.config``)."""
        super().config(**kwargs)

    def setup_data(self, **kwargs: Any) -> None:
        if kwargs:
            raise ConfigError(f"{type(self).__name__}: unknown argument(s) {sorted(kwargs)}")

    def prepare(self, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_segments(segments: Any) -> dict:
    if not isinstance(segments, Mapping):
        raise ConfigError(f"dataset.segments must be a mapping name -> (start, end), got {type(segments).__name__}")
    for name, seg in segments.items():
        if isinstance(seg, (list, tuple)) and len(seg) != 2:
            raise ConfigError(f"dataset.segments.{name}: expected (start, end), got {seg!r}")
        if isinstance(seg, (list, tuple)):
            for x in seg:
                if x is not None:
                    try:
                        pd.Timestamp(x)
                    except (ValueError, TypeError):
                        raise ConfigError(f"dataset.segments.{name}: {x!r} is not a date") from None
    return dict(segments)


class DatasetH(Dataset):
    """Dataset over a data handler.

    Args:
        handler: a :class:`DataHandler` or its config (qlib class paths work,
            e.g. ``{"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": {...}}``).
        segments: ``{"train": (start, end), ...}`` inclusive date ranges.
        fetch_kwargs: extra keyword arguments for every ``handler.fetch``.
    """

    def __init__(
        self,
        *,
        handler: Any,
        segments: Mapping[str, Any],
        fetch_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from qlib_prefect.utils import init_instance_by_config

        self.segments = _check_segments(segments)
        self.fetch_kwargs = dict(fetch_kwargs or {})
        self.handler: DataHandler = init_instance_by_config(
            handler, "qlib_prefect.data.handler", accept_types=DataHandler, _where="dataset.handler"
        )
        super().__init__(**kwargs)

    def config(self, handler_kwargs: dict | None = None, **kwargs: Any) -> None:
        if handler_kwargs is not None:
            self.handler.config(**handler_kwargs)
        if "segments" in kwargs:
            self.segments = _check_segments(copy.deepcopy(kwargs.pop("segments")))
        super().config(**kwargs)

    def setup_data(self, handler_kwargs: dict | None = None, **kwargs: Any) -> None:
        super().setup_data(**kwargs)
        if handler_kwargs is not None:
            self.handler.setup_data(**handler_kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(handler={self.handler}, segments={self.segments})"

    def _prepare_seg(self, slc: Any, **kwargs: Any) -> pd.DataFrame:
        return self.handler.fetch(slc, **kwargs, **self.fetch_kwargs)

    def prepare(
        self,
        segments: Any,
        col_set: str | list[str] = DataHandler.CS_ALL,
        data_key: str = DataHandlerLP.DK_I,
        **kwargs: Any,
    ) -> pd.DataFrame | list[pd.DataFrame]:
        """Data of a segment name, a list of names (list of frames), or any selector (slice, dates)."""
        seg_kwargs = {"col_set": col_set, "data_key": data_key, **kwargs}
        if isinstance(segments, str) and segments in self.segments:
            return self._prepare_seg(self.segments[segments], **seg_kwargs)
        if isinstance(segments, (list, tuple)) and segments and all(
            isinstance(s, str) and s in self.segments for s in segments
        ):
            return [self._prepare_seg(self.segments[s], **seg_kwargs) for s in segments]
        if isinstance(segments, str) and not _looks_like_date(segments):
            raise ConfigError(f"unknown segment {segments!r}; segments: {sorted(self.segments)}")
        return self._prepare_seg(segments, **seg_kwargs)

    @staticmethod
    def get_min_time(segments: Mapping[str, Any]) -> Any:
        return DatasetH._get_extrema(segments, 0, lambda a, b: a > b)

    @staticmethod
    def get_max_time(segments: Mapping[str, Any]) -> Any:
        return DatasetH._get_extrema(segments, 1, lambda a, b: a < b)

    @staticmethod
    def _get_extrema(segments: Mapping[str, Any], idx: int, cmp: Callable, key_func: Callable = pd.Timestamp) -> Any:
        candidate = None
        for seg in segments.values():
            point = seg[idx]
            if point is None:
                return None
            if candidate is None or cmp(key_func(candidate), key_func(point)):
                candidate = point
        return candidate


def _looks_like_date(s: str) -> bool:
    try:
        pd.Timestamp(s)
    except (ValueError, TypeError):
        return False
    return True
