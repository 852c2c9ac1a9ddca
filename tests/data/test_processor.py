"""Processor formulas against hand/numpy/pandas references (qlib's definitions, ddof details included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import processor as P
from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.utils import init_instance_by_config


def make_frame(seed: int = 0, n_dates: int = 6, n_inst: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_dates)
    insts = [f"S{i}" for i in range(n_inst)]
    idx = pd.MultiIndex.from_product([dates, insts], names=["datetime", "instrument"])
    v = rng.normal(size=(len(idx), 4)).astype("float32")
    v[rng.random(v.shape) < 0.15] = np.nan
    v[:, 2] = np.round(v[:, 2])  # ties for ranks
    cols = pd.MultiIndex.from_tuples([("feature", "A"), ("feature", "B"), ("feature", "C"), ("label", "LABEL0")])
    df = pd.DataFrame(v, index=idx, columns=cols)
    return df.iloc[rng.random(len(df)) > 0.1]  # ragged cross-sections


def per_date(df: pd.DataFrame, func) -> pd.DataFrame:
    """Reference: apply ``func`` to each date's sub-frame (the slow qlib way)."""
    return df.groupby(level="datetime", group_keys=False).apply(func)


def assert_frame_close(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-6) -> None:
    assert a.index.equals(b.index)
    assert list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a.to_numpy(np.float64), b.to_numpy(np.float64), rtol=rtol, atol=1e-6)


def test_dropna_label_and_group() -> None:
    df = make_frame()
    out = P.DropnaLabel()(df)
    assert out[("label", "LABEL0")].notna().all()
    assert len(out) == int(df[("label", "LABEL0")].notna().sum())
    assert not P.DropnaLabel().is_for_infer()
    feat = P.DropnaProcessor(fields_group="feature")(df)
    assert len(feat) == int(df["feature"].notna().all(axis=1).sum())
    assert P.DropnaFeature()(df).equals(feat)


def test_process_inf_uses_date_mean_of_non_inf_values() -> None:
    df = make_frame().copy()
    df.iloc[0, 0] = np.inf
    df.iloc[1, 0] = -np.inf
    d1 = df.index[10][0]
    rows_d1 = np.flatnonzero(df.index.get_level_values(0) == d1)
    df.iloc[rows_d1, 1] = np.inf  # a whole cross-section of inf -> NaN
    out = P.ProcessInf()(df)
    d0_vals = df.xs(df.index[0][0], level="datetime")[("feature", "A")]
    expected = d0_vals[~np.isinf(d0_vals)].mean()
    assert out.iloc[0, 0] == pytest.approx(expected, rel=1e-6)
    assert out.iloc[1, 0] == pytest.approx(expected, rel=1e-6)
    assert out.iloc[rows_d1, 1].isna().all()
    assert not np.isinf(out.to_numpy()).any()
    assert np.isinf(df.iloc[0, 0])  # input untouched
    clean = make_frame()
    assert P.ProcessInf()(clean) is clean  # nothing to do -> same frame


def test_fillna_whole_frame_and_group() -> None:
    df = make_frame()
    out = P.Fillna()(df)
    assert not out.isna().any().any()
    assert (out.to_numpy()[df.isna().to_numpy()] == 0).all()
    g = P.Fillna(fields_group="feature", fill_value=-1)(df)
    assert (g["feature"].to_numpy()[df["feature"].isna().to_numpy()] == -1).all()
    assert g[("label", "LABEL0")].isna().sum() == df[("label", "LABEL0")].isna().sum()


