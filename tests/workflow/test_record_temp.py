"""Record templates on a real MLflow (SQLite) recorder: artifact names/paths, metrics, dependency mechanics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.backtest.analysis import risk_analysis
from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.data.dataset import DatasetH
from qlib_prefect.data.handler import DataHandlerLP
from qlib_prefect.data.loader import StaticDataLoader
from qlib_prefect.data.registry import set_provider
from qlib_prefect.errors import ConfigError, LoadObjectError
from qlib_prefect.model.gbdt import LGBModel
from qlib_prefect.model.signal_eval import calc_ic
from qlib_prefect.utils.placeholder import fill_placeholder
from qlib_prefect.workflow import R
from qlib_prefect.workflow.record_temp import (
    MultiPassPortAnaRecord,
    PortAnaRecord,
    RecordTemp,
    SigAnaRecord,
    SignalRecord,
    parse_freq,
)


def make_pred_label(seed: int = 0, n_days: int = 30, n_inst: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product(
        [pd.bdate_range("2017-01-02", periods=n_days), [f"S{i:02d}" for i in range(n_inst)]],
        names=["datetime", "instrument"],
    )
    f = rng.standard_normal(len(idx))
    label = pd.DataFrame({"LABEL0": (0.3 * f + rng.standard_normal(len(idx))).astype(np.float32) * 0.01}, index=idx)
    label.iloc[::17, 0] = np.nan
    pred = pd.DataFrame({"score": f}, index=idx)
    return pred, label


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store per module (creating the schema costs seconds); every test gets its own run."""
    return f"sqlite:///{tmp_path_factory.mktemp('records') / 'mlflow.db'}"


@pytest.fixture
def rec(store_uri: str):
    qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                   "kwargs": {"uri": store_uri, "default_exp_name": "Experiment"}})
    with R.start(experiment_name="records"):
        yield R.get_recorder()


def _metrics(rec) -> dict[str, float]:
    rec.flush()
    return rec.list_metrics()


def test_sig_ana_record_artifacts_and_metrics(rec) -> None:
    pred, label = make_pred_label()
    rec.save_objects(**{"pred.pkl": pred, "label.pkl": label})
    out = SigAnaRecord(recorder=rec, ana_long_short=True).generate()
    assert set(out) == {"ic.pkl", "ric.pkl", "long_short_r.pkl", "long_avg_r.pkl"}
    assert set(rec.list_artifacts("sig_analysis")) == {f"sig_analysis/{k}" for k in out}
    ic, ric = calc_ic(pred["score"], label["LABEL0"])
    pd.testing.assert_series_equal(rec.load_object("sig_analysis/ic.pkl"), ic)
    m = _metrics(rec)
    assert m["IC"] == pytest.approx(ic.mean(), rel=1e-12)
    assert m["ICIR"] == pytest.approx(ic.mean() / ic.std(), rel=1e-12)
    assert m["Rank ICIR"] == pytest.approx(ric.mean() / ric.std(), rel=1e-12)
    assert {"Long-Short Ann Return", "Long-Short Ann Sharpe", "Long-Avg Ann Return", "Long-Avg Ann Sharpe"} <= set(m)
    ls = rec.load_object("sig_analysis/long_short_r.pkl")
    assert m["Long-Short Ann Return"] == pytest.approx(ls.mean() * 252, rel=1e-12)


def test_sig_ana_record_matches_what_real_qlib_recorded(rec) -> None:
    """Same pred/label as qlib's own SigAnaRecord run in tools/make_signal_goldens.py: same names and values."""
    gold_dir = Path(__file__).resolve().parents[1] / "golden" / "signal"
    df = pd.read_parquet(gold_dir / "inputs.parquet")
    expected = json.loads((gold_dir / "expected.json").read_text())["recorded"]
    pred = df.loc[df["has_pred"], "pred"].to_frame("score")
    label = df.loc[df["has_label"], "label32"].to_frame("LABEL0")
    rec.save_objects(**{"pred.pkl": pred, "label.pkl": label})
    SigAnaRecord(recorder=rec, ana_long_short=True).generate()
    assert sorted(rec.list_artifacts("sig_analysis")) == expected["artifacts"]
    got = _metrics(rec)
    assert set(got) == set(expected["metrics"])
    for k, v in expected["metrics"].items():
        assert got[k] == pytest.approx(v, rel=1e-12), k


