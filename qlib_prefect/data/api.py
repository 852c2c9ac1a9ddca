"""qlib's ``D`` data API (``qlib.data.D``) over the process-wide provider.

Example:
    >>> from qlib_prefect.data import D
    >>> D.features(D.instruments("csi300"), ["$close", "Mean($close, 5)"], "2020-01-01", "2020-12-31")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.base import Spans
from qlib_prefect.data.expression.engine import compute_features
from qlib_prefect.data.filter import apply_filter_pipe
from qlib_prefect.data.registry import get_provider
from qlib_prefect.errors import ConfigError, DataError

__all__ = ["D", "DataAPI", "apply_filter_pipe"]


def _check_freq(freq: str) -> None:
    if freq != "day":
        raise DataError(f"only freq='day' is supported, got {freq!r}")


class DataAPI:
    """The methods of qlib's ``D`` used by workflows: calendar, instruments, list_instruments, features."""

    def _provider(self) -> Any:
        return get_provider()

    def calendar(
        self, start_time: Any = None, end_time: Any = None, freq: str = "day", future: bool = False
    ) -> np.ndarray:
        """Trading dates in ``[start_time, end_time]`` (qlib returns a numpy array of Timestamps)."""
        _check_freq(freq)
        cal = pd.DatetimeIndex(self._provider().calendar(future=future))
        if len(cal) == 0:
            return np.array([], dtype=object)
        si = 0 if start_time is None else int(cal.searchsorted(pd.Timestamp(start_time), side="left"))
        ei = len(cal) if end_time is None else int(cal.searchsorted(pd.Timestamp(end_time), side="right"))
        return cal[si:ei].astype(object).to_numpy()

    @staticmethod
    def instruments(market: str | list[str] = "all", filter_pipe: list[dict] | None = None) -> Any:
        """qlib's instrument config ``{"market": market, "filter_pipe": [...]}`` (a list is returned as is)."""
        if isinstance(market, list):
            return market
        return {"market": market, "filter_pipe": list(filter_pipe or [])}

    def list_instruments(
        self,
        instruments: Any,
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        as_list: bool = False,
    ) -> Spans | list[str]:
        """``{code: [(start, end), ...]}`` of a market config, spans clipped to ``[start_time, end_time]``
        (empty ones dropped); ``as_list=True`` gives the codes. A list of codes is returned as is."""
        _check_freq(freq)
        if isinstance(instruments, (list, tuple)):
            return list(instruments)
        if isinstance(instruments, str):
            instruments = self.instruments(instruments)
        if not isinstance(instruments, Mapping) or "market" not in instruments:
            raise ConfigError(f"instruments: expected D.instruments(...) config or list, got {instruments!r}")
        p = self._provider()
        spans = p.instruments(str(instruments["market"]))
        cal = pd.DatetimeIndex(p.calendar())
        lo = pd.Timestamp(start_time) if start_time is not None else (cal[0] if len(cal) else pd.Timestamp.min)
        hi = pd.Timestamp(end_time) if end_time is not None else (cal[-1] if len(cal) else pd.Timestamp.max)
        out: Spans = {}
        for code, sp in spans.items():
            kept = [(max(lo, pd.Timestamp(b)), min(hi, pd.Timestamp(e))) for b, e in sp]
            kept = [(b, e) for b, e in kept if b <= e]
            if kept:
                out[code] = kept
        out = apply_filter_pipe(out, instruments.get("filter_pipe"), provider=p, start_time=lo, end_time=hi)
        return sorted(out) if as_list else out

    def features(
        self,
        instruments: Any,
        fields: Sequence[str],
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
    ) -> pd.DataFrame:
        """qlib's ``D.features``: float32 frame indexed ``(instrument, datetime)``, one column per field
        string (as given). A market config keeps rows inside membership spans (features still use the
        full history); a list of codes keeps every stored row."""
        _check_freq(freq)
        fields = [str(f) for f in fields]
        if isinstance(instruments, str):
            instruments = self.instruments(instruments)
        if isinstance(instruments, Mapping) and "market" in instruments:
            spans: Any = self.list_instruments(instruments)  # whole calendar, like qlib's dataset()
        elif isinstance(instruments, Mapping):
            spans = dict(instruments)
        else:
            spans = [str(c) for c in instruments]
        exprs = [f.replace(" ", "") for f in fields]
        df = compute_features(self._provider(), spans, exprs, fields, start_time, end_time, freq=freq)
        df = df.swaplevel(0, 1).sort_index(level=[0, 1], sort_remaining=False)
        return df


D = DataAPI()
