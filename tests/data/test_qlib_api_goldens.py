"""Filters, operator classes, custom operators and guess_horizon against the real qlib's output
(tests/golden/api/, made by tools/make_api_goldens.py). Tolerance: float32 values, rtol 1e-5 / atol 1e-6."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.data import D, registry
from qlib_prefect.data.expression.operators import (
    ChangeInstrument,
    Cov,
    ElemOperator,
    Feature,
    Operators,
    PairOperator,
    Ref,
    Var,
)
from qlib_prefect.data.filter import ExpressionDFilter, NameDFilter, apply_filter_pipe
from qlib_prefect.data.helpers import guess_horizon
from qlib_prefect.data.loader import QlibDataLoader
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.errors import ConfigError, ExpressionError

GOLD = Path(__file__).resolve().parents[1] / "golden" / "api"
META = json.loads((GOLD / "goldens.json").read_text())


class Diff(ElemOperator):
    def _load_internal(self, instrument, start_index, end_index, freq):
        series = self.feature.load(instrument, start_index, end_index, freq)
        return series.diff()

    def get_extended_window_size(self):
        lft_etd, rght_etd = self.feature.get_extended_window_size()
        return lft_etd + 1, rght_etd


class Distance(PairOperator):
    def _load_internal(self, instrument, start_index, end_index, freq):
        series_left = self.feature_left.load(instrument, start_index, end_index, freq)
        series_right = self.feature_right.load(instrument, start_index, end_index, freq)
        return np.abs(series_left - series_right)


@pytest.fixture
def api_data() -> Iterator[None]:
    qlib_prefect.init(provider_uri=str(GOLD / "data"), region="us", custom_ops=[Diff, Distance])
    registry.set_provider(LocalProvider(GOLD / "data"))
    yield
    qlib_prefect.init()  # back to the built-in operators


def _close(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got.index.equals(want.index)
    np.testing.assert_allclose(got.to_numpy(np.float64), want.to_numpy(np.float64), rtol=1e-5, atol=1e-6)


def test_custom_ops_equal_qlib(api_data: None) -> None:
    fields = META["custom_fields"]
    got = D.features(["AAPL", "MSFT", "JPM"], fields, start_time="2016-03-01", end_time="2016-06-30")
    _close(got, pd.read_parquet(GOLD / "custom_ops.parquet"))
    assert Operators.Diff is Diff and Operators.Ref is Ref


def test_custom_ops_are_dropped_by_the_next_init(api_data: None) -> None:
    qlib_prefect.init(provider_uri=str(GOLD / "data"), region="us")
    with pytest.raises(ExpressionError, match="unknown operator 'Diff'"):
        D.features(["AAPL"], ["Diff($close)"])
    with pytest.raises(AttributeError, match="not registered"):
        Operators.Diff  # noqa: B018
    with pytest.raises(TypeError, match="subclass of ExpressionOps"):
        Operators.register([int])


def test_feature_calls_and_change_instrument_equal_qlib(api_data: None) -> None:
    got = D.features(["AAPL", "XOM"], META["special_fields"], start_time="2016-02-01", end_time="2016-12-30")
    _close(got, pd.read_parquet(GOLD / "special_ops.parquet"))


def test_operator_objects_in_a_loader_equal_qlib(api_data: None) -> None:
    ret = Feature("close") / Ref(Feature("close"), 1) - 1
    market_ret = ChangeInstrument("SPX", Feature("close") / Ref(Feature("close"), 1) - 1)
    market_var = ChangeInstrument("SPX", Var(market_ret, 20))
    beta = Cov(ret, market_ret, 20) / market_var
    fields = [Feature("close"), ChangeInstrument("SPX", Feature("close")), ret, market_ret, beta,
              ret - beta * market_ret]  # fmt: skip
    assert [str(f) for f in fields] == META["loader_exprs"]  # qlib's canonical text
    dl = QlibDataLoader(config={"feature": (fields, META["loader_names"])})
    got = dl.load(instruments=["AAPL"], start_time="2016-02-01", end_time="2016-12-30")
    want = pd.read_parquet(GOLD / "special_ops_loader.parquet")
    assert list(got.columns) == list(want.columns)
    _close(got, want)


@pytest.mark.parametrize("case", sorted(META["filters"]))
def test_filters_equal_qlib(api_data: None, case: str) -> None:
    name, window = case.split(".")
    start, end = META["list_windows"][window]
    pipe = META["filter_cases"][name]
    got = D.list_instruments(D.instruments("sp500", filter_pipe=pipe), start_time=start, end_time=end)
    got = {k: [[a.isoformat(), b.isoformat()] for a, b in v] for k, v in got.items()}
    assert got == META["filters"][case]


def test_filter_objects_round_trip_and_bad_configs(api_data: None) -> None:
    flt = ExpressionDFilter(rule_expression="$close>100", fstart_time="2016-02-01", fend_time="2016-03-15", keep=True)
    assert ExpressionDFilter.from_config(flt.to_config()).to_config() == flt.to_config()
    assert flt.to_config() == META["filter_cases"]["expr_keep"][0] | {"filter_start_time": "2016-02-01 00:00:00",
                                                                        "filter_end_time": "2016-03-15 00:00:00"}
    spans = registry.get_provider().instruments("sp500")
    assert apply_filter_pipe(spans, [NameDFilter("^A")]) == apply_filter_pipe(spans, [NameDFilter("^A").to_config()])
    with pytest.raises(ConfigError, match=r"filter_pipe\[0\]: filter_type 'Foo'"):
        apply_filter_pipe(spans, [{"filter_type": "Foo"}])


def test_handler_filter_pipe_uses_the_filter(api_data: None) -> None:
    pipe = META["filter_cases"]["name_am"]
    df = QlibDataLoader(config={"feature": ["$close"]}, filter_pipe=pipe).load("sp500", "2016-01-04", "2016-12-30")
    assert sorted(df.index.unique("instrument")) == sorted(META["filters"]["name_am.all"])


@pytest.mark.parametrize("label", sorted(META["horizon"]))
def test_guess_horizon_equals_qlib(label: str) -> None:
    assert guess_horizon([label]) == META["horizon"][label]


@pytest.mark.parametrize("case", sorted(META["strategy"]["cases"]))
def test_soft_topk_backtest_equals_qlib(api_data: None, case: str) -> None:
    from qlib_prefect.backtest import backtest
    from qlib_prefect.backtest.weight import OrderGenWInteract, OrderGenWOInteract, SoftTopkStrategy

    st = META["strategy"]
    kw = dict(st["cases"][case])
    gens = {"OrderGenWInteract": OrderGenWInteract, "OrderGenWOInteract": OrderGenWOInteract}
    if "order_generator_cls_or_obj" in kw:
        kw["order_generator_cls_or_obj"] = gens[kw["order_generator_cls_or_obj"]]
    pred = pd.read_parquet(GOLD / "pred.parquet")["score"]
    executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}  # fmt: skip
    pm, _ = backtest(st["start"], st["end"], SoftTopkStrategy(signal=pred, **kw), executor, benchmark="SPX",
                     account=1e6, exchange_kwargs=st["exchange"])  # fmt: skip
    report, positions = pm["1day"]
    want = pd.read_parquet(GOLD / f"{case}.report.parquet")
    cols = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench"]
    assert report.index.equals(want.index)
    np.testing.assert_allclose(report[cols].to_numpy(float), want[cols].to_numpy(float), rtol=1e-9, atol=1e-6)
    rows = [(d, c, float(v["amount"])) for d, p in positions.items() for c, v in p.position.items()
            if isinstance(v, dict)]  # fmt: skip
    got = pd.DataFrame(rows, columns=["datetime", "instrument", "amount"]).set_index(["datetime", "instrument"])
    wantp = pd.read_parquet(GOLD / f"{case}.positions.parquet").set_index(["datetime", "instrument"])
    assert got.index.sort_values().equals(wantp.index.sort_values())
    np.testing.assert_allclose(got.sort_index()["amount"], wantp.sort_index()["amount"], rtol=1e-9)


def test_backtest_daily_equals_qlib(api_data: None) -> None:
    from qlib_prefect.backtest.evaluate import backtest_daily, create_account_instance, get_exchange

    st = META["strategy"]
    pred = pd.read_parquet(GOLD / "pred.parquet")["score"]
    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred, "topk": 3, "n_drop": 1}}  # fmt: skip
    report, positions = backtest_daily(st["start"], st["end"], strategy, account=1e6, benchmark="SPX")
    want = pd.read_parquet(GOLD / "backtest_daily.report.parquet")
    cols = ["account", "return", "turnover", "cost", "value", "cash", "bench"]
    assert report.index.equals(want.index) and len(positions) == len(want)
    np.testing.assert_allclose(report[cols].to_numpy(float), want[cols].to_numpy(float), rtol=1e-9, atol=1e-6)
    ex = get_exchange(start_time=st["start"], end_time=st["end"], deal_price="close")
    assert (ex.open_cost, ex.close_cost, ex.min_cost) == (0.0015, 0.0025, 5.0)
    acc = create_account_instance(st["start"], st["end"], "SPX", {"cash": 1000.0, "AAPL": 10})
    assert acc.get_cash() == 1000.0 and acc.current_position.get_stock_amount("AAPL") == 10


def test_task_handler_helpers(api_data: None, tmp_path: Path) -> None:
    from qlib_prefect.data.dataset import DatasetH
    from qlib_prefect.data.handler import DataHandlerLP
    from qlib_prefect.data.task_handler import hash_args, init_task_handler, replace_task_handler_with_cache
    from qlib_prefect.utils import init_instance_by_config

    h_conf = {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
              "kwargs": {"start_time": "2016-01-04", "end_time": "2016-12-30", "instruments": "sp500"}}  # fmt: skip
    task = {"dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                        "kwargs": {"handler": h_conf, "segments": {"test": ["2016-06-01", "2016-12-30"]}}}}  # fmt: skip
    assert hash_args(h_conf) == hash_args(json.loads(json.dumps(h_conf)))  # qlib: md5 of the sorted json
    cached = replace_task_handler_with_cache(task, tmp_path)
    assert task["dataset"]["kwargs"]["handler"] is h_conf  # the input task is not changed
    path = cached["dataset"]["kwargs"]["handler"]
    assert path == f"file://{tmp_path}/Alpha158.{hash_args(h_conf)[:10]}.pkl"
    ds = init_instance_by_config(cached["dataset"])
    assert isinstance(ds, DatasetH) and ds.prepare("test", col_set="feature").shape[1] == 158
    h = init_task_handler(task)
    assert isinstance(h, DataHandlerLP) and task["dataset"]["kwargs"]["handler"] is h
    with pytest.raises(ConfigError, match="does not contain a handler"):
        init_task_handler({"dataset": {"kwargs": {}}})


LONG_SHORT = json.loads((GOLD / "long_short.json").read_text())["cases"]


@pytest.mark.parametrize("case", sorted(LONG_SHORT))
def test_long_short_backtest_equals_qlib(api_data: None, case: str) -> None:
    """qlib 0.9.7's long_short_backtest with only its call bugs fixed (the golden's LONG_SHORT_FIXES). Tolerance:
    the profits are float32 expressions (as qlib's), summed in float64 in both: rtol 1e-6, atol 1e-9."""
    from qlib_prefect.config.classpath import resolve_class

    fn = resolve_class("long_short_backtest", "qlib.contrib.evaluate")
    (start, end), kw = LONG_SHORT[case]
    pred = pd.read_parquet(GOLD / "pred.parquet").loc(axis=0)[start:end]
    got = fn(pred, **kw)
    want = pd.read_parquet(GOLD / f"long_short.{case}.parquet")
    assert set(got) == {"long", "short", "long_short"}
    for key in ("long", "short", "long_short"):
        s = got[key]
        assert s.index.equals(pd.DatetimeIndex(want.index)), key
        np.testing.assert_allclose(s.to_numpy(), want[key].to_numpy(), rtol=1e-6, atol=1e-9, err_msg=key)
    # the series are not trivially NaN/zero: the golden exercises skipped (suspended / limited) stocks
    assert want["long"].notna().sum() > 0.5 * len(want)


def test_long_short_backtest_edges(api_data: None) -> None:
    from qlib_prefect.backtest.evaluate import long_short_backtest
    from qlib_prefect.errors import BacktestError

    pred = pd.read_parquet(GOLD / "pred.parquet")
    week = pred.loc(axis=0)["2016-03-01":"2016-03-07"]
    a = long_short_backtest(week, topk=2)
    b = long_short_backtest(week["score"].swaplevel().sort_index(), topk=2)  # a Series, (instrument, datetime)
    for k in a:
        pd.testing.assert_series_equal(a[k], b[k])
    assert list(a["long"].index.strftime("%m-%d")) == ["03-02", "03-03", "03-04", "03-07", "03-08"]
    with pytest.raises(BacktestError, match="shift must be >= 0"):
        long_short_backtest(week, shift=-1)


NESTED = json.loads((GOLD / "nested.json").read_text())
REPORT_COLS = ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench"]


def _nested_executor(**inner_kw: object) -> dict:
    inner = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
             "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True, "track_data": True, **inner_kw}}
    return {"class": "NestedExecutor", "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "week", "generate_portfolio_metrics": True, "track_data": True,
                       "inner_executor": inner,
                       "inner_strategy": {"class": "TWAPStrategy",
                                          "module_path": "qlib.contrib.strategy.rule_strategy"}}}  # fmt: skip