def test_port_ana_record_matches_what_real_qlib_recorded(store_uri: str) -> None:
    """qlib's PortAnaRecord on the backtest golden data (tools/make_signal_goldens.py): same artifacts and metrics."""
    import copy

    from qlib_prefect.config import runtime

    root = Path(__file__).resolve().parents[1] / "golden"
    expected = json.loads((root / "signal" / "expected.json").read_text())["port_ana_record"]
    assert expected["multi_pass"] == "ValueError: array is read-only"  # qlib's own MultiPass under pandas 3
    qlib_prefect.init(provider_uri=str(root / "backtest" / "data"), region="cn",
                      exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                   "kwargs": {"uri": store_uri, "default_exp_name": "Experiment"}})
    try:
        pred = pd.read_parquet(root / "backtest" / "pred.parquet")
        with R.start(experiment_name="port_golden"):
            rec = R.get_recorder()
            rec.save_objects(**{"pred.pkl": pred, "label.pkl": pred.rename(columns={"score": "LABEL0"})})
            PortAnaRecord(recorder=rec, config=copy.deepcopy(expected["config"]), risk_analysis_freq="day").generate()
            assert sorted(rec.list_artifacts("portfolio_analysis")) == expected["artifacts"]
            got = _metrics(rec)
            assert set(got) == set(expected["metrics"])
            for k, v in expected["metrics"].items():
                assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
            # our MultiPass runs where qlib's fails, and passes really differ
            out = MultiPassPortAnaRecord(recorder=rec, config=copy.deepcopy(expected["config"]), pass_num=3)._generate()
            assert (out["multi_pass_port_analysis_1day.pkl"]["std"] > 0).all()
    finally:
        runtime.reset()


def test_dependency_check_skip_and_load_fallback(rec, caplog) -> None:
    caplog.set_level(logging.INFO, logger="qlib_prefect.workflow.record_temp")
    pred, label = make_pred_label()
    sar = SigAnaRecord(recorder=rec)
    assert sar.generate() is None  # parent artifacts missing -> skipped with a warning
    assert "dependent data does not exists" in caplog.text
    with pytest.raises(FileNotFoundError):
        sar.check()
    rec.save_objects(**{"pred.pkl": pred})
    with pytest.raises(FileNotFoundError):  # label.pkl is listed by SignalRecord too
        sar.check()
    rec.save_objects(**{"label.pkl": label})
    sar.check()
    # load(): sig_analysis/pred.pkl is missing -> falls back to the parent's root pred.pkl
    pd.testing.assert_frame_equal(sar.load("pred.pkl"), pred)
    with pytest.raises(LoadObjectError):
        sar.load("pred.pkl", parents=False)
    with pytest.raises(LoadObjectError):
        sar.load("nothing.pkl")
    assert type(sar) is SigAnaRecord  # the temporary down-cast is undone
    with pytest.raises(FileNotFoundError):
        sar.check(include_self=True, parents=False)
    assert sar.generate() is not None
    sar.check(include_self=True)
    # skip_existing: the second generation is a no-op
    again = SigAnaRecord(recorder=rec, skip_existing=True)
    assert again.generate() is None
    assert "previously generated" in caplog.text


def test_sig_ana_record_empty_label_and_label_arg(rec) -> None:
    pred, label = make_pred_label()
    rec.save_objects(**{"pred.pkl": pred, "label.pkl": None})
    assert SigAnaRecord(recorder=rec).generate() is None  # pickled None label -> warning, nothing saved
    assert rec.list_artifacts("sig_analysis") == []
    out = SigAnaRecord(recorder=rec).generate(label=label)
    assert set(out) == {"ic.pkl", "ric.pkl"}


def test_paths_and_recorder_property() -> None:
    assert RecordTemp.get_path() == "" and RecordTemp.get_path("x.pkl") == "x.pkl"
    assert SigAnaRecord.get_path("ic.pkl") == "sig_analysis/ic.pkl"
    assert PortAnaRecord.get_path() == "portfolio_analysis"
    assert SignalRecord().list() == ["pred.pkl", "label.pkl"]
    with pytest.raises(ValueError, match="recorder"):
        _ = SignalRecord().recorder


def test_port_ana_record_config_normalisation() -> None:
    par = PortAnaRecord(recorder=None)
    assert par.all_freq == ["1day"] and par.risk_analysis_freq == ["1day"]
    assert par.strategy_config["kwargs"]["signal"] == "<PRED>"
    assert par.backtest_config["benchmark"] == "SH000300"
    assert par.executor_config["kwargs"] == {"time_per_step": "day", "generate_portfolio_metrics": True}
    assert par.list() == ["report_normal_1day.pkl", "positions_normal_1day.pkl", "port_analysis_1day.pkl",
                          "indicator_analysis_1day.pkl"]
    par2 = PortAnaRecord(recorder=None, risk_analysis_freq="d", indicator_analysis_freq=["day", "week"])
    assert par2.risk_analysis_freq == ["1day"] and par2.indicator_analysis_freq == ["1day", "1week"]
    with pytest.warns(UserWarning, match="1week"):
        assert "indicator_analysis_1week.pkl" not in par2.list()
    assert PortAnaRecord(recorder=None).backtest_config is not PortAnaRecord(recorder=None).backtest_config
    with pytest.raises(ConfigError):
        PortAnaRecord(recorder=None, risk_analysis_freq="fortnight")
    with pytest.raises(ConfigError):
        MultiPassPortAnaRecord(recorder=None, config={"strategy": {"class": "X", "kwargs": {}}, "backtest": {}})
    assert [parse_freq(f) for f in ("day", "1d", "5min", "week", "2mon")] == ["1day", "1day", "5min", "1week",
                                                                             "2month"]


