"""qlib's backtest entry points around :func:`qlib_prefect.backtest.backtest`: ``backtest_daily``
(``qlib.contrib.evaluate``), ``get_exchange`` and ``create_account_instance`` (``qlib.backtest``).

qlib 0.9.7's ``long_short_backtest`` is not provided: it cannot run in 0.9.7 (it passes ``pred=`` to
``get_exchange``, which raises ``ValueError: Get Unexpected arguments``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qlib_prefect.backtest.engine import backtest
from qlib_prefect.backtest.exchange import Exchange
from qlib_prefect.backtest.executor import SimulatorExecutor
from qlib_prefect.backtest.position import Account, Position
from qlib_prefect.errors import BacktestError

__all__ = ["backtest_daily", "create_account_instance", "get_exchange"]


def backtest_daily(
    start_time: Any,
    end_time: Any,
    strategy: Any,
    executor: Any = None,
    account: float | dict = 1e8,
    benchmark: str | None = "SH000300",
    exchange_kwargs: dict | None = None,
    pos_type: str = "Position",
) -> tuple[pd.DataFrame, dict[pd.Timestamp, Position]]:
    """A daily backtest with qlib's defaults (a ``SimulatorExecutor`` with portfolio metrics; exchange
    ``limit_threshold=None, deal_price=None (C.deal_price), open_cost=0.0005, close_cost=0.0015, min_cost=5``
    updated by ``exchange_kwargs``); returns ``(report_normal, positions_normal)``."""
    if executor is None:
        executor = SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True)
    ek: dict[str, Any] = {"freq": "day", "limit_threshold": None, "deal_price": None, "open_cost": 0.0005,
                          "close_cost": 0.0015, "min_cost": 5}  # fmt: skip
    ek.update(exchange_kwargs or {})
    pm, _ = backtest(start_time, end_time, strategy, executor, benchmark=benchmark, account=account,
                     exchange_kwargs=ek, pos_type=pos_type)  # fmt: skip
    report, positions = pm["1day"]
    return report, positions


def get_exchange(
    exchange: Any = None,
    freq: str = "day",
    start_time: Any = None,
    end_time: Any = None,
    codes: list | str = "all",
    subscribe_fields: list | None = None,
    open_cost: float = 0.0015,
    close_cost: float = 0.0025,
    min_cost: float = 5.0,
    limit_threshold: Any = None,
    deal_price: Any = None,
    **kwargs: Any,
) -> Exchange:
    """qlib's ``get_exchange``: a new :class:`Exchange` (``limit_threshold`` None -> ``C.limit_threshold``), or
    ``exchange`` itself / built from its config."""
    if exchange is not None:
        from qlib_prefect.utils import init_instance_by_config

        return init_instance_by_config(exchange, accept_types=Exchange, _where="exchange")
    if limit_threshold is None:
        from qlib_prefect.config.runtime import C

        limit_threshold = C.get("limit_threshold")
    return Exchange(
        freq=freq, start_time=start_time, end_time=end_time, codes=codes, deal_price=deal_price,
        subscribe_fields=list(subscribe_fields or []), limit_threshold=limit_threshold, open_cost=open_cost,
        close_cost=close_cost, min_cost=min_cost, **kwargs,
    )  # fmt: skip


def create_account_instance(
    start_time: Any, end_time: Any, benchmark: str | None, account: float | dict, pos_type: str = "Position"
) -> Account:
    """An :class:`Account` from ``account`` (cash, or ``{"cash": ..., code: amount | {...}}``). The benchmark is
    the backtest's business here (``backtest(benchmark=...)``), so ``benchmark``/times are accepted for qlib's
    signature only."""
    if pos_type != "Position":
        raise BacktestError(f"create_account_instance: pos_type {pos_type!r} is not supported (only 'Position')")
    if isinstance(account, bool) or not isinstance(account, (int, float, dict)):
        raise BacktestError("account must be in (int, float, dict)")
    if isinstance(account, dict):
        account = dict(account)
        return Account(init_cash=account.pop("cash"), position_dict=account)
    return Account(init_cash=account, position_dict={})
