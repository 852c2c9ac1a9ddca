"""``SimulatorExecutor``: deals a step's orders against the live account (qlib's
``qlib.backtest.executor.SimulatorExecutor``; daily, atomic). ``NestedExecutor``: qlib's nested executor limited
to a weekly outer step over a daily inner ``SimulatorExecutor`` (the loop is :func:`qlib_prefect.backtest.backtest`'s).

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

__all__ = ["BaseExecutor", "NestedExecutor", "SimulatorExecutor"]


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


class NestedExecutor(BaseExecutor):
    """qlib's ``NestedExecutor`` at the daily level: each outer step (a week of qlib's resampled week calendar)
    resets ``inner_strategy`` with the outer decision (``reset(outer_trade_decision=...)``) and runs
    ``inner_executor`` (a daily :class:`SimulatorExecutor`) over the trading days of the week, as qlib:

    * a week whose decision is empty is skipped (``skip_empty_decision=True``: no inner days, no day rows);
    * inner steps outside the decision's range are stepped over (``align_range_limit=True``);
    * the inner days of the last week may pass ``end_time`` (qlib runs the week's whole range; no quotes there);
    * both levels report (``"1week"``, ``"1day"``) over one shared position and the shared turnover/cost; at the
      week's end held stocks are re-priced at the week's last close (unless suspended all week) and get
      ``count_week + 1``.

    Deliberate differences: only ``time_per_step="week"`` over a daily ``SimulatorExecutor``; the outer
    strategy must not read daily quotes or signals (e.g. ``FileOrderStrategy``; signal strategies such as
    ``TopkDropoutStrategy`` raise: qlib prices their weekly orders over the week's range); the ``"1week"`` trade
    indicators (qlib's aggregation of the inner order indicators) are not computed, only ``"1day"``.
    """

    def __init__(self, *, time_per_step: str = "week", inner_executor: Any, inner_strategy: Any,
                 start_time: Any = None, end_time: Any = None, indicator_config: dict | None = None,
                 generate_portfolio_metrics: bool = False, verbose: bool = False, track_data: bool = False,
                 skip_empty_decision: bool = True, align_range_limit: bool = True, common_infra: Any = None,
                 **kwargs: Any) -> None:
        if kwargs:
            raise BacktestError(f"NestedExecutor: unknown executor kwargs {sorted(kwargs)}")
        from qlib_prefect.utils import init_instance_by_config

        count, base = Freq.parse(time_per_step)
        if (count, base) != (1, "week"):
            raise ConfigError(f"NestedExecutor.time_per_step: only 'week' (over a daily inner executor) is "
                              f"supported, got {time_per_step!r}")
        super().__init__(time_per_step="day", start_time=start_time, end_time=end_time,
                         indicator_config=indicator_config, generate_portfolio_metrics=generate_portfolio_metrics,
                         verbose=verbose, track_data=track_data)  # fmt: skip
        self.time_per_step = time_per_step
        self.freq_key = "1week"
        self.inner_executor = init_instance_by_config(inner_executor, accept_types=BaseExecutor,
                                                      _where="executor.inner_executor")  # fmt: skip
        if not isinstance(self.inner_executor, SimulatorExecutor):
            raise ConfigError("NestedExecutor.inner_executor: only a daily SimulatorExecutor is supported, got "
                              f"{type(self.inner_executor).__name__}")
        self.inner_strategy = init_instance_by_config(inner_strategy, _where="executor.inner_strategy")
        self.skip_empty_decision = bool(skip_empty_decision)
        self.align_range_limit = bool(align_range_limit)
