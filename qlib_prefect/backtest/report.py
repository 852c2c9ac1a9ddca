"""``qlib.backtest.report``: :class:`PortfolioMetrics` (qlib's per-step report record) and ``Indicator``.

Our engine's :class:`~qlib_prefect.backtest.position.Account` writes the report frame directly (vectorised);
:class:`PortfolioMetrics` is qlib's record-by-record class for user code: ``update_portfolio_metrics_record``,
``generate_portfolio_metrics_dataframe`` (the same columns and index name as ``backtest()``'s report),
``save_portfolio_metrics`` / ``load_portfolio_metrics`` (CSV), the benchmark from ``benchmark_config`` (a code, a
list of codes or a Series; computed by :func:`~qlib_prefect.backtest.engine.benchmark_returns`, qlib's
``$close/Ref($close,1)-1`` averaged per date) and ``_sample_benchmark`` (``prod(1 + r) - 1`` over a step).
:meth:`PortfolioMetrics.from_report` wraps a report frame of ``backtest()``.

Deliberate difference: the default benchmark is qlib's ``SH000300`` as well, but an unknown code raises
:class:`~qlib_prefect.errors.BacktestError` (qlib: ``ValueError``).

Example:
    >>> pm = PortfolioMetrics(freq="day", benchmark_config={"benchmark": None})
    >>> pm.is_empty()
    True
"""

from __future__ import annotations

import pathlib
from collections import OrderedDict
from typing import Any

import pandas as pd

from qlib_prefect.backtest.position import Indicator

__all__ = ["Indicator", "PortfolioMetrics"]

_COLS = ("account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench")


