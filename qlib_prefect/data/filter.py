"""qlib's dynamic instrument filters (``qlib.data.filter``): the ``filter_pipe`` of an instruments config.

``D.instruments("csi300", filter_pipe=[NameDFilter("SH[0-9]{4}55").to_config()])`` keeps the instruments
(and, for :class:`ExpressionDFilter`, the dates) that pass. The semantics are qlib's
``SeriesDFilter.filter_main``, including its quirks: a filter only acts inside ``[fstart_time, fend_time]``
(membership outside stays as it was); an expression value of NaN counts as True (qlib casts the
float values to bool); inside an instrument's first..last filtered row, a date without a row is
dropped. Computed on (dates x instruments) arrays instead of one pandas Series per instrument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.base import Spans
from qlib_prefect.errors import ConfigError

__all__ = ["BaseDFilter", "ExpressionDFilter", "NameDFilter", "SeriesDFilter", "apply_filter_pipe"]


def _ts(x: Any) -> pd.Timestamp | None:
    return pd.Timestamp(x) if x else None


class BaseDFilter:
    """qlib's filter base: ``filter = F.from_config(cfg)``; ``filter(instruments, start, end)``."""

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> BaseDFilter:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError


class SeriesDFilter(BaseDFilter):
    """A filter over a boolean (dates x instruments) mask; subclasses give :meth:`_filter_mask`."""

    def __init__(self, fstart_time: Any = None, fend_time: Any = None, keep: bool = False) -> None:
        self.filter_start_time = _ts(fstart_time)
        self.filter_end_time = _ts(fend_time)
        self.keep = keep

    def _filter_mask(
        self, provider: Any, instruments: Spans, codes: list[str], fcal: pd.DatetimeIndex
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(value, in_range)`` over ``fcal`` x ``codes``: the rule's verdict, and where it applies."""
        raise NotImplementedError

    def __call__(
        self,
        instruments: Spans,
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        *,
        provider: Any = None,
    ) -> Spans:
        if provider is None:
            from qlib_prefect.data.registry import get_provider

            provider = get_provider()
        return self.filter_main(instruments, start_time, end_time, provider=provider)

    def filter_main(self, instruments: Spans, start_time: Any = None, end_time: Any = None, *, provider: Any) -> Spans:
        cal = pd.DatetimeIndex(provider.calendar())
        lbound, ubound = cal[-1], cal[0]  # qlib's _getTimeBound
        for sp in instruments.values():
            if sp:
                lbound = min(lbound, pd.Timestamp(sp[0][0]))
                ubound = max(ubound, pd.Timestamp(sp[-1][-1]))
        start, end = pd.Timestamp(start_time or lbound), pd.Timestamp(end_time or ubound)
        all_cal = cal[(cal >= start) & (cal <= end)]
        if len(all_cal) == 0:
            return {}
        fs = max(self.filter_start_time, all_cal[0]) if self.filter_start_time else all_cal[0]
        fe = min(self.filter_end_time, all_cal[-1]) if self.filter_end_time else all_cal[-1]
        fcal = cal[(cal >= fs) & (cal <= fe)]
        codes = list(instruments)
        member = np.zeros((len(all_cal), len(codes)), dtype=bool)
        for j, c in enumerate(codes):  # membership spans: a few slices per instrument
            for b, e in instruments[c] or []:
                lo = all_cal.searchsorted(pd.Timestamp(b), side="left")
                hi = all_cal.searchsorted(pd.Timestamp(e), side="right")
                member[lo:hi, j] = True
        if len(fcal):
            value, in_range = self._filter_mask(provider, instruments, codes, fcal)
            rows = all_cal.get_indexer(fcal)
            sub = member[rows]
            member[rows] = np.where(in_range, sub & value, sub)
        return _to_spans(member, all_cal, codes)


def _to_spans(mask: np.ndarray, cal: pd.DatetimeIndex, codes: list[str]) -> Spans:
    """Contiguous True runs of each column as ``[(first, last), ...]`` (qlib's ``_toTimestamp``)."""
    out: Spans = {}
    pad = np.zeros((1, mask.shape[1]), dtype=np.int8)
    diff = np.diff(np.vstack([pad, mask.astype(np.int8), pad]), axis=0)
    for j, c in enumerate(codes):
        starts = np.flatnonzero(diff[:, j] == 1)
        if len(starts):
            ends = np.flatnonzero(diff[:, j] == -1) - 1
            out[c] = [(cal[s], cal[e]) for s, e in zip(starts, ends, strict=True)]
    return out


class NameDFilter(SeriesDFilter):
    """Keep instruments whose code matches ``name_rule_re`` (``re.match``) inside the filter window."""

    def __init__(self, name_rule_re: str, fstart_time: Any = None, fend_time: Any = None) -> None:
        super().__init__(fstart_time, fend_time)
        self.name_rule_re = name_rule_re

    def _filter_mask(
        self, provider: Any, instruments: Spans, codes: list[str], fcal: pd.DatetimeIndex
    ) -> tuple[np.ndarray, np.ndarray]:
        rule = re.compile(self.name_rule_re)
        hit = np.array([bool(rule.match(c)) for c in codes], dtype=bool)
        return np.broadcast_to(hit, (len(fcal), len(codes))), np.ones((len(fcal), len(codes)), dtype=bool)

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> NameDFilter:
        return NameDFilter(
            name_rule_re=config["name_rule_re"],
            fstart_time=config.get("filter_start_time"),
            fend_time=config.get("filter_end_time"),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "filter_type": "NameDFilter",
            "name_rule_re": self.name_rule_re,
            "filter_start_time": str(self.filter_start_time) if self.filter_start_time else self.filter_start_time,
            "filter_end_time": str(self.filter_end_time) if self.filter_end_time else self.filter_end_time,
        }


class ExpressionDFilter(SeriesDFilter):
    """Keep the dates where ``rule_expression`` (e.g. ``"$close/$open>5"``) holds; ``keep``: instruments
    without any row in the filter window pass."""

    def __init__(self, rule_expression: str, fstart_time: Any = None, fend_time: Any = None, keep: bool = False):
        super().__init__(fstart_time, fend_time, keep=keep)
        self.rule_expression = rule_expression

    def _filter_mask(
        self, provider: Any, instruments: Spans, codes: list[str], fcal: pd.DatetimeIndex
    ) -> tuple[np.ndarray, np.ndarray]:
        from qlib_prefect.data.expression.engine import compute_features

        expr = str(self.rule_expression).replace(" ", "")
        df = compute_features(provider, dict(instruments), [expr], start=fcal[0], end=fcal[-1])
        ti = fcal.get_indexer(df.index.get_level_values("datetime"))
        ci = pd.Index(codes).get_indexer(df.index.get_level_values("instrument"))
        vals = df.iloc[:, 0].to_numpy()
        value = np.zeros((len(fcal), len(codes)), dtype=bool)
        value[ti, ci] = np.isnan(vals) | (vals != 0)  # qlib: float values .astype(bool), NaN -> True
        in_range = np.zeros_like(value)
        found = np.zeros(len(codes), dtype=bool)
        if len(ti):
            first = np.full(len(codes), len(fcal))
            last = np.full(len(codes), -1)
            np.minimum.at(first, ci, ti)
            np.maximum.at(last, ci, ti)
            found = last >= 0
            rows = np.arange(len(fcal))[:, None]
            in_range = (rows >= first[None, :]) & (rows <= last[None, :])
        # instruments without rows: qlib's constant series over the whole filter window
        value[:, ~found] = self.keep
        in_range[:, ~found] = True
        return value, in_range

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> ExpressionDFilter:
        return ExpressionDFilter(
            rule_expression=config["rule_expression"],
            fstart_time=config.get("filter_start_time"),
            fend_time=config.get("filter_end_time"),
            keep=config.get("keep", False),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "filter_type": "ExpressionDFilter",
            "rule_expression": self.rule_expression,
            "filter_start_time": str(self.filter_start_time) if self.filter_start_time else self.filter_start_time,
            "filter_end_time": str(self.filter_end_time) if self.filter_end_time else self.filter_end_time,
            "keep": self.keep,
        }


_FILTERS: dict[str, type[SeriesDFilter]] = {"NameDFilter": NameDFilter, "ExpressionDFilter": ExpressionDFilter}


def apply_filter_pipe(
    spans: Spans,
    filter_pipe: list[Any] | None,
    *,
    provider: Any = None,
    start_time: Any = None,
    end_time: Any = None,
) -> Spans:
    """Apply qlib's instrument ``filter_pipe`` (filter configs or filter objects) in order."""
    for i, flt in enumerate(filter_pipe or []):
        if isinstance(flt, Mapping):
            kind = flt.get("filter_type")
            if kind not in _FILTERS:
                raise ConfigError(
                    f"filter_pipe[{i}]: filter_type {kind!r} is not supported (use one of {sorted(_FILTERS)})"
                )
            try:
                flt = _FILTERS[kind].from_config(flt)
            except KeyError as e:
                raise ConfigError(f"filter_pipe[{i}]: {kind} config lacks {e}") from None
        elif not isinstance(flt, SeriesDFilter):
            raise ConfigError(f"filter_pipe[{i}]: expected a filter config dict or filter, got {flt!r}")
        spans = flt(spans, start_time, end_time, provider=provider)
    return spans
