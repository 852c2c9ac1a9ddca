"""``backtest()``: the daily loop behind PortAnaRecord (qlib's ``qlib.backtest.backtest``).

Per trading day ``T = cal[t]`` (``t`` from the first day >= ``start_time`` to the last day <= ``end_time``):
strategy decision from the score of ``cal[t-1]`` -> executor deals the orders against the live account ->
bar end (held, non-suspended stocks re-priced at ``$close``; holding counts + 1; report row; position snapshot;
trade indicators).

Returns qlib's shapes: ``({"1day": (report_df, positions)}, {"1day": (indicators_df, indicator)})``.
With a :class:`~qlib_prefect.backtest.executor.NestedExecutor` (weekly outer steps over daily inner ones, see
its docstring) the loop is :func:`_nested_steps` and the portfolio dict also has ``"1week"``.
The loop is one generator (``_steps``): :func:`backtest` drains it; :func:`collect_data` (qlib's) yields each
step's :class:`~qlib_prefect.backtest.decision.TradeDecisionWO` from it. The strategy's ``trade_calendar`` is a
daily :class:`~qlib_prefect.backtest.utils.TradeCalendarManager` at the current step.

Deliberate differences from qlib 0.9.7 (docs/backtest.md): ``end_time`` may be the last calendar day (qlib
raises IndexError, issue #2278); a duplicated prediction index, an unknown benchmark code or an empty date range
raise :class:`~qlib_prefect.errors.BacktestError`; ``benchmark=None`` means "no benchmark" (bench = 0) instead of
qlib's silent fallback to SH000300; initial positions without a price are priced from the last close of the 30
days before ``start_time`` (qlib 0.9.7 raises KeyError there under pandas 3).

Example:
    >>> pm, ind = backtest("2017-01-03", "2018-02-06", strategy, executor, benchmark="SPX",
    ...                    account=1e8)  # doctest: +SKIP
    >>> report, positions = pm["1day"]  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.decision import BaseTradeDecision, TradeDecisionWO
from qlib_prefect.backtest.exchange import Exchange
from qlib_prefect.backtest.executor import BaseExecutor, NestedExecutor, SimulatorExecutor
from qlib_prefect.backtest.position import Account, Indicator, Position
from qlib_prefect.backtest.rule_strategy import TWAPStrategy
from qlib_prefect.backtest.strategy import BaseSignalStrategy, BaseStrategy, StepContext
from qlib_prefect.backtest.utils import TradeCalendarManager, get_start_end_idx, week_calendar
from qlib_prefect.errors import BacktestError

if TYPE_CHECKING:
    from qlib_prefect.data.base import Provider

__all__ = ["backtest", "benchmark_returns", "collect_data", "format_decisions", "get_strategy_executor"]

PORT_METRIC = dict[str, tuple[pd.DataFrame, dict[pd.Timestamp, Position]]]
INDICATOR_METRIC = dict[str, tuple[pd.DataFrame, Indicator]]


def _calendar(provider: Provider) -> pd.DatetimeIndex:
    try:
        cal = provider.calendar(future=True)
    except TypeError:
        cal = provider.calendar()
    return pd.DatetimeIndex(cal)


def _ts(x: Any, name: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(x)
    except (TypeError, ValueError) as e:
        raise BacktestError(f"backtest: {name}={x!r} is not a date") from e
    if ts is pd.NaT:
        raise BacktestError(f"backtest: {name} is missing")
    return ts


def benchmark_returns(benchmark: Any, start_time: Any, end_time: Any, provider: Provider) -> pd.Series | None:
    """Daily benchmark return series like qlib's ``PortfolioMetrics._cal_benchmark``.

    A code or list of codes -> ``$close/Ref($close,1)-1`` in float32, averaged over the codes per date
    (NaN -> 0); a Series is returned as is; ``None`` -> ``None``.
    """
    if benchmark is None:
        return None
    if isinstance(benchmark, pd.Series):
        if not isinstance(benchmark.index, pd.DatetimeIndex):
            try:
                benchmark = benchmark.set_axis(pd.DatetimeIndex(benchmark.index))
            except (TypeError, ValueError) as e:
                raise BacktestError("benchmark: a Series benchmark needs a datetime index") from e
        return benchmark
    codes = [benchmark] if isinstance(benchmark, str) else [str(c) for c in benchmark]
    if not codes:
        raise BacktestError("benchmark: empty list of benchmark codes")
    fd = provider.load_field("close", codes)
    cal = pd.DatetimeIndex(provider.calendar())
    i0 = 0 if start_time is None else bisect.bisect_left(cal, pd.Timestamp(start_time))
    i1 = len(cal) - 1 if end_time is None else bisect.bisect_right(cal, pd.Timestamp(end_time)) - 1
    close = np.asarray(fd.values, dtype=np.float32)
    prev = np.full_like(close, np.nan)
    prev[1:] = close[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = close / prev - np.float32(1)
    rows = np.arange(len(cal))[:, None]
    present = (rows >= np.maximum(fd.start, i0)[None, :]) & (rows <= np.minimum(fd.end, i1)[None, :])
    if not present.any():
        missing = [c for c, s, e in zip(codes, fd.start, fd.end) if e < s]
        raise BacktestError(
            f"benchmark {codes if len(codes) > 1 else codes[0]!r} has no data between {start_time} and {end_time}"
            + (f" (unknown code(s): {missing})" if missing else "")
        )
    t_idx, j_idx = np.nonzero(present)
    if len(codes) == 1:
        s = pd.Series(r[t_idx, j_idx], index=cal[t_idx])
    else:
        long = pd.Series(r[t_idx, j_idx], index=pd.Index(cal[t_idx], name="datetime"))
        s = long.groupby(level="datetime").mean()
    return s.fillna(0)


def _step_bench(bench: pd.Series | None, cal: pd.DatetimeIndex, s: int, e: int) -> list[float]:
    """Benchmark return of each step ``cal[t]`` (t in [s, e]): prod(1 + r) - 1 over dates in the step's interval."""
    n = e - s + 1
    if bench is None or len(bench) == 0:
        return [0.0] * n
    bench = bench.sort_index() if not bench.index.is_monotonic_increasing else bench
    vals = bench.to_numpy()
    b = np.searchsorted(cal.values, bench.index.values, side="right") - 1
    out = [0.0] * n
    lo = np.searchsorted(b, np.arange(s, e + 1), side="left")
    hi = np.searchsorted(b, np.arange(s, e + 1), side="right")
    one = vals.dtype.type(1) if vals.dtype.kind == "f" else 1
    for k in range(n):
        if hi[k] > lo[k]:
            x = vals[lo[k]:hi[k]]
            out[k] = float((x + one).prod() - one)
    return out


