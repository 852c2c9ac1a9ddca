"""``SimulatorExecutor``: deals a step's orders against the live account (qlib's
``qlib.backtest.executor.SimulatorExecutor``; daily, atomic, no nested executors).

``trade_type="serial"`` deals orders in decision order (TopkDropout puts sells first, so sale proceeds fund
the buys); ``"parallel"`` deals buys first (cash conflicts then show up as in qlib).

Example:
    >>> SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True).freq_key
    '1day'
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qlib_prefect.backtest.exchange import Exchange, Order
from qlib_prefect.backtest.freq import Freq
from qlib_prefect.backtest.position import Account
from qlib_prefect.errors import BacktestError, ConfigError

__all__ = ["BaseExecutor", "SimulatorExecutor"]


class BaseExecutor:
    """Common executor settings."""

    def __init__(self, *, time_per_step: str = "day", start_time: Any = None, end_time: Any = None,
                 indicator_config: dict | None = None, generate_portfolio_metrics: bool = False,
                 verbose: bool = False, track_data: bool = False, trade_exchange: Exchange | None = None,
                 common_infra: Any = None, settle_type: str = "None", **kwargs: Any) -> None:
        if kwargs:
            raise BacktestError(f"{type(self).__name__}: unknown executor kwargs {sorted(kwargs)}")
        count, base = Freq.parse(time_per_step)
        if (count, base) != (1, "day"):
            raise ConfigError(f"executor.time_per_step: only daily execution is supported, got {time_per_step!r}")
        self.time_per_step = time_per_step
        self.freq_key = f"{count}{base}"
        self.start_time = start_time
        self.end_time = end_time
        self.indicator_config = dict(indicator_config or {})
        self.generate_portfolio_metrics = bool(generate_portfolio_metrics)
        self.verbose = bool(verbose)
        self.track_data = bool(track_data)
        self.trade_exchange = trade_exchange
        ffr = self.indicator_config.get("ffr_config", {}).get("weight_method", "mean")
        pa = self.indicator_config.get("pa_config", {}).get("weight_method", "mean")
        for name, m in (("ffr_config", ffr), ("pa_config", pa)):
            if m not in ("mean", "amount_weighted", "value_weighted"):
                raise ConfigError(f"executor.indicator_config.{name}.weight_method: unsupported {m!r}")
        self.ffr_method, self.pa_method = ffr, pa


class SimulatorExecutor(BaseExecutor):
    """Deal orders one by one against the account, then close the bar (prices, counts, report, indicators)."""

    TT_SERIAL = "serial"
    TT_PARAL = "parallel"

    def __init__(self, *, time_per_step: str = "day", trade_type: str = TT_SERIAL, **kwargs: Any) -> None:
        super().__init__(time_per_step=time_per_step, **kwargs)
        if trade_type not in (self.TT_SERIAL, self.TT_PARAL):
            raise ConfigError(f"executor.trade_type: expected 'serial' or 'parallel', got {trade_type!r}")
        self.trade_type = trade_type

    def execute(self, orders: list[Order], account: Account, exchange: Exchange) -> list[tuple[Order, float, float,
                                                                                               float]]:
        """Deal ``orders`` in order; returns ``[(order, trade_val, trade_cost, trade_price), ...]``."""
        if self.trade_type == self.TT_PARAL:
            orders = sorted(orders, key=lambda o: -int(o.direction))
        out = []
        for order in orders:
            tv, tc, tp = exchange.deal_order(order, trade_account=account)
            out.append((order, tv, tc, tp))
            if self.verbose:
                print(
                    f"[I {pd.Timestamp(order.start_time):%Y-%m-%d %H:%M:%S}]: "
                    f"{'sell' if int(order.direction) == 0 else 'buy'} {order.stock_id}, price {tp:.2f}, "
                    f"amount {order.amount}, deal_amount {order.deal_amount}, factor {order.factor}, "
                    f"value {tv:.2f}, cash {account.get_cash():.2f}."
                )
        return out
