"""Data quality report over (dates x instruments) panels, computed at import and by ``qlib-prefect data check``.

Checks (all vectorised over the panel; only cells inside each instrument's stored span are looked at):

| check | meaning | issue ``field`` |
|---|---|---|
| ``nan`` | a field is NaN on a date that has other data (not a gap) | the NaN field |
| ``gap`` | a calendar date inside the span where every price/volume field is NaN (row missing) | ``""`` |
| ``non_positive`` | open/high/low/close <= 0 | the field |
| ``negative_volume`` | volume < 0 | ``volume`` |
| ``zero_volume`` | volume == 0 | ``volume`` |
| ``bracket`` | low > min(open, close), high < max(open, close) or low > high | ``low`` / ``high`` |
| ``jump`` | abs(close / previous valid close - 1) > ``jump_threshold`` (default 0.5) | ``close`` |
| ``spike`` | one-day reversal: abs(log move) > ``spike_threshold`` (default 0.25) into the day and back out of it,
  net move over the two days < half of that | ``close`` |

The report is informational: it never rejects data (unusable data raises
:class:`~qlib_prefect.errors.DataError` in the importer/reader instead).

Example:
    >>> rep = check_dir("~/.qlib/qlib_data/cn_data", save=False)  # doctest: +SKIP
    >>> rep.counts()["bracket"]  # doctest: +SKIP
    12
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bottleneck as bn
import numpy as np
import pandas as pd

from qlib_prefect.data.storage import atomic_write_text

__all__ = ["CHECKS", "QualityReport", "check_dir", "compute_quality"]

#: check name -> one-line description (summary table order).
CHECKS: dict[str, str] = {
    "nan": "field is NaN on a date that has other data",
    "gap": "calendar date missing inside the instrument's span",
    "non_positive": "price <= 0",
    "negative_volume": "volume < 0",
    "zero_volume": "volume == 0",
    "bracket": "low/high do not bracket open/close",
    "jump": "abs(close change) above the jump threshold",
    "spike": "one-day close spike that reverts the next day",
}
_PRICES = ("open", "high", "low", "close")
_BASE = (*_PRICES, "volume")
_ISSUE_COLS = ["check", "symbol", "date", "field", "value"]


@dataclass
class QualityReport:
    """Summary table (one row per check and field) and per-issue rows (symbol, date, field, value)."""

    summary: pd.DataFrame
    issues: pd.DataFrame
    n_instruments: int
    n_dates: int
    params: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Check -> number of distinct (symbol, date) rows flagged."""
        out = {c: 0 for c in CHECKS}
        if len(self.issues):
            g = self.issues.drop_duplicates(["check", "symbol", "date"]).groupby("check").size()
            out.update({str(k): int(v) for k, v in g.items()})
        return out

    def has(self, check: str, symbol: str, date: str | pd.Timestamp) -> bool:
        """Whether ``check`` flagged ``symbol`` on ``date``."""
        i = self.issues
        return bool(((i["check"] == check) & (i["symbol"] == symbol) & (i["date"] == pd.Timestamp(date))).any())

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_instruments": self.n_instruments,
            "n_dates": self.n_dates,
            "params": self.params,
            "counts": self.counts(),
            "summary": json.loads(self.summary.to_json(orient="records")),
        }

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``report.json``, ``summary.csv`` and ``issues.csv`` into ``directory`` (atomic)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = {"json": d / "report.json", "summary": d / "summary.csv", "issues": d / "issues.csv"}
        atomic_write_text(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        atomic_write_text(paths["summary"], self.summary.to_csv(index=False))
        iss = self.issues.assign(date=self.issues["date"].dt.strftime("%Y-%m-%d"))
        atomic_write_text(paths["issues"], iss.to_csv(index=False))
        return paths

    def render(self, console: Any = None, max_issues: int = 20) -> None:
        """Print the summary (and the first ``max_issues`` issue rows) with rich."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        t = Table(title=f"Data quality: {self.n_instruments} instruments x {self.n_dates} dates")
        for c in ("check", "field", "count", "share", "description"):
            t.add_column(c, justify="right" if c in ("count", "share") else "left")
        for r in self.summary.itertuples(index=False):
            t.add_row(r.check, r.field, f"{r.count:,}", f"{r.share:.4%}", r.description)
        console.print(t)
        if len(self.issues) and max_issues > 0:
            it = Table(title=f"First {min(max_issues, len(self.issues))} of {len(self.issues):,} issue rows")
            for c in _ISSUE_COLS:
                it.add_column(c)
            for r in self.issues.head(max_issues).itertuples(index=False):
                it.add_row(r.check, r.symbol, f"{r.date:%Y-%m-%d}", r.field, f"{r.value:.6g}")
            console.print(it)


def _issue_rows(check: str, mask: np.ndarray, fld: str, vals: np.ndarray | None, cal, codes) -> pd.DataFrame:
    t, j = np.nonzero(mask)
    return pd.DataFrame(
        {
            "check": check,
            "symbol": np.asarray(codes, dtype=object)[j],
            "date": cal[t],
            "field": fld,
            "value": (vals[t, j].astype(np.float64) if vals is not None else np.full(len(t), np.nan)),
        }
    )


def compute_quality(
    panels: Mapping[str, np.ndarray],
    calendar: pd.DatetimeIndex,
    codes: Sequence[str],
    start: np.ndarray,
    end: np.ndarray,
    *,
    jump_threshold: float = 0.5,
    spike_threshold: float = 0.25,
) -> QualityReport:
    """Run every check on ``{field: (len(calendar) x len(codes)) array}`` with per-instrument spans.

    ``start``/``end`` are inclusive calendar positions of each instrument's span (``end < start``: none).
    """
    cal = pd.DatetimeIndex(calendar)
    n, k = len(cal), len(codes)
    rows = np.arange(n)[:, None]
    span = (rows >= np.asarray(start)[None, :]) & (rows <= np.asarray(end)[None, :])
    n_span = int(span.sum())
    # checks run at the stored precision (float32), so an import report equals a later `check` of the files
    p = {f.lower(): np.asarray(v, dtype=np.float32) for f, v in panels.items()}
    base = [f for f in _BASE if f in p]
    gap = span & np.logical_and.reduce([np.isnan(p[f]) for f in base]) if base else np.zeros((n, k), bool)
    has_row = span & ~gap
    parts: list[pd.DataFrame] = []
    summ: list[dict[str, Any]] = []

    def add(check: str, mask: np.ndarray, fld: str, vals: np.ndarray | None, denom: int) -> None:
        cnt = int(mask.sum())
        summ.append({"check": check, "field": fld, "count": cnt, "share": cnt / denom if denom else 0.0,
                     "description": CHECKS[check]})
        if cnt:
            parts.append(_issue_rows(check, mask, fld, vals, cal, codes))

    n_rows = int(has_row.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        for f in sorted(p, key=lambda x: (_BASE.index(x) if x in _BASE else len(_BASE), x)):
            if f == "change":
                continue
            add("nan", has_row & np.isnan(p[f]), f, None, n_rows)
        add("gap", gap, "", None, n_span)
        for f in _PRICES:
            if f in p:
                add("non_positive", has_row & (p[f] <= 0), f, p[f], n_rows)
        if "volume" in p:
            add("negative_volume", has_row & (p["volume"] < 0), "volume", p["volume"], n_rows)
            add("zero_volume", has_row & (p["volume"] == 0), "volume", p["volume"], n_rows)
        if all(f in p for f in _PRICES):
            lo_oc = np.fmin(p["open"], p["close"])
            hi_oc = np.fmax(p["open"], p["close"])
            add("bracket", has_row & ((p["low"] > lo_oc) | (p["low"] > p["high"])), "low", p["low"], n_rows)
            add("bracket", has_row & ((p["high"] < hi_oc) | (p["high"] < p["low"])), "high", p["high"], n_rows)
        if "close" in p:
            c = np.where(span, p["close"], np.nan)
            prev = np.vstack([np.full((1, k), np.nan), bn.push(c, axis=0)[:-1]])
            nxt = bn.push(c[::-1], axis=0)[::-1]
            nxt = np.vstack([nxt[1:], np.full((1, k), np.nan)])
            ret = c / prev - np.float32(1.0)
            add("jump", np.abs(ret) > jump_threshold, "close", p["close"], n_rows)
            r1 = np.log(c / prev)
            r2 = np.log(nxt / c)
            spike = (np.abs(r1) > spike_threshold) & (np.abs(r2) > spike_threshold) & (np.sign(r1) != np.sign(r2))
            spike &= np.abs(r1 + r2) < spike_threshold / 2
            add("spike", spike, "close", p["close"], n_rows)
    issues = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"check": pd.Series(dtype=object), "symbol": pd.Series(dtype=object),
         "date": pd.Series(dtype="datetime64[ns]"), "field": pd.Series(dtype=object),
         "value": pd.Series(dtype=np.float64)}
    )
    if len(issues):
        order = {c: i for i, c in enumerate(CHECKS)}
        issues = (
            issues.assign(_o=issues["check"].map(order))
            .sort_values(["_o", "symbol", "date", "field"], kind="stable")
            .drop(columns="_o")
            .reset_index(drop=True)
        )
    return QualityReport(
        summary=pd.DataFrame(summ, columns=["check", "field", "count", "share", "description"]),
        issues=issues[_ISSUE_COLS],
        n_instruments=k,
        n_dates=n,
        params={"jump_threshold": jump_threshold, "spike_threshold": spike_threshold},
    )


def check_dir(
    path: str | Path,
    *,
    jump_threshold: float = 0.5,
    spike_threshold: float = 0.25,
    save: bool = True,
    out_dir: str | Path | None = None,
) -> QualityReport:
    """Quality report of a qlib data directory (all instruments with a feature directory).

    The span of an instrument is the union of its fields' stored spans. With ``save`` the report goes to
    ``out_dir`` (default ``<path>/quality/``).
    """
    from qlib_prefect.data.provider import LocalProvider

    prov = LocalProvider(path)
    cal = prov.calendar()
    codes = prov.codes()
    fields = sorted(prov.fields())
    panels: dict[str, np.ndarray] = {}
    start = np.full(len(codes), len(cal), dtype=np.int64)
    end = np.full(len(codes), -1, dtype=np.int64)
    for f in fields:
        fd = prov.load_field(f, codes)
        panels[f] = fd.values
        start = np.minimum(start, fd.start)
        end = np.maximum(end, fd.end)
    inst = _display_codes(prov, codes)
    rep = compute_quality(panels, cal, inst, start, end, jump_threshold=jump_threshold,
                          spike_threshold=spike_threshold)
    if save:
        rep.save(Path(out_dir) if out_dir is not None else Path(prov.path) / "quality")
    return rep


def _display_codes(prov: Any, codes: list[str]) -> list[str]:
    """Feature dir names -> codes as spelt in ``instruments/all.txt`` when available."""
    try:
        names = {c.lower(): c for c in prov.instruments("all")}
    except Exception:
        return codes
    return [names.get(c.lower(), c) for c in codes]