def _account(account: Any) -> tuple[float, dict[str, Any]]:
    if isinstance(account, (int, float, np.number)) and not isinstance(account, bool):
        return float(account), {}
    if isinstance(account, dict):
        acc = copy.deepcopy(account)
        if "cash" not in acc:
            raise BacktestError("backtest: account dict needs a 'cash' key")
        return float(acc.pop("cash")), acc
    raise BacktestError(f"backtest: account must be a number or a dict with 'cash', got {type(account).__name__}")


def _fill_prices(position: Position, start: pd.Timestamp, provider: Provider, last_days: int = 30) -> None:
    todo = [c for c in position.get_stock_list() if position.position[c].get("price") is None]
    if not todo:
        return
    cal = pd.DatetimeIndex(provider.calendar())
    i1 = bisect.bisect_right(cal, start) - 1
    i0 = bisect.bisect_left(cal, start - pd.Timedelta(days=last_days))
    fd = provider.load_field("close", todo)
    lack = []
    for j, c in enumerate(todo):
        col = fd.values[max(i0, 0):i1 + 1, j] if i1 >= 0 else np.zeros(0)
        ok = np.flatnonzero(~np.isnan(col))
        if len(ok) == 0:
            lack.append(c)
        else:
            position.position[c]["price"] = float(col[ok[-1]])
    if lack:
        raise BacktestError(f"account: {lack} have no close price in the {last_days} days before {start.date()}")
    position.position["now_account_value"] = position.calculate_value()


def get_strategy_executor(strategy: Any, executor: Any) -> tuple[BaseStrategy, BaseExecutor]:
    """Build strategy and executor from instances or qlib-style configs."""
    from qlib_prefect.utils import init_instance_by_config

    try:
        strat = init_instance_by_config(strategy, accept_types=BaseStrategy)
        ex = init_instance_by_config(executor, accept_types=BaseExecutor)
    except TypeError as e:
        raise BacktestError(f"backtest: cannot build strategy/executor: {e}") from e
    if not isinstance(strat, BaseStrategy):
        raise BacktestError(f"backtest: strategy must be a qlib_prefect strategy, got {type(strat).__name__}")
    if isinstance(ex, NestedExecutor):
        if isinstance(strat, BaseSignalStrategy):
            raise BacktestError(f"backtest: {type(strat).__name__} cannot be the outer strategy of a NestedExecutor "
                                "(it reads daily quotes and signals; qlib prices its weekly orders over the week)")
        if not isinstance(ex.inner_strategy, TWAPStrategy):
            raise BacktestError("backtest: the NestedExecutor's inner_strategy must be a TWAPStrategy, got "
                                f"{type(ex.inner_strategy).__name__}")
    elif not isinstance(ex, SimulatorExecutor):
        raise BacktestError(f"backtest: executor must be a SimulatorExecutor, got {type(ex).__name__}")
    return strat, ex