def test_fill_placeholder_semantics() -> None:
    model, pred = object(), pd.DataFrame({"score": [1.0]})
    task = {
        "dataset": {"kwargs": {"segments": {"train": ["2013-01-01", "2015-12-31"]},
                               "handler": {"fit_end_time": "<dataset.kwargs.segments.train.1>"}}},
        "record": [{"kwargs": {"model": "<MODEL>", "sig": "<PRED>", "t": ("<MODEL>",), "miss": "<no.such.path>",
                               "plain": "<MODEL"}}],
    }
    out = fill_placeholder(task, {"<MODEL>": model, "<PRED>": pred})
    assert out is task
    kw = task["record"][0]["kwargs"]
    assert kw["model"] is model and kw["sig"] is pred
    assert kw["t"] == ("<MODEL>",)  # tuples are not descended (qlib)
    assert kw["miss"] == "<no.such.path>" and kw["plain"] == "<MODEL"
    assert task["dataset"]["kwargs"]["handler"]["fit_end_time"] == "2015-12-31"
    with pytest.raises(ConfigError):
        fill_placeholder({}, {"MODEL": 1})


# ------------------------------------------------------------------ full chain: model -> records -> backtest
CODES = [f"S{i:02d}" for i in range(12)]


def synthetic_market(seed: int = 7, n_days: int = 70) -> tuple[MemoryProvider, pd.DataFrame]:
    """12 stocks + an index IDX, and a (feature, label) frame with label = Ref($close,-2)/Ref($close,-1)-1."""
    rng = np.random.default_rng(seed)
    cal = pd.bdate_range("2017-01-02", periods=n_days)
    rets = 0.02 * rng.standard_normal((n_days, len(CODES)))
    close = pd.DataFrame(20.0 * np.exp(np.cumsum(rets, axis=0)), index=cal, columns=CODES)
    close["IDX"] = 1000.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(n_days)))
    frames = {"close": close, "change": close / close.shift(1) - 1, "factor": close * 0 + 1.0,
              "volume": close * 0 + 1e7, "open": close, "high": close, "low": close}
    prov = MemoryProvider({k: v.astype(np.float32) for k, v in frames.items()})
    stocks = close[CODES]
    label = stocks.shift(-2) / stocks.shift(-1) - 1
    feats = {"RET1": stocks / stocks.shift(1) - 1, "RET5": stocks / stocks.shift(5) - 1,
             "NOISE": pd.DataFrame(rng.standard_normal(stocks.shape), index=cal, columns=CODES)}
    parts = {("feature", k): v.stack() for k, v in feats.items()}
    parts[("label", "LABEL0")] = label.stack()
    df = pd.DataFrame(parts).astype(np.float32)
    df.index.names = ["datetime", "instrument"]
    return prov, df.sort_index()


@pytest.fixture
def market(rec):
    prov, df = synthetic_market()
    set_provider(prov)
    try:
        yield rec, prov, df
    finally:
        set_provider(None)


SEGS = {"train": ("2017-01-02", "2017-02-17"), "valid": ("2017-02-20", "2017-03-03"),
        "test": ("2017-03-06", "2017-04-07")}


def port_config(**strategy_kw) -> dict:
    return {
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": "<PRED>", "topk": 4, "n_drop": 1, **strategy_kw}},
        "backtest": {"start_time": None, "end_time": None, "account": 1_000_000, "benchmark": "IDX",
                     "exchange_kwargs": {"limit_threshold": None, "deal_price": "close", "open_cost": 0.0005,
                                         "close_cost": 0.0015, "min_cost": 5, "trade_unit": 1}},
    }


def _signal(rec, df) -> DatasetH:
    dataset = DatasetH(handler=DataHandlerLP(data_loader=StaticDataLoader(df), learn_processors=["DropnaLabel"],
                                             cache=False), segments=SEGS)
    model = LGBModel(num_leaves=4, learning_rate=0.3, num_threads=1, min_data_in_leaf=5)
    model.fit(dataset, num_boost_round=20, recorder=rec)
    SignalRecord(model=model, dataset=dataset, recorder=rec).generate()
    return dataset