def test_zscore_norm_fit_window_ddof0_and_constant_columns() -> None:
    df = make_frame().copy()
    df[("feature", "C")] = np.float32(2.5)  # constant -> passes through
    # fit window bounds are not trading days (Saturday .. Sunday): inclusive date slicing
    p = P.ZScoreNorm(fit_start_time="2019-12-28", fit_end_time="2020-01-05")
    p.fit(df)
    fit_rows = df.loc[pd.Timestamp("2020-01-01") : pd.Timestamp("2020-01-03")].to_numpy()
    mean, std = np.nanmean(fit_rows, axis=0), np.nanstd(fit_rows, axis=0)  # ddof = 0
    out = p.transform(df)
    x = df.to_numpy()
    for j in (0, 1, 3):
        np.testing.assert_allclose(out.to_numpy()[:, j], (x[:, j] - mean[j]) / std[j], rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(out[("feature", "C")].to_numpy(), x[:, 2])
    assert out.dtypes.eq(np.float32).all()


def test_zscore_norm_group_only_and_errors() -> None:
    df = make_frame()
    p = P.ZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-01-08", fields_group="feature")
    p.fit(df)
    out = p(df)
    np.testing.assert_array_equal(out[("label", "LABEL0")].to_numpy(), df[("label", "LABEL0")].to_numpy())
    with pytest.raises(DataError, match="fit window"):
        P.ZScoreNorm(fit_start_time="2021-01-01", fit_end_time="2021-02-01").fit(df)
    with pytest.raises(DataError, match="before being fitted"):
        P.ZScoreNorm(fit_start_time=None, fit_end_time=None)(df)


def test_robust_zscore_norm() -> None:
    df = make_frame()
    p = P.RobustZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-01-06", fields_group="feature")
    p.fit(df)
    x = df.loc[:"2020-01-06", "feature"].to_numpy()
    med = np.nanmedian(x, axis=0)
    mad = (np.nanmedian(np.abs(x - med), axis=0) + 1e-12) * 1.4826
    y = np.clip((df["feature"].to_numpy() - med) / mad, -3, 3)
    np.testing.assert_allclose(p(df)["feature"].to_numpy(), y, rtol=1e-5, equal_nan=True)
    q = P.RobustZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-01-06", clip_outlier=False)
    big = df.copy()
    big.iloc[3, 0] = 1e4
    q.fit(df)
    assert q(big).iloc[3, 0] > 3  # not clipped


def test_minmax_norm() -> None:
    df = make_frame().copy()
    df[("feature", "C")] = np.float32(1.0)
    p = P.MinMaxNorm(fit_start_time=None, fit_end_time=None, fields_group="feature")
    p.fit(df)
    x = df["feature"].to_numpy()
    lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
    out = p(df)["feature"].to_numpy()
    np.testing.assert_allclose(out[:, :2], (x[:, :2] - lo[:2]) / (hi[:2] - lo[:2]), rtol=1e-5, equal_nan=True)
    np.testing.assert_array_equal(out[:, 2], x[:, 2])  # constant: (x - 0) / 1


def test_cs_zscore_ddof1_matches_pandas_per_date() -> None:
    df = make_frame()
    out = P.CSZScoreNorm(fields_group="label")(df)
    ref = per_date(df[["label"]], lambda g: (g - g.mean()) / g.std(ddof=1))
    assert_frame_close(out[["label"]], ref)
    np.testing.assert_array_equal(out["feature"].to_numpy(), df["feature"].to_numpy())
    # all columns (fields_group=None) and a list of groups
    all_cols = P.CSZScoreNorm()(df)
    assert_frame_close(all_cols, per_date(df, lambda g: (g - g.mean()) / g.std()))
    both = P.CSZScoreNorm(fields_group=["feature", "label"])(df)
    assert_frame_close(both, all_cols)


def test_cs_zscore_single_stock_date_and_constant_section() -> None:
    idx = pd.MultiIndex.from_tuples(
        [(pd.Timestamp("2020-01-01"), "A"), (pd.Timestamp("2020-01-02"), "A"), (pd.Timestamp("2020-01-02"), "B")],
        names=["datetime", "instrument"],
    )
    df = pd.DataFrame({("label", "L"): np.array([1.0, 2.0, 2.0], "float32")}, index=idx)
    out = P.CSZScoreNorm(fields_group="label")(df).to_numpy()[:, 0]
    assert np.isnan(out).all()  # one value: std NaN; two equal values: 0/0


def test_cs_zscore_robust() -> None:
    df = make_frame()

    def robust(g: pd.DataFrame) -> pd.DataFrame:
        x = g - g.median()
        mad = x.abs().median()
        return np.clip(x / mad / 1.4826, -3, 3)

    out = P.CSZScoreNorm(fields_group="feature", method="robust").transform(df)
    assert_frame_close(out[["feature"]], per_date(df[["feature"]], robust), rtol=1e-5)
    with pytest.raises(ConfigError, match="method"):
        P.CSZScoreNorm(method="bogus")


def test_cs_rank_norm_average_ties_pct_over_valid() -> None:
    df = make_frame()
    out = P.CSRankNorm(fields_group="feature")(df)
    ref = (df[["feature"]].groupby(level="datetime").rank(pct=True) - 0.5) * 3.46
    assert_frame_close(out[["feature"]], ref.astype("float32"))
    assert out.dtypes.eq(np.float32).all()
    # hand check: values [1, 2, 2, NaN] -> ranks 1, 2.5, 2.5 over 3 valid -> pct 1/3, 5/6, 5/6
    idx = pd.MultiIndex.from_product([[pd.Timestamp("2020-01-01")], list("abcd")], names=["datetime", "instrument"])
    small = pd.DataFrame({("feature", "x"): np.array([1, 2, 2, np.nan], "float32")}, index=idx)
    got = P.CSRankNorm(fields_group="feature")(small).to_numpy()[:, 0]
    np.testing.assert_allclose(got[:3], (np.array([1 / 3, 5 / 6, 5 / 6]) - 0.5) * 3.46, rtol=1e-6)
    assert np.isnan(got[3])


def test_cs_zfillna_and_tanh_and_columns() -> None:
    df = make_frame()
    out = P.CSZFillna(fields_group="feature").transform(df)
    ref = per_date(df[["feature"]], lambda g: g.fillna(g.mean()))
    assert_frame_close(out[["feature"]], ref)
    t = P.TanhProcess().transform(df)
    np.testing.assert_allclose(t["feature"].to_numpy(), np.tanh(df["feature"].to_numpy() - 1), rtol=1e-6)
    np.testing.assert_array_equal(t["label"].to_numpy(), df["label"].to_numpy())
    dropped = P.DropCol(col_list=["B", "LABEL0"])(df)
    assert list(dropped.columns) == [("feature", "A"), ("feature", "C")]
    kept = P.FilterCol(fields_group="feature", col_list=["C"])(df)
    assert list(kept.columns) == [("feature", "C"), ("label", "LABEL0")]


def test_unsorted_index_and_input_untouched() -> None:
    df = make_frame()
    before = df.copy()
    shuffled = df.sample(frac=1.0, random_state=3)
    out = P.CSZScoreNorm(fields_group="feature").transform(shuffled)
    assert out.index.equals(shuffled.index)
    assert_frame_close(out.sort_index(), P.CSZScoreNorm(fields_group="feature").transform(df))
    for p in (P.CSRankNorm(), P.CSZFillna(), P.Fillna(), P.ProcessInf(), P.TanhProcess()):
        p.transform(df)  # what handlers call: the input stays as it was
    pd.testing.assert_frame_equal(df, before)


def test_call_changes_the_input_in_place_like_qlib() -> None:
    # qlib's processors write into the frame they get and return it (readonly() False); row/column
    # filters return a new frame and leave the input alone (readonly() True)
    for p in (P.CSRankNorm(), P.CSZFillna(), P.Fillna(), P.TanhProcess(), P.CSZScoreNorm()):
        df = make_frame()
        want = p.transform(df)
        assert p(df) is df
        assert not p.readonly()
        assert_frame_close(df, want)
    df = make_frame()
    before = df.copy()
    for p in (P.DropnaLabel(), P.DropCol(col_list=["B"]), P.FilterCol(fields_group="feature", col_list=["C"])):
        assert p.readonly()
        assert p(df) is not df
    pd.testing.assert_frame_equal(df, before)


def test_processors_from_qlib_configs() -> None:
    p = init_instance_by_config(
        {"class": "CSZScoreNorm", "module_path": "qlib.data.dataset.processor", "kwargs": {"fields_group": "label"}}
    )
    assert isinstance(p, P.CSZScoreNorm)
    assert P.accepts_fit_window(P.ZScoreNorm) and not P.accepts_fit_window(P.CSZScoreNorm)
    z = P.ZScoreNorm(fit_start_time="2020-01-01", fit_end_time="2020-01-02")
    z.config(fit_start_time="2020-02-01", fit_end_time="2020-03-01")
    assert (z.fit_start_time, z.fit_end_time) == ("2020-02-01", "2020-03-01")
    with pytest.raises(DataError, match="column group"):
        P.Fillna(fields_group="nope")(make_frame())

def test_take_rows_threaded_equals_iloc(monkeypatch) -> None:
    """The threaded row take (large float frames) builds exactly ``df.iloc[rows]``."""
    from qlib_prefect.data import processor

    rng = np.random.default_rng(3)
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=60), [f"S{i}" for i in range(7)]],
                                     names=["datetime", "instrument"])
    feat = pd.DataFrame(rng.normal(size=(len(idx), 5)).astype(np.float32), index=idx, columns=list("abcde"))
    label = pd.DataFrame({"y": rng.normal(size=len(idx)).astype(np.float32)}, index=idx)
    df = pd.concat({"feature": feat, "label": label}, axis=1)  # two blocks, as a loader builds them
    rows = np.flatnonzero(rng.random(len(idx)) > 0.3)
    monkeypatch.setattr(processor, "_THREADED_TAKE_CELLS", 1)
    got = processor.take_rows(df, rows)
    pd.testing.assert_frame_equal(got, df.iloc[rows])
    assert got.to_numpy().flags.f_contiguous
    mixed = df.assign(extra=np.arange(len(idx)))  # mixed dtypes: plain iloc
    pd.testing.assert_frame_equal(processor.take_rows(mixed, rows), mixed.iloc[rows])