def backtest(
    start_time: Any,
    end_time: Any,
    strategy: Any,
    executor: Any,
    benchmark: Any = "SH000300",
    account: float | dict = 1e9,
    exchange_kwargs: dict | None = None,
    pos_type: str = "Position",
    *,
    provider: Provider | None = None,
) -> tuple[PORT_METRIC, INDICATOR_METRIC]:
    """Run a daily backtest; see the module docstring. ``provider`` defaults to ``get_provider()``."""
    steps = _steps(start_time, end_time, strategy, executor, benchmark, account, exchange_kwargs, pos_type,
                   provider, track=False)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def collect_data(
    start_time: Any,
    end_time: Any,
    strategy: Any,
    executor: Any,
    benchmark: Any = "SH000300",
    account: float | dict = 1e9,
    exchange_kwargs: dict | None = None,
    pos_type: str = "Position",
    return_value: dict | None = None,
    *,
    provider: Provider | None = None,
) -> Generator[BaseTradeDecision, Any, None]:
    """qlib's ``collect_data``: run :func:`backtest` step by step, yielding each step's trade decision
    (a :class:`~qlib_prefect.backtest.decision.TradeDecisionWO`, before it is dealt) when the executor has
    ``track_data=True`` (as qlib: nothing is yielded otherwise); at the end ``return_value`` (if given) gets
    ``{"portfolio_dict": ..., "indicator_dict": ...}``, the two dicts :func:`backtest` returns."""
    steps = _steps(start_time, end_time, strategy, executor, benchmark, account, exchange_kwargs, pos_type,
                   provider, track=True)
    while True:
        try:
            decision = next(steps)
        except StopIteration as stop:
            portfolio, indicators = stop.value
            break
        yield decision
    if return_value is not None:
        return_value.update({"portfolio_dict": portfolio, "indicator_dict": indicators})


def format_decisions(decisions: list[BaseTradeDecision]) -> tuple[str, list[tuple[BaseTradeDecision, Any]]] | None:
    """qlib's ``format_decisions``: ``(freq, [(decision, sub-decisions or None), ...])`` grouped by the
    strategies' calendar frequency (daily only here, so every sub-decision entry is None)."""
    if len(decisions) == 0:
        return None
    cur_freq = decisions[0].strategy.trade_calendar.get_freq()
    res: tuple[str, list] = (cur_freq, [])
    last = 0
    for i, dec in enumerate(decisions[1:], 1):
        if dec.strategy.trade_calendar.get_freq() == cur_freq:
            res[1].append((decisions[last], format_decisions(decisions[last + 1:i])))
            last = i
    res[1].append((decisions[last], format_decisions(decisions[last + 1:])))
    return res


