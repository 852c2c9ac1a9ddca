"""qlib's backtest entry points around :func:`qlib_prefect.backtest.backtest`: ``backtest_daily`` and
``long_short_backtest`` (``qlib.contrib.evaluate``), ``get_exchange`` and ``create_account_instance``
(``qlib.backtest``).

``long_short_backtest`` is qlib 0.9.7's function with its bugs fixed (0.9.7's own cannot run; see its docstring),
vectorised over a (dates x instruments) panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.engine import backtest
from qlib_prefect.backtest.exchange import Exchange
from qlib_prefect.backtest.executor import SimulatorExecutor
from qlib_prefect.backtest.position import Account, Position
from qlib_prefect.errors import BacktestError

__all__ = ["backtest_daily", "create_account_instance", "get_exchange", "long_short_backtest"]


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


def long_short_backtest(
    pred: pd.DataFrame | pd.Series,
    topk: int = 50,
    deal_price: str | None = None,
    shift: int = 1,
    open_cost: float = 0,
    close_cost: float = 0,
    trade_unit: int | None = None,
    limit_threshold: Any = None,
    min_cost: float = 5,
    subscribe_fields: Sequence[str] = [],  # qlib's default; never mutated
    extract_codes: bool = False,
) -> dict[str, pd.Series]:
    """qlib's long-short backtest of a signal ``pred`` (``score`` column, or a Series) made on day ``T``.

    For each calendar day ``T`` from the first to the last prediction date, the trade day is ``T + shift``
    trading days (past the calendar's end qlib's ``get_date_range(T_last, 1, shift)`` clips to the last day, and
    a trade day reached twice keeps the later prediction day's values, as qlib's dict). Long = the ``topk``
    highest scores, short = the ``topk`` lowest (NaN scores sort last, ties keep the instrument order); the
    profit of a stock is ``Ref(deal_price, -1) / deal_price - 1`` on the trade day (NaN -> 0). Long/short
    stocks not tradable on the trade day (suspended or at a limit in either direction: qlib asks
    ``is_stock_tradable`` without a direction) are skipped; "all" is every instrument predicted on ``T`` that
    is not suspended on the trade day. Returns ``{"long": mean(long) - mean(all), "short": mean(-short) +
    mean(all), "long_short": mean(-short) + mean(long)}``, Series indexed by trade date (NaN where a set is
    empty, as ``np.mean([])``). Defaults ``None`` -> ``C.trade_unit`` / ``C.limit_threshold`` / ``C.deal_price``.

    Deviations from qlib 0.9.7, whose function cannot run (each is a bug fixed to its evident intent; the golden
    runs qlib's own code with exactly these fixes, ``tools/make_api_goldens.py``):

    * ``get_exchange(pred=..., shift=..., extract_codes=...)`` raises ``ValueError: Get Unexpected arguments``:
      the exchange gets ``codes=`` the predicted instruments when ``extract_codes`` else ``"all"``;
    * ``is_stock_tradable(stock_id, trade_date=)`` / ``check_stock_suspended(stock_id, trade_date=)`` are not
      0.9.7's signatures: called with ``start_time = end_time =`` the trade day;
    * the "all" average iterated ``get_level_values(level=0)`` of the (datetime, instrument) index, i.e. dates
      (every one "suspended": mean of nothing, NaN): it iterates the instruments.

    Also: a calendar day inside the prediction range without predictions gives NaN (qlib: ``KeyError``);
    ``shift < 0`` raises.
    """
    from qlib_prefect.config.runtime import C
    from qlib_prefect.data.expression import Evaluator

    if shift < 0:
        raise BacktestError(f"long_short_backtest: shift must be >= 0, got {shift}")
    if isinstance(pred, pd.Series):
        pred = pred.to_frame("score")
    if list(pred.index.names).index("datetime") == 1:
        pred = pred.swaplevel().sort_index()
    if trade_unit is None:
        trade_unit = C.get("trade_unit")
    if limit_threshold is None:
        limit_threshold = C.get("limit_threshold")
    if deal_price is None:
        deal_price = C.get("deal_price", "close")
    if deal_price[0] != "$":
        deal_price = "$" + deal_price
    profit_str = f"Ref({deal_price}, -1)/{deal_price} - 1"
    p_dates = pd.DatetimeIndex(pred.index.get_level_values("datetime"))
    p_inst = pred.index.get_level_values("instrument").astype(str)
    codes = sorted(set(p_inst))
    ex = get_exchange(codes=codes if extract_codes else "all", deal_price=deal_price,
                      subscribe_fields=[*subscribe_fields, profit_str], limit_threshold=limit_threshold,
                      open_cost=open_cost, close_cost=close_cost, min_cost=min_cost,
                      trade_unit=trade_unit).load(only_codes=codes)  # fmt: skip
    empty = {k: pd.Series(dtype="float64", index=pd.DatetimeIndex([])) for k in ("long", "short", "long_short")}
    if len(pred) == 0:
        return empty
    cal = pd.DatetimeIndex(ex.provider.calendar())
    i0 = int(cal.searchsorted(p_dates.min(), "left"))
    i1 = int(cal.searchsorted(p_dates.max(), "right")) - 1
    n = i1 - i0 + 1
    if n <= 0:
        return empty
    last = len(cal) - 1
    tail = np.arange(min(i1 + 1, last), min(i1 + shift, last) + 1)  # get_date_range(T_last, 1, shift), clipped
    trade_pos = np.concatenate([np.arange(i0 + shift, i1 + 1), tail])[:n]
    m = len(trade_pos)

    # the score panel (prediction days x predicted instruments) and which cells were predicted
    rows = cal.get_indexer(p_dates) - i0
    ok = (rows >= 0) & (rows < n)
    cols = pd.Index(codes).get_indexer(p_inst)
    score = np.full((n, len(codes)), np.nan)
    have = np.zeros((n, len(codes)), dtype=bool)
    score[rows[ok], cols[ok]] = pred["score"].to_numpy(np.float64)[ok]
    have[rows[ok], cols[ok]] = True
    score, have = score[:m], have[:m]
    # qlib's sort_values("score", ascending=False) per day: valid scores descending, then NaN scores
    group = np.where(have, np.where(np.isnan(score), 1, 0), 2)
    order = np.lexsort((np.where(group == 0, -score, 0.0), group), axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(len(codes)), order.shape), axis=1)
    count = have.sum(axis=1, keepdims=True)
    long = have & (rank < topk)
    short = have & (rank >= count - topk)

    # the trade day's quote cells of those instruments (an instrument the exchange lacks: suspended)
    xr = ex.dates.get_indexer(cal[trade_pos])
    xc = np.array([ex.col.get(c, -1) for c in codes], dtype=np.int64)
    known = xc >= 0
    suspended = np.ones((m, len(codes)), dtype=bool)
    tradable = np.zeros((m, len(codes)), dtype=bool)
    profit = np.zeros((m, len(codes)))
    kc = xc[known]
    suspended[:, known] = ex.suspended[xr][:, kc]
    tradable[:, known] = ex.tradable_any[xr][:, kc]
    panel = Evaluator(ex.provider, ex.code_list).evaluate(profit_str)[ex.row0:ex.row0 + len(ex.dates)]
    profit[:, known] = np.nan_to_num(panel[xr][:, kc].astype(np.float64), nan=0.0)

    def mean(mask: np.ndarray, sign: float = 1.0) -> np.ndarray:
        k = mask.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(k > 0, sign * (profit * mask).sum(axis=1) / k, np.nan)

    m_long, m_short, m_all = mean(long & tradable), mean(short & tradable, -1.0), mean(have & ~suspended)
    dates = cal[trade_pos]

    def series(vals: np.ndarray) -> pd.Series:
        d = dict(zip(dates, vals.tolist()))  # a trade day reached twice keeps the later values (qlib's dict)
        return pd.Series(list(d.values()), index=pd.DatetimeIndex(list(d)), dtype="float64")

    return {"long": series(m_long - m_all), "short": series(m_short + m_all), "long_short": series(m_short + m_long)}
