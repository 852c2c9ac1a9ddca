"""The provider seam: what the expression engine needs from a data source.

A provider answers three questions for one frequency (``day``):

* ``calendar(future=False)`` -> ``pd.DatetimeIndex`` of all trading dates (ascending);
* ``instruments(market)`` -> ``{code: [(start, end), ...]}`` membership spans (inclusive Timestamps);
* ``load_field(field, codes)`` -> :class:`FieldData`, a (dates x instruments) float32 panel over the
  *whole* calendar plus, per instrument, the span ``[start, end]`` (calendar positions, inclusive) that is
  actually stored. Outside the span values are NaN and count as *absent* (qlib never loaded them),
  inside the span NaN is a real value (e.g. a suspension).

:class:`LocalProvider` (``qlib_prefect.data.provider``) reads qlib's binary format;
:class:`MemoryProvider` here serves tests and synthetic data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from qlib_prefect.errors import DataError

__all__ = ["FieldData", "MemoryProvider", "Provider", "Spans"]

Spans = dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]


@dataclass(frozen=True)
class FieldData:
    """One raw field for several instruments on the full calendar.

    Attributes:
        values: float32 array, shape ``(len(calendar), len(codes))``; NaN outside each instrument's span.
        start: int array ``(len(codes),)``: first stored calendar position (``len(calendar)`` if no data).
        end: int array ``(len(codes),)``: last stored calendar position, inclusive (``-1`` if no data).
    """

    values: np.ndarray
    start: np.ndarray
    end: np.ndarray


@runtime_checkable
class Provider(Protocol):
    """What the expression engine and the backtest read data through."""

    def calendar(self, future: bool = False) -> pd.DatetimeIndex: ...

    def instruments(self, market: str = "all") -> Spans: ...

    def load_field(self, field: str, codes: Sequence[str]) -> FieldData: ...

    def fingerprint(self) -> str: ...


class MemoryProvider:
    """A provider over in-memory wide frames: ``{field: DataFrame(index=dates, columns=codes)}``.

    An instrument's stored span is the range between its first and last row where *any* field is
    present (like a qlib directory written by the CSV importer: one span per instrument).

    Example:
        >>> idx = pd.bdate_range("2020-01-01", periods=3)
        >>> p = MemoryProvider({"close": pd.DataFrame({"A": [1.0, 2.0, 3.0]}, index=idx)})
        >>> p.load_field("close", ["A"]).values[:, 0].tolist()
        [1.0, 2.0, 3.0]
    """

    def __init__(
        self,
        fields: Mapping[str, pd.DataFrame],
        markets: Mapping[str, Spans] | None = None,
        calendar: pd.DatetimeIndex | None = None,
    ) -> None:
        if not fields:
            raise DataError("MemoryProvider needs at least one field")
        self._fields = {k.lower().lstrip("$"): v for k, v in fields.items()}
        cal = calendar if calendar is not None else pd.DatetimeIndex(
            sorted(set().union(*[set(f.index) for f in self._fields.values()]))
        )
        self._cal = pd.DatetimeIndex(cal)
        codes = sorted(set().union(*[set(f.columns) for f in self._fields.values()]))
        present = np.zeros((len(self._cal), len(codes)), dtype=bool)
        for f in self._fields.values():
            present |= f.reindex(index=self._cal, columns=codes).notna().to_numpy()
        self._span: dict[str, tuple[int, int]] = {}
        for j, c in enumerate(codes):
            rows = np.flatnonzero(present[:, j])
            self._span[c] = (int(rows[0]), int(rows[-1])) if len(rows) else (len(self._cal), -1)
        all_spans: Spans = {
            c: [(self._cal[s], self._cal[e])] for c, (s, e) in self._span.items() if e >= s
        }
        self._markets: dict[str, Spans] = {"all": all_spans, **{k.lower(): v for k, v in (markets or {}).items()}}

    def calendar(self, future: bool = False) -> pd.DatetimeIndex:
        return self._cal

    def instruments(self, market: str = "all") -> Spans:
        try:
            return self._markets[market.lower()]
        except KeyError:
            raise DataError(f"unknown market {market!r}; known: {sorted(self._markets)}") from None

    def load_field(self, field: str, codes: Sequence[str]) -> FieldData:
        name = field.lower().lstrip("$")
        n = len(self._cal)
        start = np.array([self._span.get(c, (n, -1))[0] for c in codes], dtype=np.int64)
        end = np.array([self._span.get(c, (n, -1))[1] for c in codes], dtype=np.int64)
        if name not in self._fields:
            return FieldData(np.full((n, len(codes)), np.nan, dtype=np.float32), start, end)
        vals = self._fields[name].reindex(index=self._cal, columns=list(codes)).to_numpy(dtype=np.float32)
        rows = np.arange(n)[:, None]
        vals = np.where((rows >= start[None, :]) & (rows <= end[None, :]), vals, np.nan).astype(np.float32)
        return FieldData(vals, start, end)

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for k in sorted(self._fields):
            f = self._fields[k]
            h.update(k.encode())
            h.update(pd.util.hash_pandas_object(f, index=True).to_numpy().tobytes())
        return h.hexdigest()[:16]
