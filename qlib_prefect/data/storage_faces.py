"""qlib's storage classes (``qlib.data.storage`` / ``qlib.data.storage.file_storage``), read-only faces over
:mod:`qlib_prefect.data.storage` (the one reader and writer of qlib's on-disk format).

``FileCalendarStorage(freq, future, provider_uri)``: ``data`` / ``[i]`` / ``[a:b]`` / ``len`` / ``index(value)``
of the calendar's date strings. ``FileInstrumentStorage(market, freq, provider_uri)``: ``data`` =
``{code: [(start, end), ...]}`` and ``[code]``. ``FileFeatureStorage(instrument, field, freq, provider_uri)``:
``[i] -> (i, value)``, ``[a:b] -> pd.Series`` indexed by calendar position, ``data``, ``start_index``,
``end_index``, ``len``. A ``provider_uri`` without the files raises ``ValueError`` (qlib's check); an index before
a feature's first stored position raises ``IndexError``. Deliberate difference: the write methods of qlib's
classes (``extend``, ``__setitem__``, ``write``, ``clear``, ...) are not offered; data is written by the importer
(docs/data.md), which keeps writes atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data import storage as S

__all__ = [
    "CalendarStorage",
    "FeatureStorage",
    "FileCalendarStorage",
    "FileFeatureStorage",
    "FileInstrumentStorage",
    "InstrumentStorage",
]


def _root(provider_uri: Any, freq: str) -> Path:
    if provider_uri is None:
        from qlib_prefect.config.runtime import provider_path

        return provider_path()
    if isinstance(provider_uri, dict):
        provider_uri = provider_uri.get(freq) or next(iter(provider_uri.values()))
    return Path(str(provider_uri)).expanduser()


class _FileStorage:
    storage_name = "file"

    def _check(self, path: Path) -> Path:
        if not path.exists():
            raise ValueError(f"{self.storage_name} not exists: {path}")
        return path


class CalendarStorage(_FileStorage):
    """qlib's calendar storage interface (read side)."""

    storage_name = "calendar"


class InstrumentStorage(_FileStorage):
    """qlib's instrument storage interface (read side)."""

    storage_name = "instrument"


class FeatureStorage(_FileStorage):
    """qlib's feature storage interface (read side)."""

    storage_name = "feature"


class FileCalendarStorage(CalendarStorage):
    def __init__(self, freq: str, future: bool, provider_uri: Any = None, **kwargs: Any) -> None:
        self.freq, self.future, self.provider_uri = freq, future, provider_uri

    @property
    def uri(self) -> Path:
        return S.calendar_path(_root(self.provider_uri, self.freq), self.freq, self.future)

    @property
    def data(self) -> list[str]:
        self._check(self.uri)
        return S.format_dates(S.read_calendar(_root(self.provider_uri, self.freq), self.freq, self.future))

    def index(self, value: Any) -> int:
        return self.data.index(S.format_dates([pd.Timestamp(value)])[0])

    def __getitem__(self, i: int | slice) -> Any:
        return self.data[i]

    def __len__(self) -> int:
        return len(self.data)


class FileInstrumentStorage(InstrumentStorage):
    def __init__(self, market: str, freq: str, provider_uri: Any = None, **kwargs: Any) -> None:
        self.market, self.freq, self.provider_uri = market, freq, provider_uri

    @property
    def uri(self) -> Path:
        return S.instruments_path(_root(self.provider_uri, self.freq), self.market)

    @property
    def data(self) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
        self._check(self.uri)
        spans = S.read_instruments(_root(self.provider_uri, self.freq), self.market)
        return {c: [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in v] for c, v in spans.items()}

    def __getitem__(self, k: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        return self.data[k]

    def __len__(self) -> int:
        return len(self.data)


class FileFeatureStorage(FeatureStorage):
    def __init__(self, instrument: str, field: str, freq: str, provider_uri: Any = None, **kwargs: Any) -> None:
        self.instrument, self.field, self.freq, self.provider_uri = instrument, field, freq, provider_uri

    @property
    def uri(self) -> Path:
        root = _root(self.provider_uri, self.freq)
        if not (root / "features").is_dir():
            raise ValueError(f"{self.storage_name}: {root} does not contain data for {self.freq}")
        return S.feature_path(root, self.instrument, self.field, self.freq)

    def _read(self) -> tuple[int, np.ndarray] | None:
        path = self.uri
        return S.read_bin(path) if path.exists() else None

    @property
    def data(self) -> pd.Series:
        return self[:]

    @property
    def start_index(self) -> int | None:
        span = S.bin_span(self.uri)
        return None if span is None else span[0]

    @property
    def end_index(self) -> int | None:
        span = S.bin_span(self.uri)
        return None if span is None else span[1]

    def __getitem__(self, i: int | slice) -> Any:
        got = self._read()
        if got is None:
            if isinstance(i, int):
                return None, None
            if isinstance(i, slice):
                return pd.Series(dtype=np.float32)
            raise TypeError(f"type(i) = {type(i)}")
        start, vals = got
        if isinstance(i, int):
            if i < start:
                raise IndexError(f"{i}: start index is {start}")
            return i, vals[i - start]
        if isinstance(i, slice):
            lo = max(start if i.start is None else i.start, start)
            hi = start + len(vals) - 1 if i.stop is None else i.stop - 1
            if lo > hi:
                return pd.Series(dtype=np.float32)
            part = vals[lo - start : hi - start + 1]
            return pd.Series(part, index=pd.RangeIndex(lo, lo + len(part)))
        raise TypeError(f"type(i) = {type(i)}")

    def __len__(self) -> int:
        self._check(self.uri)
        got = self._read()
        return 0 if got is None else len(got[1])