def _order_strategy() -> dict:
    orders = pd.DataFrame(NESTED["orders"], columns=["datetime", "instrument", "amount", "direction"])
    return {"class": "FileOrderStrategy", "module_path": "qlib.contrib.strategy.rule_strategy",
            "kwargs": {"file": orders}}  # fmt: skip


def test_nested_twap_backtest_equals_qlib(api_data: None) -> None:
    """qlib's NestedExecutor(week) over SimulatorExecutor(day) with TWAPStrategy, outer FileOrderStrategy: every
    decision (level, times, orders, deal amounts) exactly, both reports at rtol 1e-9 / atol 1e-6, both levels'
    positions (amount, price, count_day, count_week) at rtol 1e-9."""
    from qlib_prefect.backtest import collect_data

    rv: dict = {}
    decisions = list(collect_data(NESTED["start"], NESTED["end"], _order_strategy(), _nested_executor(),
                                  benchmark=NESTED["benchmark"], account=NESTED["account"],
                                  exchange_kwargs=NESTED["exchange"], return_value=rv))  # fmt: skip
    steps = [{"freq": d.strategy.trade_calendar.get_freq(), "start": str(d.start_time), "end": str(d.end_time),
              "orders": [[o.stock_id, float(o.amount), int(o.direction), float(o.deal_amount)]
                         for o in d.get_decision()]} for d in decisions]  # fmt: skip
    assert steps == NESTED["steps"]
    assert list(rv["portfolio_dict"]) == NESTED["levels"] == ["1week", "1day"]
    for key, (report, positions) in rv["portfolio_dict"].items():
        want = pd.read_parquet(GOLD / f"nested.{key}.report.parquet")
        assert report.index.equals(want.index), key
        np.testing.assert_allclose(report[REPORT_COLS].to_numpy(float), want[REPORT_COLS].to_numpy(float),
                                   rtol=1e-9, atol=1e-6, err_msg=key)  # fmt: skip
        rows = [(d, c, float(v["amount"]), float(v["price"]), int(v.get("count_day", 0)), int(v.get("count_week", 0)))
                for d, p in positions.items() for c, v in p.position.items() if isinstance(v, dict)]  # fmt: skip
        got = pd.DataFrame(rows, columns=["datetime", "instrument", "amount", "price", "count_day", "count_week"])
        wantp = pd.read_parquet(GOLD / f"nested.{key}.positions.parquet")
        keys = ["datetime", "instrument"]
        got, wantp = got.sort_values(keys).reset_index(drop=True), wantp.sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(got[keys], wantp[keys], check_dtype=False)
        assert (got[["count_day", "count_week"]].to_numpy() == wantp[["count_day", "count_week"]].to_numpy()).all()
        np.testing.assert_allclose(got[["amount", "price"]].to_numpy(), wantp[["amount", "price"]].to_numpy(),
                                   rtol=1e-9)  # fmt: skip
    assert list(rv["indicator_dict"]) == ["1day"]  # the weekly trade indicators are not computed


