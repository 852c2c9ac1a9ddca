"""Behaviour of the backtest engine beyond the goldens: deliberate fixes, bad input, randomness, objects."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.backtest import Exchange, Freq, Position, backtest, indicator_analysis, risk_analysis
from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.errors import BacktestError, ConfigError

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "backtest"
EXECUTOR = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
CN = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}


def strategy(pred, **kw):
    return {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
            "kwargs": {"signal": pred, "topk": 10, "n_drop": 3, **kw}}


def tiny_provider(n_days: int = 6, codes=("A", "B", "C", "D")) -> MemoryProvider:
    cal = pd.bdate_range("2021-01-04", periods=n_days)
    const = {c: np.full(n_days, 10.0 + k) for k, c in enumerate(codes)}
    close = pd.DataFrame(const, index=cal)
    close["IDX"] = 100.0 * (1.01 ** np.arange(n_days))
    frames = {"close": close, "change": close * 0.0, "factor": close * 0.0 + 1.0, "volume": close * 0.0 + 1e6}
    return MemoryProvider(frames)


def tiny_pred(rows: dict[int, dict[str, float]], cal: pd.DatetimeIndex) -> pd.DataFrame:
    recs = [(cal[t], c, v) for t, d in rows.items() for c, v in d.items()]
    df = pd.DataFrame(recs, columns=["datetime", "instrument", "score"])
    return df.set_index(["datetime", "instrument"]).sort_index()


def test_end_time_on_last_calendar_day_works(golden_provider, golden_pred, golden_configs, region):
    """qlib raises IndexError (issue #2278); we run the last day too, identical to the golden before it."""
    c = golden_configs["cn_default"]
    region("cn")
    last = golden_provider.calendar()[-1]
    pm, ind = backtest(c["start_time"], str(last.date()), strategy(golden_pred, **c["strategy"]), EXECUTOR,
                       benchmark="BENCH", account=c["account"], exchange_kwargs=CN, provider=golden_provider)
    report = pm["1day"][0]
    gold = pd.read_parquet(GOLDEN / "report.parquet").query("config == 'cn_default'")
    assert report.index[-1] == last
    assert len(report) == len(gold) + 1
    np.testing.assert_allclose(report["account"].to_numpy()[:-1], gold["account"].to_numpy(), rtol=1e-9)
    assert report["bench"].iloc[-1] != 0.0 and np.isfinite(report["account"].iloc[-1])
    assert len(ind["1day"][0]) == len(report)


def test_nan_score_held_stock_is_sold_first(region):
    region("us")
    prov = tiny_provider()
    cal = prov.calendar()
    pred = tiny_pred({0: {"A": 3, "B": 2, "C": 1, "D": 0}, 1: {"A": np.nan, "B": 2, "C": 1, "D": 0},
                      2: {"A": np.nan, "B": 2, "C": 1, "D": 0}}, cal)
    pm, _ = backtest(cal[1], cal[3], strategy(pred, topk=2, n_drop=1), EXECUTOR, benchmark="IDX", account=1e5,
                     exchange_kwargs={"min_cost": 0}, provider=prov)
    pos = pm["1day"][1]
    assert sorted(pos[cal[1]].get_stock_list()) == ["A", "B"]
    assert sorted(pos[cal[2]].get_stock_list()) == ["B", "C"]  # A (NaN score) ranked last and sold
    assert sorted(pos[cal[3]].get_stock_list()) == ["B", "C"]  # D ranks below both: nothing replaced


def test_first_day_without_signal_does_not_trade(region):
    region("us")
    prov = tiny_provider()
    cal = prov.calendar()
    pred = tiny_pred({t: {"A": 3, "B": 2, "C": 1, "D": 0} for t in range(6)}, cal)
    pm, ind = backtest(cal[0], cal[2], strategy(pred, topk=2, n_drop=1), EXECUTOR, benchmark="IDX", account=1e5,
                       provider=prov)
    report = pm["1day"][0]
    assert report["turnover"].iloc[0] == 0.0 and report["turnover"].iloc[1] > 0.5
    assert ind["1day"][0]["count"].tolist()[0] == 0


def test_duplicated_pred_index_is_rejected(golden_provider, golden_pred, region):
    region("cn")
    bad = pd.concat([golden_pred, golden_pred.iloc[[5]]])
    with pytest.raises(BacktestError, match="duplicated prediction index"):
        backtest("2020-01-07", "2020-02-07", strategy(bad), EXECUTOR, benchmark="BENCH", account=1e6,
                 provider=golden_provider)


@pytest.mark.parametrize("pred", [pd.DataFrame({"score": []}), pd.Series([1.0], index=pd.Index(["x"]))])
def test_malformed_pred_is_rejected(pred, golden_provider, region):
    region("cn")
    with pytest.raises(BacktestError, match="signal"):
        backtest("2020-01-07", "2020-02-07", strategy(pred), EXECUTOR, benchmark="BENCH", account=1e6,
                 provider=golden_provider)


def test_unknown_benchmark_code_names_it(golden_provider, golden_pred, region):
    region("cn")
    with pytest.raises(BacktestError, match="NOPE"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="NOPE", account=1e6,
                 provider=golden_provider)


def test_empty_date_range(golden_provider, golden_pred, region):
    region("cn")
    with pytest.raises(BacktestError, match="no trading day"):
        backtest("2020-02-08", "2020-02-09", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                 provider=golden_provider)  # a weekend
    with pytest.raises(BacktestError, match="no trading day"):
        backtest("2020-03-01", "2020-02-01", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                 provider=golden_provider)


def test_unknown_kwargs_are_rejected(golden_provider, golden_pred, region):
    region("cn")
    with pytest.raises(BacktestError, match="topK"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred, topK=5), EXECUTOR, benchmark="BENCH",
                 provider=golden_provider)
    bad_ex = {**EXECUTOR, "kwargs": {**EXECUTOR["kwargs"], "time_per_stp": "day"}}
    with pytest.raises(BacktestError, match="time_per_stp"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred), bad_ex, benchmark="BENCH",
                 provider=golden_provider)
    with pytest.raises(BacktestError, match="open_cst"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                 exchange_kwargs={"open_cst": 0.1}, provider=golden_provider)
    with pytest.raises(BacktestError, match="method_sell"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred, method_sell="worst"), EXECUTOR,
                 benchmark="BENCH", provider=golden_provider)
    with pytest.raises(ConfigError, match="min_cost"):
        backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                 exchange_kwargs={"min_cost": -1}, provider=golden_provider)


