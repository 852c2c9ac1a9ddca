"""Tomorrow's target portfolio of an online routine: the configured strategy on the latest signal and the holdings
carried from the previous routine day (qlib 0.9.7 has no next-day order generation: its ``examples/online_srv``
stops at the signals).

:func:`target_portfolio` runs one trading step of the strategy (e.g. ``TopkDropoutStrategy`` with ``topk`` /
``n_drop``) through the backtest package's public objects (:class:`~qlib_prefect.backtest.Exchange`,
:class:`~qlib_prefect.backtest.Position`, the strategy's ``generate_trade_decision``): the step after the signal
date trades on the signal date's scores, as in a backtest. Where we differ from a backtest: tomorrow's prices are
not known tonight, so orders are sized and filled (trade unit, costs, cash limits; suspended stocks do not trade)
at the **signal day's** deal price, which the table reports as ``price``. Holdings are plain JSON
(``{"cash": float, "positions": {code: {"amount": float, "count_day": int}}}``), never a pickle.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError

__all__ = ["PORTFOLIO_COLUMNS", "initial_holdings", "target_portfolio"]

#: the columns of the target table (one row per instrument held now or tomorrow)
PORTFOLIO_COLUMNS = ["instrument", "score", "current_amount", "current_weight", "target_amount", "target_weight",
                     "side", "order_amount", "price"]


def initial_holdings(account: float) -> dict[str, Any]:
    """Holdings before the first routine: all cash."""
    return {"cash": float(account), "positions": {}}


def _strategy(config: dict[str, Any], signal: pd.DataFrame) -> Any:
    from qlib_prefect.backtest import BaseSignalStrategy
    from qlib_prefect.utils import init_instance_by_config

    cfg = copy.deepcopy(config)
    if isinstance(cfg, dict):
        cfg.setdefault("module_path", "qlib.contrib.strategy")
        cfg["kwargs"] = {**(cfg.get("kwargs") or {}), "signal": signal}
    strat = init_instance_by_config(cfg, default_module="qlib_prefect.backtest.strategy")
    if not isinstance(strat, BaseSignalStrategy):
        raise ConfigError(f"online.strategy: expected a signal strategy (e.g. TopkDropoutStrategy), got "
                          f"{type(strat).__name__}")
    return strat


def target_portfolio(signal: pd.Series, signal_date: Any, holdings: dict[str, Any], strategy: dict[str, Any],
                     exchange_kwargs: dict[str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(table, target holdings)`` for the trading day after ``signal_date``.

    ``signal``: scores indexed by instrument (the signal date's cross-section). The table has
    :data:`PORTFOLIO_COLUMNS`; ``side`` is ``BUY`` / ``SELL`` / ``HOLD``; for every row
    ``current_amount + order_amount (BUY) - order_amount (SELL) == target_amount``. Weights are of the total
    account value (cash included) at ``price``.
    """
    from qlib_prefect.backtest import Exchange, OrderDir, Position
    from qlib_prefect.backtest.strategy import StepContext

    day = pd.Timestamp(signal_date)
    tomorrow = day + pd.offsets.BDay(1)
    pred = pd.DataFrame({"score": signal.astype(float).to_numpy()},
                        index=pd.MultiIndex.from_arrays([pd.DatetimeIndex([day] * len(signal)),
                                                         signal.index.astype(str)],
                                                        names=["datetime", "instrument"]))
    held = {str(c): dict(v) for c, v in (holdings.get("positions") or {}).items()}
    ek = {k: v for k, v in (exchange_kwargs or {}).items() if k not in ("start_time", "end_time", "freq")}
    ex = Exchange(start_time=day, end_time=day, **ek)
    ex.load([*pred.index.get_level_values("instrument"), *held])
    row = ex.row_of(day)
    if row < 0:
        raise ConfigError(f"online portfolio: the signal date {day.date()} is not a trading day of the data")
    for code, d in held.items():  # mark to the signal day's close (the last known price when suspended)
        px = ex.close_price(code, row)
        if px is not None and np.isfinite(px):
            d["price"] = float(px)
        elif "price" not in d:
            raise ConfigError(f"online portfolio: held stock {code} has no close on {day.date()} and no last price")
    pos = Position(cash=float(holdings["cash"]), position_dict=held)
    strat = _strategy(strategy, pred)
    cal = pd.DatetimeIndex([day, tomorrow])
    strat.reset(trade_exchange=ex, calendar=cal, extra_codes=list(held))
    end = tomorrow + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    orders = strat.generate_trade_decision(StepContext(1, row, tomorrow, end, pos))
    target = pos.copy()
    dealt: dict[str, tuple[str, float, float]] = {}
    for order in orders:
        _, _, price = ex.deal_order(order, position=target)
        if order.deal_amount > 0:
            side = "BUY" if int(order.direction) == int(OrderDir.BUY) else "SELL"
            dealt[order.stock_id] = (side, float(order.deal_amount), float(price))
    target.add_count_all("day")
    cur_value, tgt_value = pos.calculate_value(), target.calculate_value()
    scores = signal.astype(float)
    scores.index = scores.index.astype(str)
    codes = sorted(set(pos.get_stock_list()) | set(target.get_stock_list()) | set(dealt))
    rows = []
    for c in codes:
        cur = float(pos.position[c]["amount"]) if c in pos.position else 0.0
        tgt = float(target.position[c]["amount"]) if c in target.position else 0.0
        side, amount, price = dealt.get(c, ("HOLD", 0.0, float("nan")))
        if side == "HOLD":
            price = float((pos.position.get(c) or target.position.get(c) or {}).get("price", np.nan))
        rows.append({"instrument": c, "score": float(scores.get(c, np.nan)), "current_amount": cur,
                     "current_weight": cur * price / cur_value if cur else 0.0, "target_amount": tgt,
                     "target_weight": tgt * price / tgt_value if tgt else 0.0, "side": side,
                     "order_amount": amount, "price": price})
    table = pd.DataFrame(rows, columns=PORTFOLIO_COLUMNS)
    table = table.sort_values(["target_amount", "score"], ascending=False, kind="stable").reset_index(drop=True)
    new = {"cash": float(target.position["cash"]), "date": day.date().isoformat(),
           "positions": {c: {"amount": float(target.position[c]["amount"]),
                             "price": float(target.position[c]["price"]),
                             "count_day": int(target.position[c].get("count_day", 1))}
                         for c in target.get_stock_list()}}
    return table, new