def test_signal_and_port_ana_records_end_to_end(market) -> None:
    rec, _prov, df = market
    dataset = _signal(rec, df)
    pred = rec.load_object("pred.pkl")
    assert list(pred.columns) == ["score"] and pred.index.names == ["datetime", "instrument"]
    pd.testing.assert_frame_equal(rec.load_object("label.pkl"),
                                  dataset.prepare("test", col_set="label", data_key="raw"))
    par = PortAnaRecord(recorder=rec, config=port_config(), risk_analysis_freq="day", indicator_analysis_freq="d")
    out = par.generate()
    names = {"report_normal_1day.pkl", "positions_normal_1day.pkl", "indicators_normal_1day.pkl",
             "indicators_normal_1day_obj.pkl", "port_analysis_1day.pkl", "indicator_analysis_1day.pkl"}
    assert set(out) == names
    assert set(rec.list_artifacts("portfolio_analysis")) == {f"portfolio_analysis/{n}" for n in names}
    par.check(include_self=True)
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    dates = pred.index.get_level_values("datetime")
    assert report.index[0] == dates.min() and report.index[-1] == dates.max()  # default start/end: pred range
    pa = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    expected = risk_analysis(report["return"] - report["bench"] - report["cost"], freq="1day")
    pd.testing.assert_frame_equal(pa.loc["excess_return_with_cost"], expected)
    m = _metrics(rec)
    risk_keys = {f"1day.excess_return_{w}_cost.{k}" for w in ("with", "without")
                 for k in ("mean", "std", "annualized_return", "information_ratio", "max_drawdown")}
    assert risk_keys | {"1day.ffr", "1day.pa", "1day.pos", "l2.train", "l2.valid"} <= set(m)
    assert m["1day.excess_return_with_cost.annualized_return"] == pytest.approx(
        expected.loc["annualized_return", "risk"], rel=1e-12)
    ia = rec.load_object("portfolio_analysis/indicator_analysis_1day.pkl")
    assert list(ia.index) == ["ffr", "pa", "pos"] and m["1day.ffr"] == pytest.approx(ia.loc["ffr", "value"])
    # skip_existing makes a second PortAnaRecord a no-op
    assert PortAnaRecord(recorder=rec, config=port_config(), skip_existing=True).generate() is None


def test_signal_record_without_raw_data_saves_none_label(rec) -> None:
    _, df = synthetic_market()
    dataset = DatasetH(handler=DataHandlerLP(data_loader=StaticDataLoader(df), drop_raw=True, cache=False),
                       segments=SEGS)
    model = LGBModel(num_leaves=4, num_threads=1, min_data_in_leaf=5)
    model.fit(dataset, num_boost_round=5)
    SignalRecord(model=model, dataset=dataset, recorder=rec).generate()
    assert rec.load_object("label.pkl") is None
    assert SigAnaRecord(recorder=rec).generate() is None  # "Empty label." -> nothing saved


def test_multi_pass_really_shuffles_and_is_seeded(market) -> None:
    rec, _prov, df = market
    _signal(rec, df)
    pred = rec.load_object("pred.pkl")
    mp = MultiPassPortAnaRecord(recorder=rec, config=port_config(), pass_num=3, seed=11)
    shuffled = mp.random_init()
    first = pred.index.get_level_values("datetime").min()
    a, b = pred.loc[first, "score"].to_numpy(), shuffled.loc[first, "score"].to_numpy()
    assert sorted(a) == sorted(b) and not np.array_equal(a, b)
    later = pred.index.get_level_values("datetime") > first
    pd.testing.assert_frame_equal(shuffled[later], pred[later])
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), pred)  # the stored prediction is untouched
    out = MultiPassPortAnaRecord(recorder=rec, config=port_config(), pass_num=3, seed=11).generate()
    summary = out["multi_pass_port_analysis_1day.pkl"]
    assert list(summary.columns) == ["mean", "std", "mean_std"]
    assert set(summary.index.get_level_values(1)) == {"annualized_return", "information_ratio"}
    assert (summary["std"] > 0).any()  # passes differ: the initial portfolio was really randomised
    m = _metrics(rec)
    assert "mean.excess_return_with_cost.annualized_return" in m
    assert "mean_std.excess_return_without_cost.information_ratio" in m
    again = MultiPassPortAnaRecord(recorder=rec, config=port_config(), pass_num=3, seed=11)._generate()
    pd.testing.assert_frame_equal(again["multi_pass_port_analysis_1day.pkl"], summary)
