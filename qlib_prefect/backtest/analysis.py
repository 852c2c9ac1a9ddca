"""Portfolio analysis helpers, numerically identical to ``qlib.contrib.evaluate``.

* :func:`risk_analysis` - mean/std/annualized return/information ratio/max drawdown of a return series
  (``N`` = 238 per day, 50 per week, 12 per month, 240*238 per minute, divided by the freq count).
* :func:`indicator_analysis` - weighted averages of the daily trade indicators ``ffr``, ``pa``, ``pos``.

Example:
    >>> import pandas as pd
    >>> r = pd.Series([0.01, -0.02, 0.015])
    >>> round(float(risk_analysis(r).loc["annualized_return", "risk"]), 6)
    0.396667
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd

from qlib_prefect.backtest.freq import Freq
from qlib_prefect.errors import ConfigError

__all__ = ["indicator_analysis", "risk_analysis", "risk_analysis_scaler"]

_SCALER = {Freq.NORM_FREQ_MINUTE: 240 * 238, Freq.NORM_FREQ_DAY: 238, Freq.NORM_FREQ_WEEK: 50, Freq.NORM_FREQ_MONTH: 12}


def risk_analysis_scaler(freq: str) -> float:
    """Periods per year used for annualisation (``"day"`` -> 238.0)."""
    count, base = Freq.parse(freq)
    return _SCALER[base] / count


def risk_analysis(
    r: pd.Series, N: float | None = None, freq: str | None = "day", mode: Literal["sum", "product"] = "sum"
) -> pd.DataFrame:
    """Risk metrics of a return series; DataFrame index ``mean, std, annualized_return, information_ratio,
    max_drawdown`` and column ``risk`` (qlib's exact formulas, including ``std(ddof=1)``)."""
    if N is None and freq is None:
        raise ConfigError("risk_analysis: at least one of `N` and `freq` must be given")
    if N is not None and freq is not None:
        warnings.warn("risk_analysis freq will be ignored", stacklevel=2)
    if N is None:
        N = risk_analysis_scaler(freq)  # type: ignore[arg-type]
    if mode == "sum":
        mean = r.mean()
        std = r.std(ddof=1)
        annualized_return = mean * N
        cs = r.cumsum()
        max_drawdown = (cs - cs.cummax()).min()
    elif mode == "product":
        curve = (1 + r).cumprod()
        mean = curve.iloc[-1] ** (1 / len(r)) - 1
        std = np.log(1 + r).std(ddof=1)
        cumulative_return = curve.iloc[-1] - 1
        annualized_return = (1 + cumulative_return) ** (N / len(r)) - 1
        max_drawdown = (curve / curve.cummax() - 1).min()
    else:
        raise ConfigError(f"risk_analysis: mode {mode!r} is not supported; expected 'sum' or 'product'")
    information_ratio = mean / std * np.sqrt(N)
    data = {"mean": mean, "std": std, "annualized_return": annualized_return,
            "information_ratio": information_ratio, "max_drawdown": max_drawdown}
    return pd.Series(data).to_frame("risk")


def indicator_analysis(df: pd.DataFrame, method: str = "mean") -> pd.DataFrame:
    """Aggregate daily trade indicators; index ``ffr, pa, pos``, column ``value``.

    ``method``: ``mean`` (weights = order count), ``amount_weighted`` (|deal_amount|) or ``value_weighted``
    (|value|); ``pos`` is always count-weighted.
    """
    weights_dict = {
        "mean": df["count"],
        "amount_weighted": df["deal_amount"].abs(),
        "value_weighted": df["value"].abs(),
    }
    if method not in weights_dict:
        raise ConfigError(f"indicator_analysis: method {method!r} is not supported; use one of {list(weights_dict)}")
    weights = weights_dict[method]
    res = df[["ffr", "pa"]].mul(weights, axis=0).sum() / weights.sum()
    w = weights_dict["mean"]
    res.loc["pos"] = df["pos"].mul(w).sum() / w.sum()
    return res.to_frame("value")