def _steps(
    start_time: Any, end_time: Any, strategy: Any, executor: Any, benchmark: Any, account: float | dict,
    exchange_kwargs: dict | None, pos_type: str, provider: Provider | None, *, track: bool,
) -> Generator[BaseTradeDecision, Any, tuple[PORT_METRIC, INDICATOR_METRIC]]:
    """The daily loop; yields each step's decision when ``track`` and the executor's ``track_data`` are set."""
    if pos_type != "Position":
        raise BacktestError(f"backtest: pos_type {pos_type!r} is not supported (only 'Position')")
    if provider is None:
        from qlib_prefect.data.registry import get_provider

        provider = get_provider()
    start, end = _ts(start_time, "start_time"), _ts(end_time, "end_time")
    cal = _calendar(provider)
    s = bisect.bisect_left(cal, start)
    e = bisect.bisect_right(cal, end) - 1
    if e < s:
        raise BacktestError(f"backtest: no trading day between start_time={start.date()} and end_time={end.date()}")
    init_cash, pos_dict = _account(account)

    ek = dict(exchange_kwargs or {})
    ek.setdefault("start_time", start_time)
    ek.setdefault("end_time", end_time)
    given = ek.pop("exchange", None)
    if isinstance(given, Exchange):
        exchange = given
    else:
        try:
            exchange = Exchange(**ek, provider=provider)
        except TypeError as e:
            raise BacktestError(f"backtest: bad exchange_kwargs: {e}") from e
    strat, ex = get_strategy_executor(strategy, executor)
    nested = isinstance(ex, NestedExecutor)
    day_ex = ex.inner_executor if nested else ex
    acc = Account(init_cash=init_cash, position_dict=pos_dict, freq="day",
                  port_metr_enabled=day_ex.generate_portfolio_metrics)
    needed = strat.needed_codes(cal)
    exchange.load(None if needed is None else [*needed, *acc.current_position.get_stock_list()])
    _fill_prices(acc.current_position, start, provider)
    metrics_any = ex.generate_portfolio_metrics or day_ex.generate_portfolio_metrics
    bench_series = benchmark_returns(benchmark, start_time, end_time, provider) if metrics_any else None
    strat.reset(trade_exchange=exchange, calendar=cal, extra_codes=acc.current_position.get_stock_list())
    if nested:
        return (yield from _nested_steps(strat, ex, acc, exchange, cal, start, end, bench_series, track))
    benches = _step_bench(bench_series, cal, s, e)
    trade_calendar = TradeCalendarManager("day", cal[s], cal[e], calendar=cal)
    strat.trade_calendar = trade_calendar
    track = track and ex.track_data

    ex_close, ex_susp, ex_col = exchange.close, exchange.suspended, exchange.col
    date_row = exchange._date_row
    ncal = len(cal)
    metrics = acc.is_port_metr_enabled()
    one_sec = pd.Timedelta(seconds=1)
    days = list(cal[s:min(e + 2, ncal)])
    for t in range(s, e + 1):
        day = days[t - s]
        end_t = days[t - s + 1] - one_sec if t + 1 < ncal else day + pd.Timedelta(days=1) - one_sec
        row = date_row.get(day, -1)
        pos = acc.current_position
        trade_calendar.trade_step = t - s
        orders = strat.generate_trade_decision(StepContext(t, row, day, end_t, pos))
        if isinstance(orders, BaseTradeDecision):
            decision, orders = orders, orders.get_decision()
        elif track:
            decision = TradeDecisionWO(orders, strat)
        if track:
            yield decision
        info = ex.execute(orders, acc, exchange)
        # bar end: re-price held stocks that are not suspended, count the bar
        p = acc.current_position.position
        if row >= 0:
            susp_row, close_row = ex_susp[row].tolist(), ex_close[row].tolist()
        for code in acc.current_position.get_stock_list():
            d = p[code]
            if row >= 0:
                j = ex_col.get(code, -1)
                if j >= 0 and not susp_row[j]:
                    d["price"] = close_row[j]
            d["count_day"] = d["count_day"] + 1 if "count_day" in d else 1
        if metrics:
            acc.close_bar(day, benches[t - s])
        acc.indicator.record_step(day, info, ex.ffr_method, ex.pa_method)

    key = ex.freq_key
    portfolio: PORT_METRIC = {}
    if acc.is_port_metr_enabled():
        portfolio[key] = acc.get_portfolio_metrics()
    indicators: INDICATOR_METRIC = {key: (acc.indicator.generate_trade_indicators_dataframe(), acc.indicator)}
    trade_calendar.trade_step = trade_calendar.trade_len
    return portfolio, indicators


