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

import bisect
import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.handler import DataHandler, DataHandlerLP, Serializable, fetch_df_by_col, fetch_df_by_index
from qlib_prefect.errors import ConfigError

__all__ = ["Dataset", "DatasetH", "TSDataSampler", "TSDatasetH", "fetch_df_by_col", "fetch_df_by_index"]


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


# ------------------------------------------------------------------------------------------ time series
def _ffill_idx(arr: np.ndarray) -> np.ndarray:
    mask = np.isnan(arr)
    idx = np.where(~mask, np.arange(len(arr)), 0)
    np.maximum.accumulate(idx, out=idx)
    return arr[idx]


class TSDataSampler:
    """Time-series samples over tabular handler data (qlib's ``TSDataSampler``), torch-``Dataset``-like.

    ``sampler[i]`` is the ``(step_len, n_columns)`` window ending at the i-th indexable ``(datetime,
    instrument)`` row (rows ordered by instrument, then date); ``sampler[date, code]`` the window ending at
    that date; a list of indices gives ``(n, step_len, n_columns)``. Dates before an instrument's first row
    are NaN (``fillna_type`` ``"ffill"``/``"ffill+bfill"`` repeat neighbouring rows instead).

    Args:
        data: frame indexed ``(datetime, instrument)``.
        start, end: the indexable date range (the data may start earlier to fill the windows).
        step_len: window length.
        fillna_type: ``"none"``, ``"ffill"`` or ``"ffill+bfill"``.
        dtype: dtype of the value array (default: the frame's).
        flt_data: boolean column (same index) selecting the indexable rows.
    """

    def __init__(
        self,
        data: pd.DataFrame,
        start: Any,
        end: Any,
        step_len: int,
        fillna_type: str = "none",
        dtype: Any = None,
        flt_data: pd.Series | pd.DataFrame | None = None,
    ) -> None:
        if fillna_type not in ("none", "ffill", "ffill+bfill"):
            raise ConfigError(f"TSDataSampler.fillna_type: {fillna_type!r}; use none, ffill or ffill+bfill")
        if list(data.index.names)[:1] != ["datetime"]:
            raise ConfigError("TSDataSampler: the data index must be (datetime, instrument)")
        self.start, self.end, self.step_len, self.fillna_type = start, end, int(step_len), fillna_type
        swapped = data.swaplevel().sort_index()
        arr = np.asarray(swapped.to_numpy(), dtype=dtype)
        self.data_arr = np.concatenate([arr, np.full((1, arr.shape[1]), np.nan, dtype=arr.dtype)])
        self.nan_idx = len(self.data_arr) - 1
        inst_codes, insts = pd.factorize(swapped.index.get_level_values(0), sort=True)
        date_codes, dates = pd.factorize(swapped.index.get_level_values(1), sort=True)
        idx_arr = np.full((len(dates), len(insts)), np.nan)
        idx_arr[date_codes, inst_codes] = np.arange(len(swapped))
        self.idx_df = pd.DataFrame(idx_arr, index=pd.DatetimeIndex(dates, name="datetime"),
                                   columns=pd.Index(insts, name="instrument"))
        self.idx_arr = idx_arr
        idx_map = np.stack([date_codes, inst_codes], axis=1).astype(np.int32)
        data_index = swapped.index
        if flt_data is not None:
            if isinstance(flt_data, pd.DataFrame):
                if flt_data.shape[1] != 1:
                    raise ConfigError("TSDataSampler.flt_data must have exactly one column")
                flt_data = flt_data.iloc[:, 0]
            flt = flt_data.swaplevel().reindex(data_index)
            keep = flt.fillna(False).astype(bool).to_numpy()
            idx_map, data_index = idx_map[keep], data_index[keep]
        lo, hi = self.idx_df.index.slice_locs(
            None if start is None else pd.Timestamp(start), None if end is None else pd.Timestamp(end)
        )
        sel = (idx_map[:, 0] >= lo) & (idx_map[:, 0] < hi)
        self.idx_map, self.data_index = idx_map[sel], data_index[sel]

    def get_index(self) -> pd.MultiIndex:
        """The ``(datetime, instrument)`` index of the indexable samples, in sample order."""
        return self.data_index.swaplevel()

    def config(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def __len__(self) -> int:
        return len(self.idx_map)

    def _get_indices(self, row: int, col: int) -> np.ndarray:
        indices = self.idx_arr[max(row - self.step_len + 1, 0) : row + 1, col]
        if len(indices) < self.step_len:
            indices = np.concatenate([np.full(self.step_len - len(indices), np.nan), indices])
        if self.fillna_type == "ffill":
            indices = _ffill_idx(indices)
        elif self.fillna_type == "ffill+bfill":
            indices = _ffill_idx(_ffill_idx(indices)[::-1])[::-1]
        return indices

    def _get_row_col(self, idx: Any) -> tuple[int, int]:
        if isinstance(idx, (int, np.integer)):
            if not 0 <= idx < len(self.idx_map):
                raise KeyError(f"{idx} is out of [0, {len(self.idx_map)})")
            i, j = self.idx_map[idx]
            return int(i), int(j)
        if isinstance(idx, tuple):
            date, inst = idx
            i = bisect.bisect_right(self.idx_df.index, pd.Timestamp(date)) - 1
            j = bisect.bisect_left(list(self.idx_df.columns), inst)
            return i, j
        raise TypeError(f"TSDataSampler index must be an int, a (date, instrument) tuple or a list, got {idx!r}")

    def __getitem__(self, idx: Any) -> np.ndarray:
        multi = isinstance(idx, (list, np.ndarray))
        if multi:
            indices = np.concatenate([self._get_indices(*self._get_row_col(i)) for i in idx])
        else:
            indices = self._get_indices(*self._get_row_col(idx))
        indices = np.nan_to_num(indices.astype(np.float64), nan=self.nan_idx).astype(int)
        if len(indices) and (np.diff(indices) == 1).all():
            data = self.data_arr[indices[0] : indices[-1] + 1]
        else:
            data = self.data_arr[indices]
        if multi:
            data = data.reshape(-1, self.step_len, *data.shape[1:])
        return data


class TSDatasetH(DatasetH):
    """Time-series DatasetH: ``prepare`` returns :class:`TSDataSampler` objects (qlib's ``TSDatasetH``).

    Args:
        step_len: window length (30).
        flt_col: a column group (e.g. a boolean ``filter`` group) selecting indexable rows.
        **kwargs: :class:`DatasetH` arguments.
    """

    DEFAULT_STEP_LEN = 30

    def __init__(self, *, step_len: int = DEFAULT_STEP_LEN, flt_col: str | None = None, **kwargs: Any) -> None:
        self.step_len = step_len
        self.flt_col = flt_col
        super().__init__(**kwargs)

    def config(self, **kwargs: Any) -> None:
        if "step_len" in kwargs:
            self.step_len = kwargs.pop("step_len")
        super().config(**kwargs)

    def setup_data(self, **kwargs: Any) -> None:
        super().setup_data(**kwargs)
        raw = self.handler.fetch(col_set=self.handler.CS_RAW)
        self.cal = sorted(raw.index.get_level_values("datetime").unique())

    @staticmethod
    def _extend_slice(slc: slice, cal: list, step_len: int) -> slice:
        start_idx = bisect.bisect_left(cal, pd.Timestamp(slc.start)) if slc.start is not None else 0
        pad_start = cal[max(0, start_idx - step_len)] if cal else slc.start
        return slice(pad_start, slc.stop)

    def _prepare_seg(self, slc: Any, **kwargs: Any) -> TSDataSampler:  # type: ignore[override]
        dtype = kwargs.pop("dtype", None)
        if not isinstance(slc, slice):
            slc = slice(*slc)
        flt_col = kwargs.pop("flt_col", None) or self.flt_col
        ext = self._extend_slice(slc, self.cal, self.step_len)
        data = super()._prepare_seg(ext, **kwargs)
        flt_data = None
        if flt_col is not None:
            flt_kwargs = {**kwargs, "col_set": flt_col}
            flt_data = super()._prepare_seg(ext, **flt_kwargs)
        return TSDataSampler(data=data, start=slc.start, end=slc.stop, step_len=self.step_len, dtype=dtype,
                             flt_data=flt_data)
