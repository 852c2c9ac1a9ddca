"""Signal evaluation vs goldens produced by the real qlib (tools/make_signal_goldens.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.errors import DataError
from qlib_prefect.model.signal_eval import calc_ic, calc_long_short_prec, calc_long_short_return

GOLD = Path(__file__).resolve().parents[1] / "golden" / "signal"


@pytest.fixture(scope="module")
def inputs() -> pd.DataFrame:
    return pd.read_parquet(GOLD / "inputs.parquet")


def _split(df: pd.DataFrame, col: str) -> tuple[pd.Series, pd.Series]:
    return df.loc[df["has_pred"], "pred"], df.loc[df["has_label"], col]


def _gold(tag: str, name: str) -> pd.Series:
    return pd.read_parquet(GOLD / f"{tag}_{name}.parquet")["value"].rename(None)


def _close(ours: pd.Series, gold: pd.Series, rtol: float) -> None:
    assert ours.index.name == gold.index.name == "datetime"
    pd.testing.assert_index_equal(ours.index, gold.index, check_exact=True)
    a, b = ours.to_numpy(np.float64), gold.to_numpy(np.float64)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3, equal_nan=True)


def test_ic_and_rank_ic_match_qlib_to_1e12(inputs: pd.DataFrame) -> None:
    for tag, col in (("f64", "label"), ("f32", "label32")):
        ic, ric = calc_ic(*_split(inputs, col))
        _close(ic, _gold(tag, "ic"), 1e-12)
        _close(ric, _gold(tag, "ric"), 1e-12)
        assert ic.isna().sum() >= 3  # constant pred, all-NaN label, single pair days stay as NaN


def test_long_short_return_matches_qlib(inputs: pd.DataFrame) -> None:
    pred, label = _split(inputs, "label")
    ls, la = calc_long_short_return(pred, label)
    _close(ls, _gold("f64", "long_short"), 1e-12)
    _close(la, _gold("f64", "long_avg"), 1e-12)
    ls, la = calc_long_short_return(pred, label, dropna=True, quantile=0.1)
    _close(ls, _gold("f64", "long_short_dropna_q10"), 1e-12)
    _close(la, _gold("f64", "long_avg_dropna_q10"), 1e-12)
    # float32 labels: averaged in float32 like pandas does in qlib -> still identical
    ls, la = calc_long_short_return(*_split(inputs, "label32"))
    assert (ls.dtype, la.dtype) == (np.float64, np.float32)
    _close(ls, _gold("f32", "long_short"), 1e-12)
    _close(la, _gold("f32", "long_avg"), 1e-12)
    ls, la = calc_long_short_return(*_split(inputs, "label32"), dropna=True, quantile=0.1)
    _close(ls, _gold("f32", "long_short_dropna_q10"), 1e-12)
    _close(la, _gold("f32", "long_avg_dropna_q10"), 1e-12)


def test_long_short_precision_matches_qlib(inputs: pd.DataFrame) -> None:
    for tag, col in (("f64", "label"), ("f32", "label32")):
        pred, label = _split(inputs, col)
        lp, sp = calc_long_short_prec(pred, label)
        _close(lp, _gold(tag, "long_pre"), 1e-12)
        _close(sp, _gold(tag, "short_pre"), 1e-12)
    lp, sp = calc_long_short_prec(*_split(inputs, "label"), is_alpha=True)
    _close(lp, _gold("f64", "long_pre_alpha"), 1e-12)
    _close(sp, _gold("f64", "short_pre_alpha"), 1e-12)


def test_metric_formulas_match_qlib(inputs: pd.DataFrame) -> None:
    for tag, col in (("f64", "label"), ("f32", "label32")):
        expected = json.loads((GOLD / "expected.json").read_text())["metrics"][tag]
        pred, label = _split(inputs, col)
        ic, ric = calc_ic(pred, label)
        ls, la = calc_long_short_return(pred, label)
        ours = {
            "IC": ic.mean(), "ICIR": ic.mean() / ic.std(), "Rank IC": ric.mean(), "Rank ICIR": ric.mean() / ric.std(),
            "Long-Short Ann Return": ls.mean() * 252, "Long-Short Ann Sharpe": ls.mean() / ls.std() * 252**0.5,
            "Long-Avg Ann Return": la.mean() * 252, "Long-Avg Ann Sharpe": la.mean() / la.std() * 252**0.5,
        }
        for k, v in expected.items():
            assert float(ours[k]) == pytest.approx(v, rel=1e-12), (tag, k)


def test_ic_hand_computed_and_ties() -> None:
    idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03"]), list("abcd")],
                                     names=["datetime", "instrument"])
    pred = pd.Series([1.0, 2.0, 2.0, 4.0, 1.0, np.nan, 3.0, 2.0], idx)
    label = pd.Series([1.0, 2.0, 3.0, 4.0, 2.0, 5.0, 6.0, np.nan], idx)
    ic, ric = calc_ic(pred, label)
    assert ic.iloc[0] == pytest.approx(np.corrcoef([1, 2, 2, 4], [1, 2, 3, 4])[0, 1], rel=1e-14)
    assert ric.iloc[0] == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1], rel=1e-14)
    assert ic.iloc[1] == pytest.approx(1.0)  # two valid pairs
    ls, la = calc_long_short_return(pred, label, quantile=0.25)  # N = 1 per date
    assert ls.iloc[0] == pytest.approx((4.0 - 1.0) / 2)
    assert la.iloc[1] == pytest.approx((2.0 + 5.0 + 6.0) / 3)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="MultiIndex"):
        calc_ic(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0]))
    idx = pd.MultiIndex.from_product([[1], list("ab")], names=["date", "instrument"])
    with pytest.raises(DataError, match="datetime"):
        calc_ic(pd.Series([1.0, 2.0], idx), pd.Series([1.0, 2.0], idx))


def test_rank_by_group_equals_pandas_average_rank() -> None:
    from qlib_prefect.model.signal_eval import rank_by_group

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 7, 500)
    values = np.round(rng.standard_normal(500), 1)  # many ties
    expected = pd.Series(values).groupby(codes).rank(method="average").to_numpy()
    np.testing.assert_array_equal(rank_by_group(values, codes), expected)