def _nested_steps(
    strat: BaseStrategy, ex: NestedExecutor, acc: Account, exchange: Exchange, cal: pd.DatetimeIndex,
    start: pd.Timestamp, end: pd.Timestamp, bench_series: pd.Series | None, track: bool,
) -> Generator[BaseTradeDecision, Any, tuple[PORT_METRIC, INDICATOR_METRIC]]:
    """qlib's ``NestedExecutor`` loop, weekly over daily (see its docstring): per week of the resampled week
    calendar from the first week start >= ``start`` to the last <= ``end``, the outer decision, then (unless
    empty) the inner TWAP steps over the week's trading days, each dealt and closed as a day bar; then the week
    bar (re-price at the week's last close, ``count_week``, the ``"1week"`` report row)."""
    inner_ex, inner = ex.inner_executor, ex.inner_strategy
    wcal = week_calendar(cal)
    ws = bisect.bisect_left(wcal, start)
    we = bisect.bisect_right(wcal, end) - 1
    if we < ws:
        raise BacktestError(f"backtest: no week starts between start_time={start.date()} and end_time={end.date()}")
    one_sec, one_day = pd.Timedelta(seconds=1), pd.Timedelta(days=1)
    ncal = len(cal)
    outer_acc = Account(init_cash=acc.init_cash, freq="week", port_metr_enabled=ex.generate_portfolio_metrics)
    outer_acc.current_position = acc.current_position  # one position for both levels (qlib's shallow copy)
    week_bench = _step_bench(bench_series, wcal, ws, we)
    d_first = bisect.bisect_left(cal, wcal[ws])
    d_last = ncal - 1 if we + 1 >= len(wcal) else bisect.bisect_left(cal, wcal[we + 1]) - 1
    day_bench = _step_bench(bench_series, cal, d_first, d_last)
    outer_tc = TradeCalendarManager("week", wcal[ws], wcal[we], calendar=cal)
    strat.trade_calendar = outer_tc
    inner.reset(trade_exchange=exchange, calendar=cal, extra_codes=[])
    date_row, col = exchange._date_row, exchange.col
    track = track and ex.track_data

    def reprice(rows: list[int]) -> None:
        """qlib's ``update_current_position`` over ``rows``: held stocks not suspended all along get the last close."""
        p = acc.current_position.position
        for code in acc.current_position.get_stock_list():
            j = col.get(code, -1)
            if j < 0 or not rows:
                continue
            ok = [r for r in rows if not exchange.suspended[r, j]]
            if ok:
                p[code]["price"] = float(exchange.close[ok[-1], j])

    def count(bar: str) -> None:
        p = acc.current_position.position
        for code in acc.current_position.get_stock_list():
            p[code][bar] = p[code].get(bar, 0) + 1

    for k in range(ws, we + 1):
        w0 = wcal[k]
        w_end = wcal[k + 1] - one_sec if k + 1 < len(wcal) else cal[-1] + one_day - one_sec
        d0, d1 = bisect.bisect_left(cal, w0), bisect.bisect_right(cal, w_end) - 1
        outer_tc.trade_step = k - ws
        res = strat.generate_trade_decision(StepContext(d0, date_row.get(w0, -1), w0, w_end, acc.current_position,
                                                        freq="week"))  # fmt: skip
        decision = res if isinstance(res, BaseTradeDecision) else TradeDecisionWO(res, strat)
        if track:
            yield decision
        if not (decision.empty() and ex.skip_empty_decision):
            inner_tc = TradeCalendarManager("day", w0, w_end, calendar=cal)
            inner.trade_calendar = inner_tc
            inner.reset(outer_trade_decision=decision)
            prev: list | None = None
            while not inner_tc.finished():
                decision.update(inner_tc)
                lo, hi = get_start_end_idx(inner_tc, decision)
                if ex.align_range_limit and not lo <= inner_tc.trade_step <= hi:
                    inner_tc.step()
                    continue
                t = d0 + inner_tc.trade_step
                day = cal[t]
                day_end = cal[t + 1] - one_sec if t + 1 < ncal else day + one_day - one_sec
                row = date_row.get(day, -1)
                res = inner.generate_trade_decision(StepContext(t, row, day, day_end, acc.current_position),
                                                    execute_result=prev)  # fmt: skip
                orders = res.get_decision() if isinstance(res, BaseTradeDecision) else res
                if track:
                    yield res if isinstance(res, BaseTradeDecision) else TradeDecisionWO(orders, inner)
                prev = inner_ex.execute(orders, acc, exchange)
                reprice([row] if row >= 0 else [])
                count("count_day")
                if acc.is_port_metr_enabled():
                    acc.close_bar(day, day_bench[t - d_first])
                acc.indicator.record_step(day, prev, inner_ex.ffr_method, inner_ex.pa_method)
                inner_tc.step()
        reprice([r for r in (date_row.get(d, -1) for d in cal[d0:d1 + 1]) if r >= 0])
        count("count_week")
        if outer_acc.is_port_metr_enabled():
            outer_acc.total_turnover, outer_acc.total_cost = acc.total_turnover, acc.total_cost
            outer_acc.close_bar(w0, week_bench[k - ws])
    outer_tc.trade_step = outer_tc.trade_len
    portfolio: PORT_METRIC = {}
    if outer_acc.is_port_metr_enabled():
        portfolio[ex.freq_key] = outer_acc.get_portfolio_metrics()
    if acc.is_port_metr_enabled():
        portfolio[inner_ex.freq_key] = acc.get_portfolio_metrics()
    indicators: INDICATOR_METRIC = {inner_ex.freq_key: (acc.indicator.generate_trade_indicators_dataframe(),
                                                        acc.indicator)}  # fmt: skip
    return portfolio, indicators
