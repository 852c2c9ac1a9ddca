"""Handlers: Alpha158/Alpha360 layout, processor wiring, process types, init types and fetch semantics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import registry
from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.data.handler import (
    Alpha158,
    Alpha158vwap,
    Alpha360,
    DataHandler,
    DataHandlerLP,
    check_transform_proc,
)
from qlib_prefect.data.loader import Alpha158DL, Alpha360DL, QlibDataLoader, StaticDataLoader
from qlib_prefect.data.processor import CSZScoreNorm, DropnaLabel, Fillna, ZScoreNorm
from qlib_prefect.errors import ConfigError, DataError

ROLLING = ["ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV", "IMAX", "IMIN",
           "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "VMA", "VSTD", "WVMA", "VSUMP",
           "VSUMN", "VSUMD"]
KBAR = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2"]
ALPHA158_NAMES = KBAR + ["OPEN0", "HIGH0", "LOW0", "VWAP0"] + [f"{g}{d}" for g in ROLLING for d in (5, 10, 20, 30, 60)]


def make_provider(n_days: int = 90, n_inst: int = 6, seed: int = 1) -> MemoryProvider:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    codes = [f"S{i:02d}" for i in range(n_inst)]
    close = pd.DataFrame(20 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_days, n_inst)), axis=0)), dates, codes)
    open_ = close * (1 + rng.normal(0, 0.01, close.shape))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    volume = pd.DataFrame(rng.integers(1000, 5000, close.shape).astype(float), dates, codes)
    close.iloc[40:43, 1] = np.nan  # a suspension
    fields = {"open": open_, "close": close, "high": high, "low": low, "volume": volume}
    spans = {c: [(dates[0], dates[-1])] for c in codes[:-1]}
    spans[codes[-1]] = [(dates[30], dates[-1])]  # joins the market late
    return MemoryProvider(fields, markets={"mkt": spans})


@pytest.fixture
def provider():
    p = make_provider()
    registry.set_provider(p)
    yield p
    registry.set_provider(None)


def alpha158(**kw):
    base = dict(instruments="mkt", start_time="2020-02-03", end_time="2020-04-30", fit_start_time="2020-02-03",
                fit_end_time="2020-03-13", cache=False)
    base.update(kw)
    return Alpha158(**base)


def test_alpha158_columns_index_and_dtypes(provider) -> None:
    h = alpha158()
    raw = h.fetch(col_set="__raw", data_key="raw")
    assert list(raw.columns) == [("feature", n) for n in ALPHA158_NAMES] + [("label", "LABEL0")]
    assert raw.index.names == ["datetime", "instrument"]
    assert raw.index.is_monotonic_increasing
    assert (raw.dtypes == np.float32).all()
    assert raw.index.get_level_values(0).min() >= pd.Timestamp("2020-02-03")
    assert h.get_cols() == [*ALPHA158_NAMES, "LABEL0"]
    # S05 joins on 2020-02-11 (position 30): no rows before its membership
    s05 = raw.xs("S05", level="instrument")
    assert s05.index.min() == pd.bdate_range("2020-01-01", periods=90)[30]
    # no infer processors: infer is raw itself (no copy)
    assert h._infer is h._data
    # learn: NaN labels dropped, label z-scored per day with ddof=1
    learn = h.fetch(col_set="label", data_key="learn")
    assert learn["LABEL0"].notna().all()
    ref = raw["label"].dropna().groupby(level="datetime", group_keys=False).apply(lambda g: (g - g.mean()) / g.std())
    np.testing.assert_allclose(learn["LABEL0"].to_numpy(), ref["LABEL0"].to_numpy(), rtol=1e-5, atol=1e-6)
    # label = Ref($close, -2) / Ref($close, -1) - 1
    c = provider._fields["close"]
    d, inst = raw.index[0]
    pos = c.index.get_loc(d)
    expected = c[inst].iloc[pos + 2] / c[inst].iloc[pos + 1] - 1
    assert raw[("label", "LABEL0")].iloc[0] == pytest.approx(expected, rel=1e-5)


def test_alpha158_label_override_and_vwap(provider) -> None:
    h = alpha158(label=(["Ref($close, -1)/$close - 1", "Ref($close, -5)/$close - 1"], ["LABEL0", "LABEL1"]))
    assert h.get_cols("label") == ["LABEL0", "LABEL1"]
    assert Alpha158vwap.get_label_config(None) == (["Ref($vwap, -2)/Ref($vwap, -1) - 1"], ["LABEL0"])
    # the provider has no $vwap: VWAP0 is NaN everywhere, as with Yahoo data in qlib
    assert h.fetch(col_set="feature", data_key="raw")["VWAP0"].isna().all()


def test_feature_config_options_and_low_key_quirk() -> None:
    fields, names = Alpha158DL.get_feature_config()
    assert names == ALPHA158_NAMES and len(fields) == 158
    assert fields[names.index("MIN5")] == "Min($low, 5)/$close"
    # "LOW" selects MIN; "MIN" is not a key
    _, n1 = Alpha158DL.get_feature_config({"rolling": {"windows": [5], "include": ["LOW", "MA"]}})
    assert n1 == ["MA5", "MIN5"]
    _, n2 = Alpha158DL.get_feature_config({"rolling": {"windows": [5], "exclude": ["MIN"]}})
    assert "MIN5" in n2 and len(n2) == 29
    _, n3 = Alpha158DL.get_feature_config({"rolling": {"windows": [5], "exclude": ["LOW"]}})
    assert "MIN5" not in n3 and len(n3) == 28
    f4, n4 = Alpha158DL.get_feature_config({"price": {}, "volume": {"windows": [0, 2]}})
    prices = [f"{f}{d}" for f in ("OPEN", "HIGH", "LOW", "CLOSE", "VWAP") for d in range(5)]
    assert n4 == [*prices, "VOLUME0", "VOLUME2"]
    assert f4[1] == "Ref($open, 1)/$close" and f4[-1] == "Ref($volume, 2)/($volume+1e-12)"
    f360, n360 = Alpha360DL.get_feature_config()
    assert len(n360) == 360 and n360[:2] == ["CLOSE59", "CLOSE58"] and n360[59] == "CLOSE0"
    assert n360[60] == "OPEN59" and n360[-1] == "VOLUME0" and f360[-1] == "$volume/($volume+1e-12)"
    assert f360[0] == "Ref($close, 59)/$close"


def test_alpha360_defaults_need_fit_window(provider) -> None:
    with pytest.raises(ConfigError, match="fit_start_time"):
        Alpha360(instruments="mkt", start_time="2020-03-02", end_time="2020-04-30", cache=False)
    h = Alpha360(instruments="mkt", start_time="2020-03-02", end_time="2020-04-30", fit_start_time="2020-03-02",
                 fit_end_time="2020-03-31", cache=False)
    assert [type(p).__name__ for p in h.infer_processors] == ["ProcessInf", "ZScoreNorm", "Fillna"]
    assert h.infer_processors[1].fit_start_time == "2020-03-02"
    infer = h.fetch(col_set="__raw")
    assert infer.shape[1] == 361 and not infer.isna().any().any()
    raw = h.fetch(col_set="__raw", data_key="raw")
    fit = raw.loc["2020-03-02":"2020-03-31"].replace([np.inf, -np.inf], np.nan).to_numpy()
    j = list(raw.columns).index(("feature", "HIGH3"))
    mu, sd = np.nanmean(fit[:, j]), np.nanstd(fit[:, j])
    x = raw.iloc[:, j].replace([np.inf, -np.inf], np.nan).to_numpy()
    ok = np.isfinite(x)
    np.testing.assert_allclose(infer.iloc[:, j].to_numpy()[ok], ((x - mu) / sd)[ok], rtol=1e-4, atol=1e-5)


def test_check_transform_proc_injects_fit_window() -> None:
    procs = check_transform_proc(
        [{"class": "ZScoreNorm", "module_path": "qlib.data.dataset.processor",
          "kwargs": {"fit_start_time": "1999-01-01", "fit_end_time": "1999-12-31"}},
         "Fillna", {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}, DropnaLabel()],
        "2020-01-01", "2020-02-01",
    )
    assert procs[0] == {"class": "ZScoreNorm", "module_path": "qlib.data.dataset.processor",
                        "kwargs": {"fit_start_time": "2020-01-01", "fit_end_time": "2020-02-01"}}
    assert procs[1] == {"class": "Fillna", "kwargs": {}}
    assert procs[2] == {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}
    assert isinstance(procs[3], DropnaLabel)


def static_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2021-01-04", periods=10)
    idx = pd.MultiIndex.from_product([dates, ["A", "B", "C", "D"]], names=["datetime", "instrument"])
    v = rng.normal(size=(len(idx), 3)).astype("float32")
    v[::7, 2] = np.nan
    v[::5, 0] = np.nan
    cols = pd.MultiIndex.from_tuples([("feature", "f1"), ("feature", "f2"), ("label", "y")])
    return pd.DataFrame(v, index=idx, columns=cols)


def test_append_vs_independent() -> None:
    df = static_frame()
    kw = dict(data_loader=StaticDataLoader(df), infer_processors=[Fillna(fields_group="feature", fill_value=9)],
              learn_processors=[DropnaLabel()])
    app = DataHandlerLP(process_type="append", **kw)
    ind = DataHandlerLP(process_type="independent", **kw)
    assert app.fetch(col_set="feature", data_key="learn").notna().all().all()  # learn = learn_procs(infer)
    assert ind.fetch(col_set="feature", data_key="learn").isna().any().any()  # learn = learn_procs(raw)
    assert (app.fetch(col_set="feature", data_key="infer") == 9).any().any()
    assert app.fetch(data_key="raw").isna().any().any()  # raw untouched
    with pytest.raises(ConfigError, match="process_type"):
        DataHandlerLP(process_type="bogus", **kw)
    with pytest.raises(ConfigError, match="inference"):
        DataHandlerLP(data_loader=StaticDataLoader(df), infer_processors=["DropnaLabel"])


def test_fit_seq_vs_fit_ind_vs_load_state() -> None:
    df = static_frame()

    def make():
        return DataHandlerLP(
            data_loader=StaticDataLoader(df), init_data=False,
            shared_processors=[ZScoreNorm(fit_start_time=None, fit_end_time=None, fields_group="feature"),
                               ZScoreNorm(fit_start_time=None, fit_end_time=None, fields_group="feature")],
        )

    seq = make()
    seq.setup_data(init_type="fit_seq")
    ind = make()
    ind.setup_data(init_type="fit_ind")
    x = df["feature"].to_numpy()
    z = (x - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0)
    # fit_seq: the 2nd processor is fitted on standardised data -> identity
    np.testing.assert_allclose(seq.fetch(col_set="feature").to_numpy(), z, rtol=1e-4, atol=1e-5)
    # fit_ind: both fitted on raw -> standardised twice with the raw statistics
    z2 = (z - np.nanmean(x, axis=0)) / np.nanstd(x, axis=0)
    np.testing.assert_allclose(ind.fetch(col_set="feature").to_numpy(), z2, rtol=1e-4, atol=1e-5)
    # load_state: reuse the fitted processors on new data without refitting
    ls = make()
    ls.shared_processors = seq.shared_processors
    ls.setup_data(init_type="load_state")
    np.testing.assert_allclose(ls.fetch(col_set="feature").to_numpy(), z, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="init_type"):
        make().setup_data(init_type="nope")


def test_fetch_selectors_col_sets_and_squeeze() -> None:
    df = static_frame()
    h = DataHandlerLP(data_loader=StaticDataLoader(df), learn_processors=[DropnaLabel(), CSZScoreNorm("label")])
    # inclusive slicing with non-trading-day bounds (Saturday .. Sunday)
    part = h.fetch(("2021-01-09", "2021-01-10"))
    assert len(part) == 0
    part = h.fetch(("2021-01-02", "2021-01-05"))
    assert sorted(set(part.index.get_level_values(0))) == [pd.Timestamp("2021-01-04"), pd.Timestamp("2021-01-05")]
    one = h.fetch(pd.Timestamp("2021-01-05"))
    assert one.index.nlevels == 2 and len(one) == 4
    sq = h.fetch("2021-01-05", col_set="label", squeeze=True)
    assert isinstance(sq, pd.Series) and list(sq.index) == ["A", "B", "C", "D"]
    by_inst = h.fetch(["B", "C"], level="instrument", data_key="raw")
    assert set(by_inst.index.get_level_values(1)) == {"B", "C"} and len(by_inst) == 20
    assert list(h.fetch(col_set="__all").columns) == ["f1", "f2", "y"]
    assert list(h.fetch(col_set="feature").columns) == ["f1", "f2"]
    assert h.fetch(col_set=["feature", "label"]).columns.nlevels == 2
    assert h.fetch(col_set=["label"]).columns.tolist() == [("label", "y")]
    assert len(h.fetch(data_key="learn")) == int(df[("label", "y")].notna().sum())
    assert h.fetch(slice(None, "2021-01-05"), proc_func=lambda d: d * 2).iloc[0, 0] == pytest.approx(
        2 * float(df.iloc[0, 0]), nan_ok=True
    )
    with pytest.raises(DataError, match="column group"):
        h.fetch(col_set="nope")
    with pytest.raises(ConfigError, match="data_key"):
        h.fetch(data_key="train")
    sel = h.get_range_selector("2021-01-08", 3)
    assert sel.start == pd.Timestamp("2021-01-06")
    assert len(list(h.get_range_iterator(periods=3))) == 7


def test_drop_raw_and_plain_datahandler() -> None:
    df = static_frame()
    h = DataHandlerLP(data_loader=StaticDataLoader(df), drop_raw=True, infer_processors=[Fillna()])
    with pytest.raises(DataError, match="drop_raw"):
        h.fetch(data_key="raw")
    assert h.fetch().notna().all().all()
    plain = DataHandler(data_loader={"class": "StaticDataLoader", "module_path": "qlib.data.dataset.loader",
                                     "kwargs": {"config": df}}, start_time="2021-01-05", end_time="2021-01-06")
    assert len(plain.fetch()) == 8
    with pytest.raises(ConfigError, match="data_loader"):
        DataHandler()


def test_loader_instruments_none_and_static_sources(provider, tmp_path) -> None:
    loader = QlibDataLoader(config={"feature": (["$close"], ["C"]), "label": ["Ref($close, -1)"]})
    with pytest.warns(UserWarning, match="instruments"):
        df = loader.load(None, "2020-01-01", "2020-01-10")
    assert df.columns.tolist() == [("feature", "C"), ("label", "Ref($close, -1)")]
    assert set(df.index.get_level_values(1)) == set(provider.instruments("all"))
    swapped = QlibDataLoader(config=(["$close"], ["C"]), swap_level=False).load("mkt", "2020-01-01", "2020-01-10")
    assert swapped.index.names == ["instrument", "datetime"] and swapped.columns.tolist() == ["C"]
    frame = static_frame()
    path = tmp_path / "f.parquet"
    frame.to_parquet(path)
    assert StaticDataLoader(str(path)).load(["A"], "2021-01-05", "2021-01-06").shape == (2, 3)
    grouped = StaticDataLoader({"feature": frame["feature"], "label": frame["label"]}).load()
    pd.testing.assert_frame_equal(grouped, frame)
    with pytest.raises(DataError, match="not found"):
        StaticDataLoader(str(tmp_path / "missing.parquet")).load()
    with pytest.raises(ConfigError, match="names"):
        QlibDataLoader(config={"feature": (["$close", "$open"], ["C"])})


def test_time_range_filter_as_inst_processor(provider) -> None:
    flt = {"class": "TimeRangeFlt", "module_path": "qlib.data.dataset.processor",
           "kwargs": {"start_time": "2020-02-01", "end_time": "2020-04-30"}}
    loader = QlibDataLoader(config={"feature": (["$close"], ["C"])}, inst_processors=[flt])
    df = loader.load("mkt", "2020-02-03", "2020-04-30")
    # start aligned to the first trading day 2020-02-03; S05 joins the market on 2020-02-11: dropped, as in qlib
    assert sorted(set(df.index.get_level_values("instrument"))) == ["S00", "S01", "S02", "S03", "S04"]
    late = QlibDataLoader(config={"feature": (["$close"], ["C"])},
                          inst_processors={"feature": [{**flt, "kwargs": {"start_time": "2020-03-02"}}]})
    assert "S05" in set(late.load("mkt", "2020-02-03", "2020-04-30").index.get_level_values("instrument"))
