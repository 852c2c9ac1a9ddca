"""Produce the qlib-API goldens in tests/golden/api/ with the REAL qlib (issue 17: filters, operator
classes, custom operators, utilities).

Run with the oracle venv (qlib 0.9.7), from the repository root::

    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \\
        /work/qlib-venv/bin/python tools/make_api_goldens.py [--out tests/golden/api]

Steps:
1. cut 6 stocks + the ``SPX`` index (2016-01-04 .. 2016-12-30) from the bundled S&P sample CSVs (read
   directly, not through the package) and write them with ``tools/qlib_data_writer.py`` into ``<out>/data``:
   fields ``open high low close volume factor(=1) change``, markets ``all`` (everything) and ``sp500`` (stocks;
   MSFT's membership has a gap, JPM joins in April, AMGN's data starts in February);
2. ``qlib.init(provider_uri=<out>/data, region="us", custom_ops=[Diff, Distance])`` (the operator classes of
   qlib's tests/test_register_ops.py) and compute: custom-operator features, the ``ChangeInstrument`` /
   ``Feature('close')`` / beta expressions of tests/ops/test_special_ops.py (benchmark SPX, 20-day window),
   the same through ``QlibDataLoader`` with operator objects, ``NameDFilter`` / ``ExpressionDFilter``
   instrument lists, ``guess_horizon``;
3. write ``<out>/custom_ops.parquet``, ``<out>/special_ops.parquet``, ``<out>/special_ops_loader.parquet``
   and ``<out>/goldens.json`` (filters: ``{code: [[start, end], ...]}`` with ISO dates).

4. SoftTopkStrategy (qlib's current class, ``tools/qlib_soft_topk_head.py``) backtests (``STRATEGY_CASES``:
   default, ``max_sold_weight``, ``OrderGenWOInteract``) on a seeded random score (``<out>/pred.parquet``),
   2016-03-01 .. 2016-11-30, benchmark SPX, account 1e6:
   ``<out>/<case>.report.parquet`` (qlib's report_normal) and ``<out>/<case>.positions.parquet``; and
   ``qlib.contrib.evaluate.backtest_daily`` with its default exchange (TopkDropout 3/1):
   ``<out>/backtest_daily.report.parquet``.

5. ``qlib.backtest.collect_data`` (TopkDropout 3/1 on the same score, executor ``track_data=True``, the same
   exchange): every step's ``TradeDecisionWO`` (step times and orders after dealing) into
   ``<out>/collect_data.json``, its ``return_value`` report into ``<out>/collect_data.report.parquet``;
   ``qlib.backtest.report.PortfolioMetrics`` benchmark series (SPX) and a step sample into the same JSON.
6. qlib's tests/test_all_pipeline.py on the cut (LightGBM on Alpha158/sp500 2016, PortAnaRecord TopkDropout 3/1
   on the test segment): the risk frame into ``<out>/all_pipeline.json``.
7. ``qlib.contrib.evaluate.long_short_backtest`` (``LONG_SHORT_CASES`` on the score of step 4): qlib 0.9.7's
   function cannot run, so its installed source is copied with exactly the fixes of ``LONG_SHORT_FIXES`` (each
   replacement must match) and monkeypatched into ``qlib.contrib.evaluate``; ``<out>/long_short.<case>.parquet``
   (columns ``long short long_short``) and ``<out>/long_short.json`` (the cases).
8. a nested backtest (qlib's ``NestedExecutor(time_per_step="week")`` over a daily ``SimulatorExecutor`` with
   ``TWAPStrategy``; outer ``FileOrderStrategy`` on ``NESTED_ORDERS``; 2016-03-01 .. 2016-05-31, so the last
   week runs past ``end_time``) through ``collect_data`` (``track_data`` at both levels): ``<out>/nested.json``
   (every decision's level, times and orders after dealing), ``<out>/nested.<1week|1day>.report.parquet`` and
   ``<out>/nested.<1week|1day>.positions.parquet``.
   ``--only collect`` / ``pipeline`` / ``longshort`` / ``nested`` runs only step 5 / 6 / 7 / 8 (the data
   directory must exist).

Run with ``PYTHONHASHSEED=0`` (SoftTopkStrategy iterates a ``set`` of codes: float sums in that order).
Deterministic; re-running rewrites the same files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qlib_data_writer import write_calendar, write_instruments, write_long_frame

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "qlib_prefect" / "data" / "_bundled"
CODES = ["AAPL", "AMZN", "JPM", "MSFT", "XOM", "AMGN"]
START, END = "2016-01-04", "2016-12-30"
FIELDS = ["open", "high", "low", "close", "volume", "factor", "change"]

CUSTOM_FIELDS = ["Diff($close)", "Distance($close, Ref($close, 1))", "Diff(Mean($close, 5))", "Abs(Diff($open))"]
FILTER_CASES = {
    "name_am": [{"filter_type": "NameDFilter", "name_rule_re": "^[AM]", "filter_start_time": None,
                 "filter_end_time": None}],
    "name_window": [{"filter_type": "NameDFilter", "name_rule_re": "^A", "filter_start_time": "2016-03-01",
                     "filter_end_time": "2016-05-31"}],
    "expr_close": [{"filter_type": "ExpressionDFilter", "rule_expression": "$close>100", "filter_start_time": None,
                    "filter_end_time": None, "keep": False}],
    "expr_window": [{"filter_type": "ExpressionDFilter", "rule_expression": "$close/Ref($close,1)>1.01",
                     "filter_start_time": "2016-02-01", "filter_end_time": "2016-02-29", "keep": False}],
    "expr_keep": [{"filter_type": "ExpressionDFilter", "rule_expression": "$close>100",
                   "filter_start_time": "2016-02-01", "filter_end_time": "2016-03-15", "keep": True}],
    "pipe": [{"filter_type": "NameDFilter", "name_rule_re": "^[AJM]", "filter_start_time": None,
              "filter_end_time": None},
             {"filter_type": "ExpressionDFilter", "rule_expression": "$volume>2e7", "filter_start_time": None,
              "filter_end_time": None, "keep": False}],
}
LIST_WINDOWS = {"all": (None, None), "clip": ("2016-02-15", "2016-10-31")}
BT_START, BT_END = "2016-03-01", "2016-11-30"
BT_EXCHANGE = {"freq": "day", "limit_threshold": None, "deal_price": "close", "open_cost": 0.0005,
               "close_cost": 0.0015, "min_cost": 5}
#: SoftTopkStrategy backtests: name -> strategy kwargs (besides the signal); order generators by class name
STRATEGY_CASES = {
    "soft_topk": {"topk": 3},
    "soft_topk_limit": {"topk": 3, "max_sold_weight": 0.1},
    "soft_topk_wo": {"topk": 2, "order_generator_cls_or_obj": "OrderGenWOInteract", "risk_degree": 0.9},
}
HORIZON_LABELS = [
    "Ref($close, -2) / Ref($close, -1) - 1",
    "Ref($close, -5) / Ref($close, -1) - 1",
    "Ref($close, -1) / Ref($close, -1) - 1",
    "Mean(Ref($close, -3), 5)",
]


def special_fields() -> list[str]:
    ret = "Feature('close') / Ref(Feature('close'), 1) - 1"
    market_ret = f"ChangeInstrument('SPX', {ret})"
    market_var = f"ChangeInstrument('SPX', Var({market_ret}, 20))"
    beta = f"Cov({ret}, {market_ret}, 20) / {market_var}"
    return [
        "ChangeInstrument('SPX', $close)",
        "ChangeInstrument('SPX', Feature('close')/Ref(Feature('close'),1) -1)",
        "($close/Ref($close,1) -1) - ChangeInstrument('SPX', $close/Ref($close,1) -1)",
        "Feature('close')",
        ret,
        beta,
        f"{ret} - {beta}*({market_ret})",
    ]


def write_data(out: Path) -> None:
    df = pd.read_csv(BUNDLED / "all_stocks_5yr.csv.gz", parse_dates=["date"])
    df = df[df["Name"].isin(CODES) & (df["date"] >= START) & (df["date"] <= END)]
    stocks = pd.DataFrame({"code": df["Name"].astype(str), "date": df["date"],
                           **{f: df[f].astype("float64") for f in FIELDS[:5]}})
    ix = pd.read_csv(BUNDLED / "sp500_index.csv.gz")
    ix["Date"] = pd.to_datetime(ix["Date"], format="%m/%d/%Y")
    ix = ix[(ix["Date"] >= START) & (ix["Date"] <= END)]
    index = pd.DataFrame({"code": "SPX", "date": ix["Date"], "open": ix["Open"], "high": ix["High"],
                          "low": ix["Low"], "close": ix["Close"], "volume": ix["Volume"].astype("float64")})
    cal = pd.DatetimeIndex(sorted(set(stocks["date"])))
    index = index[index["date"].isin(cal)]
    long = pd.concat([stocks, index], ignore_index=True)
    long["factor"] = 1.0
    long = long.sort_values(["code", "date"])
    long["change"] = long.groupby("code")["close"].pct_change()  # qlib's $change: close / previous close - 1
    long = long[(long["date"] >= "2016-01-04") & ~((long["code"] == "AMGN") & (long["date"] < "2016-02-01"))]
    write_calendar(out, cal)
    spans = write_long_frame(out, long, cal, FIELDS)
    write_instruments(out, "all", spans)
    member = []
    for code, a, b in spans:
        if code == "SPX":
            continue
        if code == "MSFT":
            member += [(code, a, pd.Timestamp("2016-04-29")), (code, pd.Timestamp("2016-06-01"), b)]
        elif code == "JPM":
            member.append((code, pd.Timestamp("2016-04-01"), b))
        else:
            member.append((code, a, b))
    write_instruments(out, "sp500", member)


class _Ops:
    """qlib's tests/test_register_ops.py operators (defined once qlib is importable)."""

    @staticmethod
    def make() -> list[type]:
        from qlib.data.ops import ElemOperator, PairOperator

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

        return [Diff, Distance]