def test_random_methods_are_seeded(golden_provider, golden_pred, region):
    region("cn")

    def run(seed):
        s = strategy(golden_pred, method_sell="random", method_buy="random", seed=seed)
        pm, _ = backtest("2020-01-07", "2020-03-31", s, EXECUTOR, benchmark="BENCH", account=1e6,
                         exchange_kwargs=CN, provider=golden_provider)
        return pm["1day"][0]

    a, b, c = run(1), run(1), run(2)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["account"], c["account"])
    assert (a["turnover"].iloc[1:] > 0).any()


def test_list_and_series_benchmarks(golden_provider, golden_pred, region):
    region("cn")
    pm, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark=["BENCH", "BENCH2"],
                     account=1e6, exchange_kwargs=CN, provider=golden_provider)
    single, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                         account=1e6, exchange_kwargs=CN, provider=golden_provider)
    b2 = pm["1day"][0]["bench"]
    assert not np.allclose(b2, single["1day"][0]["bench"])
    series = single["1day"][0]["bench"] * 2
    pm3, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark=series,
                      account=1e6, exchange_kwargs=CN, provider=golden_provider)
    np.testing.assert_allclose(pm3["1day"][0]["bench"], series)
    pm4, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark=None,
                      account=1e6, exchange_kwargs=CN, provider=golden_provider)
    assert (pm4["1day"][0]["bench"] == 0).all()


def test_without_portfolio_metrics(golden_provider, golden_pred, region):
    region("cn")
    ex = {**EXECUTOR, "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": False}}
    pm, ind = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), ex, benchmark="BENCH",
                       provider=golden_provider)
    assert pm == {} and len(ind["1day"][0]) > 0


def test_initial_position_without_price_is_filled(golden_provider, golden_pred, region):
    region("cn")
    pm, _ = backtest("2020-01-07", "2020-01-10", strategy(golden_pred, topk=3, n_drop=1), EXECUTOR,
                     benchmark="BENCH", account={"cash": 1e5, "S001": 1000}, exchange_kwargs=CN,
                     provider=golden_provider)
    first = pm["1day"][1][pd.Timestamp("2020-01-07")]
    assert "S001" in first.get_stock_list()  # count 0 < hold_thresh 1: not sellable on day 1
    close = golden_provider.load_field("close", ["S001"]).values[:, 0]
    assert first.position["S001"]["price"] == pytest.approx(float(close[3]))


def test_positions_are_qlib_like_and_pickleable(golden_provider, golden_pred, region):
    region("cn")
    pm, ind = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                       account=1e6, exchange_kwargs=CN, provider=golden_provider)
    report, positions = pm["1day"]
    d, p = list(positions.items())[-1]
    assert isinstance(p, Position)
    assert set(p.position) >= {"cash", "now_account_value"}
    s = p.get_stock_list()[0]
    assert set(p.position[s]) >= {"amount", "price", "weight", "count_day"}
    assert p.position["now_account_value"] == pytest.approx(report.loc[d, "account"], rel=1e-12)
    assert sum(p.get_stock_weight_dict().values()) == pytest.approx(report.loc[d, "value"] / report.loc[d, "account"])
    back = pickle.loads(pickle.dumps((positions, ind["1day"][1])))
    assert back[0][d].position == p.position
    orders = back[1].order_indicator_his
    assert set(orders[d].columns) >= {"amount", "deal_amount", "trade_price", "trade_value", "ffr"}