def test_nested_executor_resolves_and_rejects_what_it_cannot_run(api_data: None) -> None:
    from qlib_prefect.backtest import backtest
    from qlib_prefect.backtest.executor import NestedExecutor
    from qlib_prefect.backtest.rule_strategy import TWAPStrategy
    from qlib_prefect.config.classpath import resolve_class
    from qlib_prefect.errors import BacktestError, ConfigError

    assert resolve_class("NestedExecutor", "qlib.backtest.executor") is NestedExecutor
    assert resolve_class("TWAPStrategy", "qlib.contrib.strategy.rule_strategy") is TWAPStrategy
    conf = _nested_executor()
    with pytest.raises(ConfigError, match="only 'week'"):
        NestedExecutor(**{**conf["kwargs"], "time_per_step": "day"})
    pred = pd.read_parquet(GOLD / "pred.parquet")["score"]
    topk = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
            "kwargs": {"signal": pred, "topk": 3, "n_drop": 1}}  # fmt: skip
    with pytest.raises(BacktestError, match="cannot be the outer strategy"):
        backtest(NESTED["start"], NESTED["end"], topk, conf, benchmark="SPX", account=1e6,
                 exchange_kwargs=NESTED["exchange"])  # fmt: skip
    bad = {**conf, "kwargs": {**conf["kwargs"], "inner_strategy": _order_strategy()}}
    with pytest.raises(BacktestError, match="must be a TWAPStrategy"):
        backtest(NESTED["start"], NESTED["end"], _order_strategy(), bad, benchmark="SPX", account=1e6,
                 exchange_kwargs=NESTED["exchange"])  # fmt: skip