def make_pred(data: Path) -> pd.DataFrame:
    """Deterministic scores for the stocks on every date of the data calendar (seed 20260917)."""
    cal = pd.to_datetime(pd.Series((data / "calendars" / "day.txt").read_text().split()))
    codes = sorted(c for c in CODES)
    idx = pd.MultiIndex.from_product([cal, codes], names=["datetime", "instrument"])
    rng = np.random.default_rng(20260917)
    return pd.DataFrame({"score": rng.standard_normal(len(idx))}, index=idx)


def _spans_json(spans: dict) -> dict:
    return {k: [[pd.Timestamp(a).isoformat(), pd.Timestamp(b).isoformat()] for a, b in v] for k, v in spans.items()}


def collect_goldens(out: Path) -> None:
    """Step 5: ``collect_data`` decisions and report, ``PortfolioMetrics`` benchmark (see the module docstring)."""
    from qlib.backtest import collect_data, format_decisions
    from qlib.backtest.decision import TradeDecisionWO
    from qlib.backtest.report import PortfolioMetrics

    pred = pd.read_parquet(out / "pred.parquet")
    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred["score"], "topk": 3, "n_drop": 1}}
    executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True, "track_data": True}}
    rv: dict = {}
    decisions = list(collect_data(BT_START, BT_END, strategy, executor, benchmark="SPX", account=1e6,
                                  exchange_kwargs=BT_EXCHANGE, return_value=rv))
    assert all(isinstance(d, TradeDecisionWO) for d in decisions)
    fmt = format_decisions(decisions)
    steps = [{"start": str(d.start_time), "end": str(d.end_time), "empty": bool(d.empty()),
              "orders": [[o.stock_id, float(o.amount), int(o.direction), float(o.deal_amount), str(o.start_time),
                          str(o.end_time)] for o in d.get_decision()]} for d in decisions]
    rv["portfolio_dict"]["1day"][0].to_parquet(out / "collect_data.report.parquet")
    pm = PortfolioMetrics(freq="day", benchmark_config={"benchmark": "SPX", "start_time": BT_START,
                                                        "end_time": BT_END})
    bench = {str(k.date()): float(v) for k, v in pm.bench.items()}
    sample = float(pm._sample_benchmark(pm.bench, "2016-03-07", "2016-03-11 23:59:59"))
    ind = rv["indicator_dict"]["1day"][0]
    doc = {"start": BT_START, "end": BT_END, "exchange": BT_EXCHANGE, "steps": steps,
           "format": [fmt[0], len(fmt[1]), all(sub is None for _, sub in fmt[1])],
           "indicator_count": [int(x) for x in ind["count"]], "bench": bench, "bench_sample_0307_0311": sample}
    (out / "collect_data.json").write_text(json.dumps(doc) + "\n")


