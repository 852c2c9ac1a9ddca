"""qlib's provider objects (``qlib.data.data``): ``Cal``, ``Inst``, ``FeatureD``, ``ExpressionD``, ``DatasetD``.

Thin faces over the process-wide provider (``qlib_prefect.data.registry.get_provider``) and the panel
expression engine, with qlib's method signatures and return shapes: per-instrument series are indexed by
calendar position (qlib's ``start_index``/``end_index``), frames by ``(instrument, datetime)``. The
``Local*`` class names are the same classes (there is one local provider here; no client/server mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.api import D
from qlib_prefect.data.expression import nodes
from qlib_prefect.data.expression.engine import compute_features
from qlib_prefect.data.expression.operators import Expression, Feature, Operators, PFeature
from qlib_prefect.data.expression.parser import parse
from qlib_prefect.data.registry import get_provider
from qlib_prefect.errors import DataError

__all__ = [
    "Cal",
    "CalendarProvider",
    "DatasetD",
    "DatasetProvider",
    "ExpressionD",
    "ExpressionProvider",
    "FeatureD",
    "FeatureProvider",
    "Inst",
    "InstrumentProvider",
    "LocalCalendarProvider",
    "LocalDatasetProvider",
    "LocalExpressionProvider",
    "LocalFeatureProvider",
    "LocalInstrumentProvider",
    "to_operator",
]


def to_operator(expr: str | nodes.Expression) -> Any:
    """The qlib operator object (``qlib.data.ops`` classes) of an expression string."""
    node = parse(expr)
    if isinstance(node, nodes.Feature):
        return (PFeature if node.pit else Feature)(node.name)
    if isinstance(node, nodes.Const):
        return node.value
    args = [a.value if isinstance(a, nodes.Const) else to_operator(a) for a in node.args]
    return getattr(Operators, node.name)(*args)


class CalendarProvider:
    """``Cal.calendar(start_time, end_time, freq, future)`` and ``locate_index``."""

    def calendar(self, start_time: Any = None, end_time: Any = None, freq: str = "day", future: bool = False):
        return D.calendar(start_time, end_time, freq=freq, future=future)

    def locate_index(
        self, start_time: Any, end_time: Any, freq: str = "day", future: bool = False
    ) -> tuple[pd.Timestamp, pd.Timestamp, int, int]:
        """``(start, end, start_index, end_index)``: the first trading day >= start and last <= end."""
        cal = pd.DatetimeIndex(get_provider().calendar(future=future))
        si = int(cal.searchsorted(pd.Timestamp(start_time), side="left"))
        ei = int(cal.searchsorted(pd.Timestamp(end_time), side="right")) - 1
        if si >= len(cal) or ei < 0:
            raise IndexError(f"[{start_time}, {end_time}] is outside the calendar [{cal[0]}, {cal[-1]}]")
        return cal[si], cal[ei], si, ei


class InstrumentProvider:
    """``Inst.instruments(market, filter_pipe)`` (a config) and ``Inst.list_instruments(...)``."""

    @staticmethod
    def instruments(market: str | list[str] = "all", filter_pipe: list | None = None) -> Any:
        return D.instruments(market, filter_pipe)

    def list_instruments(
        self, instruments: Any, start_time: Any = None, end_time: Any = None, freq: str = "day", as_list: bool = False
    ) -> Any:
        return D.list_instruments(instruments, start_time, end_time, freq=freq, as_list=as_list)


class FeatureProvider:
    """``FeatureD.feature(instrument, field, start_index, end_index, freq)``: the stored series of ``$field``."""

    def feature(self, instrument: str, field: str, start_index: int, end_index: int, freq: str = "day") -> pd.Series:
        name = str(field).lstrip("$").lower()
        fd = get_provider().load_field(name, [str(instrument)])
        lo, hi = max(int(start_index), int(fd.start[0])), min(int(end_index), int(fd.end[0]))
        if hi < lo:
            return pd.Series(dtype=np.float32)
        vals = np.asarray(fd.values)[lo : hi + 1, 0].astype(np.float32)
        return pd.Series(vals, index=pd.RangeIndex(lo, hi + 1))


class ExpressionProvider:
    """``ExpressionD.expression(instrument, field, start_time, end_time, freq)``: one instrument's values on
    the calendar positions of ``[start_time, end_time]`` inside its stored span (float32)."""

    def get_expression_instance(self, field: str) -> Any:
        return to_operator(field)

    def expression(
        self, instrument: str, field: Any, start_time: Any = None, end_time: Any = None, freq: str = "day"
    ) -> pd.Series:
        expr = str(field).replace(" ", "")
        df = compute_features(get_provider(), [str(instrument)], [expr], start=start_time, end=end_time, freq=freq)
        cal = pd.DatetimeIndex(get_provider().calendar())
        pos = cal.get_indexer(df.index.get_level_values("datetime"))
        return pd.Series(df.iloc[:, 0].to_numpy(), index=pd.Index(pos), name=None)


class DatasetProvider:
    """``DatasetD.dataset(instruments, fields, start_time, end_time, freq, inst_processors)`` and qlib's
    static helpers (``get_instruments_d``, ``get_column_names``, ``parse_fields``, ``inst_calculator``)."""

    def dataset(
        self,
        instruments: Any,
        fields: Sequence[Any],
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        inst_processors: Sequence[Any] = (),
    ) -> pd.DataFrame:
        df = D.features(instruments, [str(f) for f in fields], start_time, end_time, freq=freq)
        df.columns = pd.Index(self.get_column_names(fields), dtype=object)
        for p in inst_processors:
            df = _inst_proc(p)(df)
        return df

    @staticmethod
    def get_instruments_d(instruments: Any, freq: str = "day") -> Any:
        if isinstance(instruments, dict) and "market" in instruments:
            return D.list_instruments(instruments, freq=freq, as_list=False)
        if isinstance(instruments, (list, tuple, pd.Index, np.ndarray, dict)):
            return instruments if isinstance(instruments, dict) else list(instruments)
        raise DataError(f"instruments: unsupported type {type(instruments).__name__}")

    @staticmethod
    def get_column_names(fields: Sequence[Any]) -> list[str]:
        if len(fields) == 0:
            raise ValueError("fields cannot be empty")
        return [str(f) for f in fields]

    @staticmethod
    def parse_fields(fields: Sequence[Any]) -> list[Any]:
        return [f if isinstance(f, Expression) else to_operator(str(f)) for f in fields]

    @staticmethod
    def inst_calculator(
        inst: str,
        start_time: Any,
        end_time: Any,
        freq: str,
        column_names: Sequence[str],
        spans: Any = None,
        g_config: Any = None,
        inst_processors: Sequence[Any] = (),
    ) -> pd.DataFrame:
        """One instrument's frame (index ``datetime``, columns ``column_names``), rows inside ``spans``."""
        instruments: Any = {str(inst): list(spans)} if spans else [str(inst)]
        df = compute_features(get_provider(), instruments, list(column_names), start=start_time, end=end_time,
                              freq=freq).droplevel("instrument")  # fmt: skip
        for p in inst_processors:
            df = _inst_proc(p)(df, instrument=inst)
        return df


def _inst_proc(p: Any) -> Any:
    from qlib_prefect.utils import init_instance_by_config

    return init_instance_by_config(p, "qlib_prefect.data.processor", _where="inst_processors")


LocalCalendarProvider = CalendarProvider
LocalInstrumentProvider = InstrumentProvider
LocalFeatureProvider = FeatureProvider
LocalExpressionProvider = ExpressionProvider
LocalDatasetProvider = DatasetProvider

Cal = CalendarProvider()
Inst = InstrumentProvider()
FeatureD = FeatureProvider()
ExpressionD = ExpressionProvider()
DatasetD = DatasetProvider()
