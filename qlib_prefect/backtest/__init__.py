"""Daily portfolio backtest with qlib's numbers: exchange, positions, TopkDropout strategy, executor, analysis.

This layer reads data only through the provider seam and never imports prefect or mlflow.

Example:
    >>> from qlib_prefect.backtest import backtest, risk_analysis  # doctest: +SKIP
    >>> pm, ind = backtest("2017-01-03", "2018-02-06",
    ...                    {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
    ...                     "kwargs": {"signal": pred, "topk": 50, "n_drop": 5}},
    ...                    {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
    ...                     "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
    ...                    benchmark="SPX", account=1e8)  # doctest: +SKIP
"""

from __future__ import annotations

from qlib_prefect.backtest.analysis import indicator_analysis, risk_analysis
from qlib_prefect.backtest.engine import backtest, benchmark_returns, collect_data, format_decisions
from qlib_prefect.backtest.exchange import Exchange, Order, OrderDir
from qlib_prefect.backtest.executor import SimulatorExecutor
from qlib_prefect.backtest.freq import Freq
from qlib_prefect.backtest.position import Account, Indicator, Position
from qlib_prefect.backtest.strategy import BaseSignalStrategy, TopkDropoutStrategy

__all__ = [
    "Account",
    "BaseSignalStrategy",
    "Exchange",
    "Freq",
    "Indicator",
    "Order",
    "OrderDir",
    "Position",
    "SimulatorExecutor",
    "TopkDropoutStrategy",
    "backtest",
    "benchmark_returns",
    "collect_data",
    "format_decisions",
    "indicator_analysis",
    "risk_analysis",
]