def test_exchange_rounding_and_limits(golden_provider, region):
    region("cn")
    ex = Exchange(start_time="2020-01-02", end_time="2020-06-30", provider=golden_provider).load()
    assert ex.round_amount_by_trade_unit(199.99999, 1.0) == 200.0  # the +0.1 guard
    assert ex.round_amount_by_trade_unit(299.0, 1.0) == 200.0
    assert ex.round_amount_by_trade_unit(1000.0, 0.37) == pytest.approx(300 / 0.37)
    # $change exactly at the float32 threshold 0.095 is a limit (float32 comparison, like qlib under NumPy 2)
    cal = golden_provider.calendar()
    assert not ex.is_stock_tradable("S003", cal[12], direction=1)
    assert ex.is_stock_tradable("S003", cal[12], direction=0)
    assert not ex.is_stock_tradable("S007", cal[15], direction=0)
    assert not ex.is_stock_tradable("NOT_A_CODE", cal[15])
    assert not ex.is_stock_tradable("S036", cal[81])  # left the universe on day 80
    region("us")
    us = Exchange(start_time="2020-01-02", end_time="2020-06-30", provider=golden_provider).load()
    assert us.trade_unit == 1 and us.limit_threshold is None and us.is_stock_tradable("S003", cal[12])


def test_risk_and_indicator_analysis_options():
    r = pd.Series([0.01, -0.02, 0.015, 0.003])
    day = risk_analysis(r)["risk"]
    assert day["annualized_return"] == pytest.approx(r.mean() * 238)
    assert day["max_drawdown"] == pytest.approx(-0.02)
    week = risk_analysis(r, freq="week")["risk"]
    assert week["annualized_return"] == pytest.approx(r.mean() * 50)
    assert risk_analysis(r, freq="2day")["risk"]["annualized_return"] == pytest.approx(r.mean() * 119)
    with pytest.warns(UserWarning):
        n = risk_analysis(r, N=252)["risk"]
    assert n["annualized_return"] == pytest.approx(r.mean() * 252)
    prod = risk_analysis(r, mode="product")["risk"]
    assert prod["annualized_return"] == pytest.approx(np.prod(1 + r) ** (238 / 4) - 1)
    with pytest.raises(ConfigError):
        risk_analysis(r, mode="geometric")
    df = pd.DataFrame({"ffr": [1.0, 0.5], "pa": [0.0, 0.0], "pos": [0.0, 0.0], "deal_amount": [100.0, 300.0],
                       "value": [1.0, 3.0], "count": [1, 3]})
    assert indicator_analysis(df)["value"]["ffr"] == pytest.approx((1 + 1.5) / 4)
    assert indicator_analysis(df, "amount_weighted")["value"]["ffr"] == pytest.approx((100 + 150) / 400)
    with pytest.raises(ConfigError):
        indicator_analysis(df, "median")


def test_freq_parsing():
    assert Freq.parse("day") == (1, "day") and Freq.key("d") == "1day" and Freq.key("5min") == "5min"
    assert str(Freq("1day")) == "day" and Freq("w") == "1week"
    with pytest.raises(ConfigError):
        Freq.parse("fortnight")


def test_pred_level_order_and_series_do_not_matter(golden_provider, golden_pred, region):
    region("cn")

    def run(pred):
        pm, _ = backtest("2020-01-07", "2020-03-06", strategy(pred), EXECUTOR, benchmark="BENCH", account=1e6,
                         exchange_kwargs=CN, provider=golden_provider)
        return pm["1day"][0]

    base = run(golden_pred)
    swapped = golden_pred.swaplevel().sort_index()
    pd.testing.assert_frame_equal(run(swapped), base)
    pd.testing.assert_frame_equal(run(golden_pred["score"]), base)


def test_parallel_trade_type_and_verbose(golden_provider, golden_pred, region, capsys):
    region("cn")
    serial, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), EXECUTOR, benchmark="BENCH",
                         account=1e6, exchange_kwargs=CN, provider=golden_provider)
    par_ex = {**EXECUTOR, "kwargs": {**EXECUTOR["kwargs"], "trade_type": "parallel", "verbose": True}}
    par, _ = backtest("2020-01-07", "2020-02-07", strategy(golden_pred), par_ex, benchmark="BENCH",
                      account=1e6, exchange_kwargs=CN, provider=golden_provider)
    out = capsys.readouterr().out
    assert "buy S" in out and "sell S" in out
    # buys are dealt before the sells free any cash, so the trades differ from serial mode
    assert par["1day"][0]["total_turnover"].iloc[-1] != serial["1day"][0]["total_turnover"].iloc[-1]
    assert (par["1day"][0]["cash"] >= -1e-6).all()
