"""The numbers behind the report's charts (pure pandas/numpy on a run's artifacts).

Conventions are qlib's (``qlib.contrib.report``): cumulative returns are **sums of daily returns**
(``report_graph``), excess return = strategy return - benchmark return (- cost), drawdown = cumulative excess
return - its running maximum, quantile groups split each day's scores into 5 equally sized groups
(``model_performance_graph``; group 1 = highest scores), long-short = group 1 - group 5.

Deliberate differences from qlib's graphs: rolling means need a full window (qlib's notebooks plot a 20-day IC mean
from the first day, which shows false spikes); IC decay is computed for label horizons 1..20 from the data (qlib
has no such graph).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.analysis import risk_analysis_scaler
from qlib_prefect.model.signal_eval import pearson_by_group, rank_by_group

__all__ = [
    "IC_WINDOW",
    "SHARPE_WINDOW",
    "cumulative_returns",
    "drawdowns",
    "holdings",
    "horizon_label_expression",
    "horizon_labels",
    "ic_decay",
    "monthly_returns",
    "quantile_returns",
    "rolling_ic",
    "rolling_sharpe",
]

logger = logging.getLogger(__name__)

#: window (trading days) of the rolling IC mean; a value needs the full window
IC_WINDOW = 20
#: window (trading days) of the rolling Sharpe ratio; a value needs the full window
SHARPE_WINDOW = 63


def cumulative_returns(report: pd.DataFrame) -> pd.DataFrame:
    """Cumulative (summed) daily returns: strategy with/without cost, benchmark, excess with/without cost."""
    r, b, c = (report[k].astype(float) for k in ("return", "bench", "cost"))
    return pd.DataFrame({
        "strategy_without_cost": r.cumsum(),
        "strategy_with_cost": (r - c).cumsum(),
        "benchmark": b.cumsum(),
        "excess_without_cost": (r - b).cumsum(),
        "excess_with_cost": (r - b - c).cumsum(),
    })


def drawdowns(report: pd.DataFrame) -> pd.DataFrame:
    """Drawdown of the cumulative excess return with/without cost (qlib's ``max_drawdown`` is their minimum)."""
    cum = cumulative_returns(report)[["excess_without_cost", "excess_with_cost"]]
    return cum - cum.cummax()


def monthly_returns(report: pd.DataFrame) -> pd.DataFrame:
    """Monthly excess return with cost (sum of the daily ones), years x months 1..12 (NaN: no trading day)."""
    r = (report["return"] - report["bench"] - report["cost"]).astype(float)
    idx = pd.DatetimeIndex(r.index)
    m = r.groupby([idx.year, idx.month]).sum()
    table = m.unstack(level=1)
    return table.reindex(columns=range(1, 13))


def rolling_sharpe(report: pd.DataFrame, window: int = SHARPE_WINDOW, freq: str = "day") -> pd.Series:
    """Annualised rolling Sharpe ratio of the daily excess return with cost (qlib's ``information_ratio``
    formula on a moving window: mean / std(ddof=1) * sqrt(periods per year))."""
    r = (report["return"] - report["bench"] - report["cost"]).astype(float)
    roll = r.rolling(window, min_periods=window)
    return roll.mean() / roll.std(ddof=1) * np.sqrt(risk_analysis_scaler(freq))


def rolling_ic(ic: pd.Series, window: int = IC_WINDOW) -> pd.Series:
    """Moving mean of a daily IC series over ``window`` days (NaN until the window is full)."""
    return ic.astype(float).rolling(window, min_periods=window).mean()


def quantile_returns(pred: pd.Series, label: pd.Series, n_groups: int = 5) -> pd.DataFrame:
    """Mean label of each day's score quantile group and ``long-short`` (Group1 - Group{n}), qlib's
    ``model_performance_graph`` split: the day's rows sorted by score (highest first, ties in row order), group i =
    rows ``[n // N * i, n // N * (i + 1))`` (the ``n % N`` last rows are in no group); rows without a score or a
    label are left out."""
    df = pd.DataFrame({"pred": pred, "label": label}).dropna()
    codes, dates = pd.factorize(df.index.get_level_values("datetime"), sort=True)
    p = df["pred"].to_numpy(dtype=float)
    lab = df["label"].to_numpy(dtype=float)
    n = len(p)
    order = np.lexsort((np.arange(n), -p, codes))
    sc = codes[order]
    count = np.bincount(codes, minlength=len(dates))
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    pos = np.arange(n) - start[sc]
    size = (count // n_groups)[sc]
    with np.errstate(divide="ignore", invalid="ignore"):
        group = np.where(size > 0, pos // np.maximum(size, 1), n_groups)
    keep = group < n_groups
    flat = sc[keep] * n_groups + group[keep]
    vals = lab[order][keep]
    sums = np.bincount(flat, vals, minlength=len(dates) * n_groups).reshape(len(dates), n_groups)
    cnt = np.bincount(flat, minlength=len(dates) * n_groups).reshape(len(dates), n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / cnt
    out = pd.DataFrame(means, index=pd.DatetimeIndex(dates, name="datetime"),
                       columns=[f"Group{i + 1}" for i in range(n_groups)])
    out["long-short"] = out["Group1"] - out[f"Group{n_groups}"]
    return out


def horizon_label_expression(h: int) -> str:
    """The return over ``h`` days after the next day (Alpha158's label for ``h=1``)."""
    return f"Ref($close, -{h + 1})/Ref($close, -1) - 1"


def horizon_labels(index: pd.MultiIndex, horizons: Sequence[int]) -> pd.DataFrame:
    """Labels at each horizon for the ``(datetime, instrument)`` rows of ``index``, through the expression
    engine of the initialised data provider; columns are the horizons."""
    from qlib_prefect.data.api import D

    dates = index.get_level_values("datetime")
    codes = sorted(set(index.get_level_values("instrument")))
    fields = [horizon_label_expression(h) for h in horizons]
    df = D.features(codes, fields, start_time=dates.min(), end_time=dates.max())
    df.columns = list(horizons)
    df = df.swaplevel(0, 1)
    df.index = df.index.set_names(["datetime", "instrument"])
    return df.reindex(index)


def _panel(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[rows, cols] = values
    return out


def _row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of two NaN-aligned panels (pairwise-complete; < 2 pairs -> NaN)."""
    n = np.sum(~np.isnan(a), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = a - (np.nansum(a, axis=1) / n)[:, None]
        db = b - (np.nansum(b, axis=1) / n)[:, None]
        r = np.nansum(da * db, axis=1) / np.sqrt(np.nansum(da * da, axis=1) * np.nansum(db * db, axis=1))
    r[n < 2] = np.nan
    return np.clip(r, -1.0, 1.0)


def ic_decay(pred: pd.Series, labels: pd.DataFrame) -> pd.DataFrame:
    """Mean daily IC and Rank IC of ``pred`` against each label column (the label horizons), on (dates x
    instruments) panels: each date's pairwise-complete rows, average ranks for ties (``calc_ic``'s definition)."""
    import bottleneck as bn

    labels = labels.reindex(pred.index)
    d_codes, dates = pd.factorize(pred.index.get_level_values("datetime"), sort=True)
    i_codes, insts = pd.factorize(pred.index.get_level_values("instrument"))
    shape = (len(dates), len(insts))
    p = _panel(pred.to_numpy(dtype=float), d_codes, i_codes, shape)
    rows = {}
    for h in labels.columns:
        lab = _panel(labels[h].to_numpy(dtype=float), d_codes, i_codes, shape)
        both = ~np.isnan(p) & ~np.isnan(lab)
        a, b = np.where(both, p, np.nan), np.where(both, lab, np.nan)
        ic = _row_pearson(a, b)
        ric = _row_pearson(bn.nanrankdata(a, axis=1), bn.nanrankdata(b, axis=1))
        rows[h] = {"IC": float(np.nanmean(ic)), "Rank IC": float(np.nanmean(ric))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "horizon"
    return out


def factor_ic(features: pd.DataFrame, label: pd.Series) -> pd.DataFrame:
    """Mean daily IC, ICIR, Rank IC and Rank ICIR of every feature column against ``label`` (one pass per column,
    vectorised over dates)."""
    codes, dates = pd.factorize(features.index.get_level_values("datetime"), sort=True)
    lab = label.reindex(features.index).to_numpy(dtype=float)
    out = {}
    for col in features.columns:
        x = features[col].to_numpy(dtype=float)
        ok = ~np.isnan(x) & ~np.isnan(lab)
        c = codes[ok]
        ic = pearson_by_group(x[ok], lab[ok], c, len(dates))
        ric = pearson_by_group(rank_by_group(x[ok], c), rank_by_group(lab[ok], c), c, len(dates))
        out[col] = _ic_stats(ic, ric)
    return pd.DataFrame.from_dict(out, orient="index")


def _ic_stats(ic: np.ndarray, ric: np.ndarray) -> dict[str, float]:
    ic_s, ric_s = pd.Series(ic), pd.Series(ric)
    return {"IC": ic_s.mean(), "ICIR": ic_s.mean() / ic_s.std(), "Rank IC": ric_s.mean(),
            "Rank ICIR": ric_s.mean() / ric_s.std()}


def holdings(positions: dict[Any, Any]) -> pd.DataFrame:
    """Long frame of the daily holdings: ``datetime, instrument, amount, price, value, weight, count_day``."""
    dates, codes, amount, price, weight, count = [], [], [], [], [], []
    for date, pos in positions.items():
        p = getattr(pos, "position", pos)
        for c, d in p.items():
            if isinstance(d, dict):
                dates.append(date)
                codes.append(c)
                amount.append(d["amount"])
                price.append(d.get("price", np.nan))
                weight.append(d.get("weight", np.nan))
                count.append(d.get("count_day", 0))
    amount_a = np.asarray(amount, dtype=float)
    price_a = np.asarray(price, dtype=float)
    return pd.DataFrame({
        "datetime": pd.DatetimeIndex(dates), "instrument": pd.Series(codes, dtype=object), "amount": amount_a,
        "price": price_a, "value": amount_a * price_a, "weight": np.asarray(weight, dtype=float),
        "count_day": np.asarray(count, dtype=np.int64),
    })
