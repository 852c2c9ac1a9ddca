"""qlib's decision / position / report objects and ``collect_data`` against the real qlib 0.9.7
(tests/golden/api/collect_data.*, made by ``tools/make_api_goldens.py --only collect``).

Tolerance: report columns rtol 1e-9 / atol 1e-6 (float64 sums; the same as the SoftTopk backtest goldens);
order amounts, directions, step times and deal amounts exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.backtest import backtest, collect_data, format_decisions
from qlib_prefect.backtest.decision import (
    BaseTradeDecision,
    EmptyTradeDecision,
    IdxTradeRange,
    Order,
    OrderDir,
    OrderHelper,
    TradeDecisionWO,
    TradeRangeByTime,
)
from qlib_prefect.backtest.position import BasePosition, InfPosition, Position
from qlib_prefect.backtest.report import PortfolioMetrics
from qlib_prefect.backtest.utils import TradeCalendarManager
from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.data import registry
from qlib_prefect.data.provider import LocalProvider

GOLD = Path(__file__).resolve().parents[1] / "golden" / "api"
META = json.loads((GOLD / "collect_data.json").read_text())
COLS = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench"]


@pytest.fixture
def api_data() -> Iterator[None]:
    qlib_prefect.init(provider_uri=str(GOLD / "data"), region="us")
    registry.set_provider(LocalProvider(GOLD / "data"))
    yield
    registry.set_provider(None)
    qlib_prefect.init()


def _args(track: bool = True) -> tuple[dict, dict]:
    pred = pd.read_parquet(GOLD / "pred.parquet")["score"]
    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred, "topk": 3, "n_drop": 1}}  # fmt: skip
    executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True,
                           "track_data": track}}  # fmt: skip
    return strategy, executor


def test_collect_data_decisions_and_metrics_equal_qlib(api_data: None) -> None:
    strategy, executor = _args()
    rv: dict = {}
    kw = {"benchmark": "SPX", "account": 1e6, "exchange_kwargs": META["exchange"]}
    decisions = list(collect_data(META["start"], META["end"], strategy, executor, return_value=rv, **kw))
    assert all(isinstance(d, TradeDecisionWO) for d in decisions)
    assert len(decisions) == len(META["steps"])
    for d, want in zip(decisions, META["steps"]):
        assert (str(d.start_time), str(d.end_time), d.empty()) == (want["start"], want["end"], want["empty"])
        got = [[o.stock_id, float(o.amount), int(o.direction), float(o.deal_amount), str(o.start_time),
                str(o.end_time)] for o in d.get_decision()]  # fmt: skip
        assert got == want["orders"], want["start"]
    fmt = format_decisions(decisions)
    assert [fmt[0], len(fmt[1]), all(sub is None for _, sub in fmt[1])] == META["format"]
    assert format_decisions([]) is None
    report = rv["portfolio_dict"]["1day"][0]
    want = pd.read_parquet(GOLD / "collect_data.report.parquet")
    assert report.index.equals(want.index)
    np.testing.assert_allclose(report[COLS].to_numpy(float), want[COLS].to_numpy(float), rtol=1e-9, atol=1e-6)
    assert rv["indicator_dict"]["1day"][0]["count"].tolist() == META["indicator_count"]
    # the same numbers as backtest(), which collect_data runs step by step
    pm, ind = backtest(META["start"], META["end"], strategy, executor, **kw)
    pd.testing.assert_frame_equal(pm["1day"][0], report)
    pd.testing.assert_frame_equal(ind["1day"][0], rv["indicator_dict"]["1day"][0])


def test_collect_data_yields_nothing_without_track_data(api_data: None) -> None:
    """qlib yields decisions only from executors with ``track_data=True``; return_value is filled anyway."""
    strategy, executor = _args(track=False)
    rv: dict = {}
    assert list(collect_data(META["start"], "2016-03-10", strategy, executor, benchmark="SPX", account=1e6,
                             return_value=rv)) == []  # fmt: skip
    assert len(rv["portfolio_dict"]["1day"][0]) == 8


def test_portfolio_metrics_equal_qlib(api_data: None, tmp_path: Path) -> None:
    pm = PortfolioMetrics(freq="day", benchmark_config={"benchmark": "SPX", "start_time": META["start"],
                                                        "end_time": META["end"]})  # fmt: skip
    assert {str(k.date()): v for k, v in pm.bench.items()} == pytest.approx(META["bench"], rel=1e-6, abs=1e-7)
    assert pm._sample_benchmark(pm.bench, "2016-03-07", "2016-03-11 23:59:59") == pytest.approx(
        META["bench_sample_0307_0311"], rel=1e-6)
    report = pd.read_parquet(GOLD / "collect_data.report.parquet")
    for t, r in report.iloc[:3].iterrows():
        pm.update_portfolio_metrics_record(trade_start_time=t, trade_end_time=t + pd.Timedelta(hours=23),
                                           account_value=r["account"], cash=r["cash"], return_rate=r["return"],
                                           total_turnover=r["total_turnover"], turnover_rate=r["turnover"],
                                           total_cost=r["total_cost"], cost_rate=r["cost"], stock_value=r["value"])
    df = pm.generate_portfolio_metrics_dataframe()
    assert list(df.columns) == COLS and df.index.name == "datetime"
    np.testing.assert_allclose(df.to_numpy(float), report.iloc[:3][COLS].to_numpy(float), rtol=1e-6, atol=1e-9)
    assert pm.get_latest_date() == report.index[2] and pm.get_latest_account_value() == report["account"].iloc[2]
    with pytest.raises(ValueError, match="None in"):
        pm.update_portfolio_metrics_record(trade_start_time=report.index[0])
    # save / load round trip and wrapping a backtest() report
    path = tmp_path / "pm.csv"
    PortfolioMetrics.from_report(report).save_portfolio_metrics(path)
    back = PortfolioMetrics(benchmark_config={"benchmark": None})
    back.load_portfolio_metrics(path)
    pd.testing.assert_frame_equal(back.generate_portfolio_metrics_dataframe(), report[COLS], check_freq=False)


def test_decision_objects_follow_qlib() -> None:
    cal = pd.DatetimeIndex(["2016-01-04", "2016-01-05", "2016-01-06", "2016-01-07"])

    class S:
        trade_calendar = TradeCalendarManager("day", "2016-01-05", "2016-01-07", calendar=cal)

    strat = S()
    assert strat.trade_calendar.get_trade_len() == 3 and strat.trade_calendar.get_range_idx(cal[0], cal[3]) == (0, 2)
    strat.trade_calendar.step()
    o = OrderHelper(None).create("AAPL", 10.0, "buy")
    d = TradeDecisionWO([o, Order("MSFT", 0.0, OrderDir.SELL)], strat, trade_range=(0, 5))
    assert (o.start_time, o.end_time) == (cal[2], cal[3] - pd.Timedelta(seconds=1))
    assert o.date == cal[2] and o.key_by_day == ("AAPL", cal[2], OrderDir.BUY) and o.sign == 1
    assert isinstance(d.trade_range, IdxTradeRange) and d.get_range_limit() == (0, 5)
    d.update(strat.trade_calendar)
    assert d.get_range_limit() == (0, 2)  # clipped to total_step, as qlib
    assert not d.empty() and TradeDecisionWO([Order("MSFT", 0.0, 0)], strat).empty()
    assert EmptyTradeDecision(strat).empty() and isinstance(d, BaseTradeDecision)
    assert str(d).startswith("class: TradeDecisionWO; strategy: ") and str(d).endswith("order_list[2]")
    assert TradeDecisionWO([], strat).get_range_limit(default_value=(0, 0)) == (0, 0)
    tr = TradeRangeByTime("9:30", "14:30")
    assert tr.clip_time_range(pd.Timestamp("2016-01-05 09:00"), pd.Timestamp("2016-01-05 10:00")) == (
        pd.Timestamp("2016-01-05 09:30"), pd.Timestamp("2016-01-05 10:00"))
    assert Order.parse_dir(-3) == OrderDir.SELL and list(Order.parse_dir(np.array([2, -1]))) == [1, 0]


def test_inf_position_and_base_position() -> None:
    p = InfPosition()
    assert p.skip_update() and p.check_stock("ANY") and p.get_cash() == np.inf
    assert p.get_stock_amount("ANY") == np.inf and np.isnan(p.get_stock_price("ANY"))
    assert p.calculate_stock_value() == np.inf
    p.update_order(Order("A", 1.0, OrderDir.BUY), 1.0, 0.0, 1.0)
    for name in ("calculate_value", "get_stock_list", "get_stock_amount_dict", "update_weight_all"):
        with pytest.raises(NotImplementedError):
            getattr(p, name)()
    assert isinstance(Position(cash=1.0), BasePosition) and not Position(cash=1.0).skip_update()


@pytest.mark.parametrize(("name", "module"), [
    ("collect_data", "qlib.backtest"), ("format_decisions", "qlib.backtest"),
    ("TradeDecisionWO", "qlib.backtest.decision"), ("InfPosition", "qlib.backtest.position"),
    ("PortfolioMetrics", "qlib.backtest.report"), ("TradeCalendarManager", "qlib.backtest.utils"),
])  # fmt: skip
def test_qlib_paths_resolve(name: str, module: str) -> None:
    assert resolve_class(name, module).__name__ == name


def test_strategy_may_return_a_decision(api_data: None) -> None:
    """A strategy returning a TradeDecisionWO (qlib's contract) is dealt like one returning a list."""
    from qlib_prefect.backtest.strategy import TopkDropoutStrategy

    class DecisionTopk(TopkDropoutStrategy):
        def generate_trade_decision(self, step):  # type: ignore[no-untyped-def]
            return TradeDecisionWO(super().generate_trade_decision(step), self)

    pred = pd.read_parquet(GOLD / "pred.parquet")["score"]
    strategy, executor = _args(track=False)
    kw = {"benchmark": "SPX", "account": 1e6, "exchange_kwargs": META["exchange"]}
    a, _ = backtest(META["start"], "2016-04-29", strategy, executor, **kw)
    b, _ = backtest(META["start"], "2016-04-29", DecisionTopk(signal=pred, topk=3, n_drop=1), executor, **kw)
    pd.testing.assert_frame_equal(a["1day"][0], b["1day"][0])