class PortfolioMetrics:
    """Per-step portfolio metrics: account, return, total_turnover, turnover, total_cost, cost, value, cash, bench."""

    def __init__(self, freq: str = "day", benchmark_config: dict | None = None) -> None:
        self.init_vars()
        self.init_bench(freq=freq, benchmark_config={} if benchmark_config is None else benchmark_config)

    def init_vars(self) -> None:
        self.accounts: dict = OrderedDict()
        self.returns: dict = OrderedDict()
        self.total_turnovers: dict = OrderedDict()
        self.turnovers: dict = OrderedDict()
        self.total_costs: dict = OrderedDict()
        self.costs: dict = OrderedDict()
        self.values: dict = OrderedDict()
        self.cashes: dict = OrderedDict()
        self.benches: dict = OrderedDict()
        self.latest_pm_time: pd.Timestamp | None = None

    def init_bench(self, freq: str | None = None, benchmark_config: dict | None = None) -> None:
        if freq is not None:
            self.freq = freq
        self.benchmark_config = benchmark_config
        self.bench = self._cal_benchmark(self.benchmark_config, self.freq)

    @staticmethod
    def _cal_benchmark(benchmark_config: dict | None, freq: str) -> pd.Series | None:
        if benchmark_config is None:
            return None
        benchmark = benchmark_config.get("benchmark", "SH000300")
        if benchmark is None:
            return None
        if isinstance(benchmark, pd.Series):
            return benchmark
        if freq is None:
            raise ValueError("benchmark freq can't be None!")
        from qlib_prefect.backtest.engine import benchmark_returns
        from qlib_prefect.data.registry import get_provider

        codes = list(benchmark) if isinstance(benchmark, (list, dict)) else [benchmark]
        s = benchmark_returns(codes if len(codes) > 1 else codes[0], benchmark_config.get("start_time"),
                              benchmark_config.get("end_time"), get_provider())
        s.index.name = "datetime"
        return s.rename(None)

    def _sample_benchmark(self, bench: pd.Series | None, trade_start_time: Any, trade_end_time: Any) -> float | None:
        if self.bench is None or bench is None:
            return None
        x = bench.loc[pd.Timestamp(trade_start_time):pd.Timestamp(trade_end_time)]
        return 0.0 if len(x) == 0 else float((x.astype("float64") + 1).prod() - 1)  # qlib: a float64 product

    def is_empty(self) -> bool:
        return len(self.accounts) == 0

    def get_latest_date(self) -> pd.Timestamp | None:
        return self.latest_pm_time

    def get_latest_account_value(self) -> float:
        return self.accounts[self.latest_pm_time]

    def get_latest_total_cost(self) -> Any:
        return self.total_costs[self.latest_pm_time]

    def get_latest_total_turnover(self) -> Any:
        return self.total_turnovers[self.latest_pm_time]

    def update_portfolio_metrics_record(
        self, trade_start_time: Any = None, trade_end_time: Any = None, account_value: float | None = None,
        cash: float | None = None, return_rate: float | None = None, total_turnover: float | None = None,
        turnover_rate: float | None = None, total_cost: float | None = None, cost_rate: float | None = None,
        stock_value: float | None = None, bench_value: float | None = None,
    ) -> None:
        """Record one step (qlib's argument checks and messages)."""
        if any(v is None for v in (trade_start_time, account_value, cash, return_rate, total_turnover,
                                   turnover_rate, total_cost, cost_rate, stock_value)):
            raise ValueError(
                "None in [trade_start_time, account_value, cash, return_rate, total_turnover, turnover_rate, "
                "total_cost, cost_rate, stock_value]")
        if trade_end_time is None and bench_value is None:
            raise ValueError("Both trade_end_time and bench_value is None, benchmark is not usable.")
        if bench_value is None:
            bench_value = self._sample_benchmark(self.bench, trade_start_time, trade_end_time)
        self.accounts[trade_start_time] = account_value
        self.returns[trade_start_time] = return_rate
        self.total_turnovers[trade_start_time] = total_turnover
        self.turnovers[trade_start_time] = turnover_rate
        self.total_costs[trade_start_time] = total_cost
        self.costs[trade_start_time] = cost_rate
        self.values[trade_start_time] = stock_value
        self.cashes[trade_start_time] = cash
        self.benches[trade_start_time] = bench_value
        self.latest_pm_time = trade_start_time

    def generate_portfolio_metrics_dataframe(self) -> pd.DataFrame:
        pm = pd.DataFrame()
        pm["account"] = pd.Series(self.accounts)
        pm["return"] = pd.Series(self.returns)
        pm["total_turnover"] = pd.Series(self.total_turnovers)
        pm["turnover"] = pd.Series(self.turnovers)
        pm["total_cost"] = pd.Series(self.total_costs)
        pm["cost"] = pd.Series(self.costs)
        pm["value"] = pd.Series(self.values)
        pm["cash"] = pd.Series(self.cashes)
        pm["bench"] = pd.Series(self.benches)
        pm.index.name = "datetime"
        return pm

    def save_portfolio_metrics(self, path: str | pathlib.Path) -> None:
        self.generate_portfolio_metrics_dataframe().to_csv(path)

    def load_portfolio_metrics(self, path: str | pathlib.Path) -> None:
        """Load a CSV written by :meth:`save_portfolio_metrics` (replaces the records)."""
        with pathlib.Path(path).open("rb") as f:
            r = pd.read_csv(f, index_col=0)
        r.index = pd.DatetimeIndex(r.index)
        self._load_frame(r)

    def _load_frame(self, r: pd.DataFrame) -> None:
        missing = [c for c in _COLS if c not in r.columns]
        if missing:
            raise ValueError(f"portfolio metrics: missing columns {missing}")
        self.init_vars()
        for t, row in zip(r.index, r[list(_COLS)].itertuples(index=False, name=None)):
            acc, ret, tto, to, tc, c, v, cash, b = (float(x) for x in row)
            self.update_portfolio_metrics_record(trade_start_time=t, account_value=acc, cash=cash, return_rate=ret,
                                                 total_turnover=tto, turnover_rate=to, total_cost=tc, cost_rate=c,
                                                 stock_value=v, bench_value=b)

    @classmethod
    def from_report(cls, report: pd.DataFrame, *, freq: str = "day") -> PortfolioMetrics:
        """Wrap a ``backtest()`` report frame (``portfolio_metrics["1day"][0]``); its bench column is kept."""
        pm = cls(freq=freq, benchmark_config={"benchmark": None})
        pm._load_frame(report)
        return pm