#: tests/qlib_ported/qlib_test_data.py's CSI300_GBDT_TASK (qlib.tests.config's task on the cut)
PIPELINE_TASK = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
              "kwargs": {"loss": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.0421, "subsample": 0.8789,
                         "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210,
                         "num_threads": 1}},
    "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                "kwargs": {"handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                                       "kwargs": {"start_time": "2016-01-04", "end_time": "2016-12-30",
                                                  "fit_start_time": "2016-01-04", "fit_end_time": "2016-05-31",
                                                  "instruments": "sp500"}},
                           "segments": {"train": ("2016-01-04", "2016-05-31"), "valid": ("2016-06-01", "2016-08-31"),
                                        "test": ("2016-09-01", "2016-12-30")}}},
}


def pipeline_goldens(out: Path) -> None:
    """Step 6: qlib's tests/test_all_pipeline.py on the cut (the ported test's adaptations): the
    ``port_analysis_1day`` risk frame into ``<out>/all_pipeline.json``."""
    import tempfile

    from qlib.utils import init_instance_by_config
    from qlib.workflow import R
    from qlib.workflow.record_temp import PortAnaRecord, SignalRecord

    model = init_instance_by_config(PIPELINE_TASK["model"])
    dataset = init_instance_by_config(PIPELINE_TASK["dataset"])
    # qlib's recorder leaves ./tmp/<name>/filelock in the working directory: run inside the temporary folder
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp), \
            R.start(experiment_name="workflow", uri=f"file:{tmp}"):
        model.fit(dataset)
        recorder = R.get_recorder()
        SignalRecord(model, dataset, recorder).generate()
        conf = {"executor": {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                             "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}},
                "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy.signal_strategy",
                             "kwargs": {"signal": (model, dataset), "topk": 3, "n_drop": 1}},
                "backtest": {"start_time": "2016-09-01", "end_time": "2016-12-29", "account": 100000000,
                             "benchmark": "SPX",
                             "exchange_kwargs": {"freq": "day", "limit_threshold": 0.095, "deal_price": "close",
                                                 "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5}}}
        par = PortAnaRecord(recorder, conf, risk_analysis_freq="day")
        par.generate()
        df = par.load("port_analysis_1day.pkl")
    risk = {f"{a}.{b}": float(v) for (a, b), v in df["risk"].items()}
    (out / "all_pipeline.json").write_text(json.dumps(risk, indent=1, sort_keys=True) + "\n")


#: name -> (prediction window, long_short_backtest kwargs besides pred)
LONG_SHORT_CASES = {
    "top2": (("2016-01-04", "2016-12-30"), {"topk": 2}),
    "top4": (("2016-01-04", "2016-06-30"), {"topk": 4}),
    "limit_open_shift2": (("2016-03-01", "2016-11-30"), {"topk": 2, "limit_threshold": 0.02, "deal_price": "open",
                                                         "shift": 2, "extract_codes": True}),
}
#: (qlib 0.9.7's text, the fix, count): the only changes to qlib's long_short_backtest for the golden
LONG_SHORT_FIXES = [
    # get_exchange() has no pred/shift/extract_codes (ValueError: Get Unexpected arguments): the evident intent of
    # extract_codes is the exchange's codes
    ("        pred=pred,\n",
     "        codes=sorted(set(pred.index.get_level_values('instrument'))) if extract_codes else 'all',\n", 1),
    ("        extract_codes=extract_codes,\n        shift=shift,\n", "", 1),
    # 0.9.7's Exchange.is_stock_tradable / check_stock_suspended take start_time, end_time (no trade_date)
    ("is_stock_tradable(stock_id=stock, trade_date=date)",
     "is_stock_tradable(stock_id=stock, start_time=date, end_time=date)", 2),
    ("check_stock_suspended(stock_id=stock, trade_date=date)",
     "check_stock_suspended(stock_id=stock, start_time=date, end_time=date)", 1),
    # the "all" loop iterated level 0 of the (datetime, instrument) index, i.e. dates: iterate the instruments
    ("index.get_level_values(level=0)", "index.get_level_values(level='instrument')", 1),
]


def long_short_goldens(out: Path) -> None:
    """Step 7: qlib's ``long_short_backtest`` with ``LONG_SHORT_FIXES`` only (see the module docstring)."""
    import inspect
    import warnings

    import qlib.contrib.evaluate as qe

    src = inspect.getsource(qe.long_short_backtest)
    for old, new, count in LONG_SHORT_FIXES:
        assert src.count(old) == count, (old, src.count(old))
        src = src.replace(old, new)
    scope = dict(vars(qe))
    exec(compile(src, qe.__file__, "exec"), scope)
    qe.long_short_backtest = scope["long_short_backtest"]  # monkeypatched: the oracle's own name runs the copy
    pred = pd.read_parquet(out / "pred.parquet")
    for name, ((s, e), kw) in LONG_SHORT_CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # np.mean([]) on days without a tradable stock
            res = qe.long_short_backtest(pred.loc(axis=0)[s:e], **kw)
        df = pd.DataFrame({k: res[k] for k in ("long", "short", "long_short")})
        df.index = pd.DatetimeIndex(df.index).astype("datetime64[ns]")
        df.to_parquet(out / f"long_short.{name}.parquet")
    (out / "long_short.json").write_text(json.dumps({"cases": LONG_SHORT_CASES}, indent=1) + "\n")


#: the outer orders of the nested backtest (week starts; odd amounts exercise TWAP's rounding, a sell above the
#: holding is clipped, 2016-03-21's week has 4 days, 2016-05-31's runs past end_time)
NESTED_ORDERS = [
    ["2016-03-07", "AAPL", 1003, "buy"], ["2016-03-07", "MSFT", 2007, "buy"], ["2016-03-07", "XOM", 1499, "buy"],
    ["2016-03-21", "AAPL", 601, "sell"], ["2016-03-21", "JPM", 777, "buy"],
    ["2016-04-04", "AMZN", 303, "buy"], ["2016-04-04", "MSFT", 2007, "sell"], ["2016-04-04", "XOM", 5000, "sell"],
    ["2016-05-02", "AAPL", 2, "buy"], ["2016-05-02", "AMGN", 611, "buy"],
    ["2016-05-31", "AMZN", 100, "sell"],
]
NESTED = {"start": "2016-03-01", "end": "2016-05-31", "account": 1e6, "benchmark": "SPX", "exchange": BT_EXCHANGE}


def nested_executor_config() -> dict:
    """The nested executor of step 8 (qlib class paths; our tests build the same config)."""
    inner = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
             "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True, "track_data": True}}
    return {"class": "NestedExecutor", "module_path": "qlib.backtest.executor",
            "kwargs": {"time_per_step": "week", "generate_portfolio_metrics": True, "track_data": True,
                       "inner_executor": inner,
                       "inner_strategy": {"class": "TWAPStrategy",
                                          "module_path": "qlib.contrib.strategy.rule_strategy"}}}


def positions_frame(positions: dict) -> pd.DataFrame:
    rows = [(d, c, float(v["amount"]), float(v["price"]), int(v.get("count_day", 0)), int(v.get("count_week", 0)))
            for d, p in positions.items() for c, v in p.position.items() if isinstance(v, dict)]
    return pd.DataFrame(rows, columns=["datetime", "instrument", "amount", "price", "count_day", "count_week"])


def nested_goldens(out: Path) -> None:
    """Step 8: a week-over-day nested backtest with TWAPStrategy (see the module docstring)."""
    from qlib.backtest import collect_data

    orders = pd.DataFrame(NESTED_ORDERS, columns=["datetime", "instrument", "amount", "direction"])
    strategy = {"class": "FileOrderStrategy", "module_path": "qlib.contrib.strategy.rule_strategy",
                "kwargs": {"file": orders}}
    rv: dict = {}
    decisions = list(collect_data(NESTED["start"], NESTED["end"], strategy, nested_executor_config(),
                                  benchmark=NESTED["benchmark"], account=NESTED["account"],
                                  exchange_kwargs=NESTED["exchange"], return_value=rv))
    steps = [{"freq": d.strategy.trade_calendar.get_freq(), "start": str(d.start_time), "end": str(d.end_time),
              "orders": [[o.stock_id, float(o.amount), int(o.direction), float(o.deal_amount)]
                         for o in d.get_decision()]} for d in decisions]
    for key, (report, positions) in rv["portfolio_dict"].items():
        report.to_parquet(out / f"nested.{key}.report.parquet")
        positions_frame(positions).to_parquet(out / f"nested.{key}.positions.parquet")
    doc = {**NESTED, "orders": NESTED_ORDERS, "steps": steps, "levels": list(rv["portfolio_dict"])}
    (out / "nested.json").write_text(json.dumps(doc) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests" / "golden" / "api"))
    ap.add_argument("--only", choices=["collect", "pipeline", "longshort", "nested"], default=None)
    args = ap.parse_args()
    out = Path(args.out)
    if args.only is not None:
        import qlib

        qlib.init(provider_uri=str(out / "data"), region="us", kernels=1)
        steps = {"collect": collect_goldens, "pipeline": pipeline_goldens, "longshort": long_short_goldens,
                 "nested": nested_goldens}
        steps[args.only](out)
        print("wrote", args.only, "goldens into", out)
        return
    write_data(out / "data")

    import qlib
    from qlib.data import D
    from qlib.data.dataset.loader import QlibDataLoader
    from qlib.data.ops import ChangeInstrument, Cov, Feature, Ref, Var
    from qlib.utils.data import guess_horizon

    qlib.init(provider_uri=str(out / "data"), region="us", custom_ops=_Ops.make(), kernels=1)
    golden: dict = {"custom_fields": CUSTOM_FIELDS, "special_fields": special_fields(), "filters": {},
                    "horizon": {}}
    df = D.features(["AAPL", "MSFT", "JPM"], CUSTOM_FIELDS, start_time="2016-03-01", end_time="2016-06-30")
    df.to_parquet(out / "custom_ops.parquet")
    df = D.features(["AAPL", "XOM"], special_fields(), start_time="2016-02-01", end_time="2016-12-30")
    df.to_parquet(out / "special_ops.parquet")

    ret = Feature("close") / Ref(Feature("close"), 1) - 1
    market_ret = ChangeInstrument("SPX", Feature("close") / Ref(Feature("close"), 1) - 1)
    market_var = ChangeInstrument("SPX", Var(market_ret, 20))
    beta = Cov(ret, market_ret, 20) / market_var
    fields = [Feature("close"), ChangeInstrument("SPX", Feature("close")), ret, market_ret, beta,
              ret - beta * market_ret]
    names = ["close", "marketClose", "ret", "marketRet", "beta_20", "excess_return"]
    golden["loader_exprs"] = [str(f) for f in fields]
    golden["loader_names"] = names
    dl = QlibDataLoader(config={"feature": (fields, names)})
    dl.load(instruments=["AAPL"], start_time="2016-02-01", end_time="2016-12-30").to_parquet(
        out / "special_ops_loader.parquet")

    for case, pipe in FILTER_CASES.items():
        for wname, (s, e) in LIST_WINDOWS.items():
            got = D.list_instruments(D.instruments("sp500", filter_pipe=pipe), start_time=s, end_time=e)
            golden["filters"][f"{case}.{wname}"] = _spans_json(got)
    golden["filter_cases"] = FILTER_CASES
    golden["list_windows"] = LIST_WINDOWS
    for label in HORIZON_LABELS:
        golden["horizon"][label] = int(guess_horizon([label]))
    pred = make_pred(out / "data")
    pred.to_parquet(out / "pred.parquet")
    from qlib.backtest import backtest
    from qlib.contrib.strategy.order_generator import OrderGenWInteract, OrderGenWOInteract
    from qlib_soft_topk_head import SoftTopkStrategy  # 0.9.7's class cannot be constructed (see that file)

    gens = {"OrderGenWInteract": OrderGenWInteract, "OrderGenWOInteract": OrderGenWOInteract}
    for name, kw in STRATEGY_CASES.items():
        kw = dict(kw)
        if "order_generator_cls_or_obj" in kw:
            kw["order_generator_cls_or_obj"] = gens[kw["order_generator_cls_or_obj"]]
        strategy = SoftTopkStrategy(signal=pred["score"], **kw)
        executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                    "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
        pm, _ = backtest(start_time=BT_START, end_time=BT_END, strategy=strategy, executor=executor,
                         benchmark="SPX", account=1e6, exchange_kwargs=BT_EXCHANGE)
        report, positions = pm["1day"]
        report.to_parquet(out / f"{name}.report.parquet")
        rows = [(d, c, float(v["amount"])) for d, p in positions.items() for c, v in p.position.items()
                if isinstance(v, dict)]
        pd.DataFrame(rows, columns=["datetime", "instrument", "amount"]).to_parquet(out / f"{name}.positions.parquet")
    from qlib.contrib.evaluate import backtest_daily

    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred["score"], "topk": 3, "n_drop": 1}}
    report, _ = backtest_daily(BT_START, BT_END, strategy, account=1e6, benchmark="SPX")
    report.to_parquet(out / "backtest_daily.report.parquet")
    golden["strategy"] = {"start": BT_START, "end": BT_END, "exchange": BT_EXCHANGE, "cases": STRATEGY_CASES}
    (out / "goldens.json").write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    collect_goldens(out)
    pipeline_goldens(out)
    long_short_goldens(out)
    nested_goldens(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
