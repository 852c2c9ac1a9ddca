"""Hand-checked semantics of each qlib operator on tiny panels (NaN runs, late listing, constants)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.data.expression import Evaluator

NAN = np.nan
IDX = pd.bdate_range("2021-01-04", periods=8)


def _ev(**cols: list[float]) -> Evaluator:
    """One field ``x`` (and ``y`` if given) per instrument column: ``A=[...]`` etc."""
    x = pd.DataFrame({k: v for k, v in cols.items() if not k.startswith("y_")}, index=IDX, dtype="float64")
    fields = {"x": x}
    ys = {k[2:]: v for k, v in cols.items() if k.startswith("y_")}
    if ys:
        fields["y"] = pd.DataFrame(ys, index=IDX, dtype="float64").reindex(columns=x.columns)
    return Evaluator(MemoryProvider(fields), list(x.columns))


def col(ev: Evaluator, expr: str, j: int = 0) -> list[float]:
    return [None if np.isnan(v) else round(float(v), 5) for v in ev.evaluate(expr)[:, j]]


A = [1.0, 3.0, 2.0, NAN, 5.0, 4.0, 4.0, 6.0]  # NaN inside the span
LATE = [NAN, NAN, NAN, 2.0, 1.0, 3.0, 3.0, 0.5]  # first stored date at position 3


def test_result_is_float32_full_calendar_nan_outside_span() -> None:
    ev = _ev(A=A, B=LATE)
    out = ev.evaluate("Ref($x, -1)")
    assert out.dtype == np.float32 and out.shape == (8, 2)
    assert col(ev, "Ref($x, -1)", 1) == [None, None, None, 1.0, 3.0, 3.0, 0.5, None]


def test_ref_shift_lookahead_and_zero() -> None:
    ev = _ev(A=A, B=LATE)
    assert col(ev, "Ref($x, 2)") == [None, None, 1.0, 3.0, 2.0, None, 5.0, 4.0]
    assert col(ev, "Ref($x, -2)") == [2.0, None, 5.0, 4.0, 4.0, 6.0, None, None]
    # N = 0: the first stored value, broadcast over the span
    assert col(ev, "Ref($x, 0)", 1) == [None, None, None, 2.0, 2.0, 2.0, 2.0, 2.0]


def test_mean_sum_skip_nan_and_absent_dates() -> None:
    ev = _ev(A=A, B=LATE)
    assert col(ev, "Mean($x, 3)") == [1.0, 2.0, 2.0, 2.5, 3.5, 4.5, 4.33333, 4.66667]
    assert col(ev, "Sum($x, 2)", 1) == [None, None, None, 2.0, 3.0, 4.0, 6.0, 3.5]
    assert col(ev, "Count($x, 3)") == [1.0, 2.0, 3.0, 2.0, 2.0, 2.0, 3.0, 3.0]


def test_std_var_ddof1_min_periods1() -> None:
    ev = _ev(A=[1.0, 2.0, 4.0, 4.0, 4.0, NAN, NAN, NAN])
    assert col(ev, "Var($x, 3)") == [None, 0.5, 2.33333, 1.33333, 0.0, None, None, None]  # ends at 4
    assert col(ev, "Std($x, 2)")[:3] == [None, 0.70711, 1.41421]


def test_max_min_delta() -> None:
    ev = _ev(A=A)
    assert col(ev, "Max($x, 3)") == [1.0, 3.0, 3.0, 3.0, 5.0, 5.0, 5.0, 6.0]
    assert col(ev, "Min($x, 2)") == [1.0, 1.0, 2.0, 2.0, 5.0, 4.0, 4.0, 4.0]
    assert col(ev, "Delta($x, 1)") == [None, 2.0, -1.0, None, None, -1.0, 0.0, 2.0]
    assert col(ev, "Delta($x, 0)") == [0.0, 2.0, 1.0, None, 4.0, 3.0, 3.0, 5.0]


def test_idxmax_idxmin_first_nan_wins_and_short_window_at_listing() -> None:
    ev = _ev(A=A, B=LATE)
    # window [1,3,2] -> 2; [3,2,NaN] -> NaN is at slot 3; [2,NaN,5] -> slot 2 (first NaN)
    assert col(ev, "IdxMax($x, 3)") == [1.0, 2.0, 2.0, 3.0, 2.0, 1.0, 1.0, 3.0]
    # ties: the oldest occurrence; [5,4,4] -> IdxMin = 2
    assert col(ev, "IdxMin($x, 3)")[6] == 2.0
    # late listing: the window is shorter (positions before the first date are absent)
    assert col(ev, "IdxMax($x, 3)", 1) == [None, None, None, 1.0, 1.0, 3.0, 2.0, 1.0]
    assert col(ev, "IdxMin($x, 3)", 1) == [None, None, None, 1.0, 2.0, 2.0, 1.0, 3.0]


def test_comparisons_with_nan_are_false_and_mean_of_bool() -> None:
    ev = _ev(A=A)
    assert col(ev, "$x > Ref($x, 1)") == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert col(ev, "$x != Ref($x, 1)")[:2] == [1.0, 1.0]  # NaN != value is True in numpy
    assert col(ev, "Mean($x > Ref($x, 1), 2)") == [0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.5]


def test_mean_of_comparison_skips_dates_before_listing() -> None:
    ev = _ev(A=A, B=LATE)
    # absent dates are not counted as False: window at the listing date has one value
    assert col(ev, "Mean($x < Ref($x, 1), 5)", 1) == [None, None, None, 0.0, 0.5, 0.33333, 0.25, 0.4]


def test_greater_less_abs_sign_log_power_if() -> None:
    ev = _ev(A=[1.0, -2.0, NAN, 4.0, 0.0, 1.0, 1.0, 1.0])
    assert col(ev, "Greater($x, 0)")[:5] == [1.0, 0.0, None, 4.0, 0.0]
    assert col(ev, "Less($x, 0)")[:5] == [0.0, -2.0, None, 0.0, 0.0]
    assert col(ev, "Abs($x)")[:3] == [1.0, 2.0, None]
    assert col(ev, "Sign($x)")[:5] == [1.0, -1.0, None, 1.0, 0.0]
    assert col(ev, "Log($x)")[3] == round(float(np.log(np.float32(4.0))), 5)
    assert col(ev, "Power($x, 2)")[:4] == [1.0, 4.0, None, 16.0]
    assert col(ev, "$x ** 2")[:2] == [1.0, 4.0]
    assert col(ev, "If($x > 0, $x, 10)")[:5] == [1.0, 10.0, 10.0, 4.0, 10.0]
    assert col(ev, "-$x")[:2] == [-1.0, 2.0]


def test_logic_ops() -> None:
    ev = _ev(A=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    assert col(ev, "And($x > 2, $x < 6)") == [0, 0, 1, 1, 1, 0, 0, 0]
    assert col(ev, "($x < 2) | ($x > 7)") == [1, 0, 0, 0, 0, 0, 0, 1]
    assert col(ev, "Not($x > 4)") == [1, 1, 1, 1, 0, 0, 0, 0]
    assert col(ev, "Eq($x, 3)") == [0, 0, 1, 0, 0, 0, 0, 0]
    assert col(ev, "Ge($x, 3) * 1 + Le($x, 3) * 1 + Lt($x, 3) * 1") == [2, 2, 2, 1, 1, 1, 1, 1]
    # numpy semantics (as in qlib): bool + bool is a logical or, not a count
    assert col(ev, "Eq($x, 3) + Ne($x, 3)") == [1] * 8


def test_slope_resi_rsquare_exact_line_and_constant_mask() -> None:
    ev = _ev(A=[1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0], B=[2.0] * 8)
    assert col(ev, "Slope($x, 4)") == [None, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert col(ev, "Resi($x, 4)")[2:] == [0.0] * 6
    assert col(ev, "Rsquare($x, 4)")[2:] == [1.0] * 6
    # constant series: rolling std is ~0 -> Rsquare masked to NaN
    assert col(ev, "Rsquare($x, 4)", 1) == [None] * 8
    assert col(ev, "Slope($x, 4)", 1)[1:] == [0.0] * 7


def test_slope_skips_nan_positions_keeping_their_x() -> None:
    ev = _ev(A=[1.0, NAN, 5.0, 7.0, NAN, NAN, NAN, NAN])
    # points (1,1), (3,5) in window of 3 -> slope 2; (2,5),(3,7) -> 2 (positions, not counts)
    assert col(ev, "Slope($x, 3)")[2:4] == [2.0, 2.0]


def test_corr_cov_pairwise_and_std_mask() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    ev = _ev(A=x, B=[3.0] * 8, y_A=[2.0, 4.0, 6.0, NAN, 10.0, 12.0, 13.0, 20.0], y_B=x)
    assert col(ev, "Corr($x, $y, 3)")[1:4] == [1.0, 1.0, 1.0]
    # position 3: pairs (2, 4), (3, 6) only (y is NaN at 3)
    assert col(ev, "Cov($x, $y, 3)")[:4] == [None, 1.0, 2.0, 1.0]
    assert col(ev, "Corr($x, $y, 3)", 1) == [None] * 8  # constant left side -> masked


def test_rank_quantile_median() -> None:
    ev = _ev(A=[3.0, 1.0, 2.0, 2.0, NAN, 5.0, 1.0, 4.0])
    assert col(ev, "Rank($x, 3)") == [1.0, 0.5, 0.66667, 0.83333, None, 1.0, 0.5, 0.66667]
    assert col(ev, "Quantile($x, 3, 0.5)")[:4] == [3.0, 2.0, 2.0, 2.0]
    assert col(ev, "Med($x, 2)")[:4] == [3.0, 2.0, 1.5, 2.0]


def test_wma_ema_and_expanding_and_ewm_alpha() -> None:
    ev = _ev(A=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], B=LATE)
    # WMA: weights 1..L / sum, then nanmean -> sum(w x)/L
    assert col(ev, "WMA($x, 3)")[:3] == [1.0, round((1 * 1 + 2 * 2) / 3 / 2, 5), round((1 + 4 + 9) / 6 / 3, 5)]
    assert col(ev, "EMA($x, 3)")[:2] == [1.0, round((0.5 * 1 + 1 * 2) / 1.5, 5)]
    assert col(ev, "Mean($x, 0)") == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    assert col(ev, "Max($x, 0)", 1) == [None, None, None, 2.0, 2.0, 3.0, 3.0, 3.0]
    assert col(ev, "Mean($x, 0.5)")[:2] == [1.0, round((0.5 * 1 + 2) / 1.5, 5)]


def test_skew_kurt_match_pandas() -> None:
    vals = [1.0, 4.0, 2.0, 8.0, 5.0, 7.0, 3.0, 9.0]
    ev = _ev(A=vals)
    s = pd.Series(vals)
    np.testing.assert_allclose(
        ev.evaluate("Skew($x, 4)")[:, 0], s.rolling(4, min_periods=1).skew().astype("float32"), equal_nan=True
    )
    np.testing.assert_allclose(
        ev.evaluate("Kurt($x, 5)")[:, 0], s.rolling(5, min_periods=1).kurt().astype("float32"), equal_nan=True
    )


def test_mad() -> None:
    ev = _ev(A=[1.0, 3.0, NAN, 7.0, 1.0, 1.0, 1.0, 1.0])
    assert col(ev, "Mad($x, 3)")[:4] == [0.0, 1.0, 1.0, 2.0]


def test_mask_and_change_instrument_read_another_code() -> None:
    ev = _ev(A=A, B=LATE)
    assert col(ev, "Mask($x, 'A')", 1) == col(ev, "$x", 0)
    assert col(ev, "ChangeInstrument('B', $x)", 0) == col(ev, "$x", 1)


@pytest.mark.parametrize(
    "expr",
    ["Skew($x, 0)", "Kurt($x, 0)", "Med($x, 0)", "Count($x, 0)", "Std($x, 0)", "Var($x, 0)", "Sum($x, 0)",
     "Min($x, 0)", "Rank($x, 0)", "Quantile($x, 0, 0.5)", "IdxMax($x, 0)", "IdxMin($x, 0)", "WMA($x, 0)",
     "EMA($x, 0)", "Mad($x, 0)", "Slope($x, 0)", "Resi($x, 0)", "Rsquare($x, 0)", "Corr($x, $x, 0)",
     "Cov($x, $x, 0)"],
)  # fmt: skip
def test_expanding_variants_equal_rolling_over_whole_history(expr: str) -> None:
    """N = 0 is the expanding window: with windows longer than the data, rolling gives the same."""
    ev = _ev(A=A, B=LATE)
    big = expr.replace(", 0", ", 50", 1) if "Quantile" not in expr else "Quantile($x, 50, 0.5)"
    got, want = ev.evaluate(expr), ev.evaluate(big)
    if expr.startswith("EMA"):
        want = ev.evaluate(expr)  # EMA(x, 50) is ewm(span=50), not the expanding formula; checked below
        a = np.array(A)
        for t in (0, 1, 4, 7):
            x = a[: t + 1]
            w = (1 - 2 / (1 + len(x))) ** np.arange(len(x))[::-1]
            assert got[t, 0] == pytest.approx(np.nansum(w / w.sum() * x), rel=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_inf_is_nan_for_pandas_rolling_but_not_for_cython_kernels() -> None:
    # x/Ref(x,1) is inf after a zero: pandas rolling (Sum, Max, IdxMax) skips it like NaN
    ev = _ev(A=[1.0, 0.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0])
    assert col(ev, "$x/Ref($x, 1)")[2] is None or np.isinf(ev.evaluate("$x/Ref($x, 1)")[2, 0])
    assert col(ev, "Sum($x/Ref($x, 1), 2)")[2:4] == [0.0, 2.0]
    assert col(ev, "Max($x/Ref($x, 1), 3)")[2:5] == [0.0, 2.0, 2.0]
    assert col(ev, "IdxMax($x/Ref($x, 1), 3)")[2:5] == [1.0, 2.0, 1.0]  # inf -> NaN -> first NaN wins
    # the Cython regression kernels see the inf
    assert col(ev, "Slope($x/Ref($x, 1), 3)")[2] is None


def test_quantiles_and_rank_bit_identical_to_pandas_with_nan_and_ties() -> None:
    rng = np.random.default_rng(3)
    vals = np.round(rng.normal(10, 2, (60, 4)), 0)
    vals[rng.random(vals.shape) < 0.15] = np.nan
    idx = pd.bdate_range("2021-01-04", periods=60)
    codes = ["A", "B", "C", "D"]
    ev = Evaluator(MemoryProvider({"x": pd.DataFrame(vals, index=idx, columns=codes)}), codes)
    got = ev.evaluate_many(["Quantile($x, 7, 0.8)", "Quantile($x, 7, 0.2)", "Rank($x, 7)", "Med($x, 7)"])
    p = MemoryProvider({"x": pd.DataFrame(vals, index=idx, columns=codes)})
    span = np.arange(60)[:, None] >= np.array([p._span[c][0] for c in codes])[None, :]
    r = pd.DataFrame(np.where(span, vals, np.nan)).rolling(7, min_periods=1)
    want = [r.quantile(0.8), r.quantile(0.2), r.rank(pct=True), r.median()]
    for g, w in zip(got, want):
        w = np.where(span & (np.arange(60)[:, None] <= 59), w.to_numpy(), np.nan).astype(np.float32)
        np.testing.assert_array_equal(g, w)


def test_rank_all_windows_one_pass_bit_identical_to_pandas() -> None:
    rng = np.random.default_rng(5)
    vals = np.round(rng.normal(10, 2, (90, 4)), 0)
    vals[rng.random(vals.shape) < 0.15] = np.nan
    vals[:30, 1] = np.nan  # late listing
    vals[:, 2] = 7.0  # constant: every value ties
    idx = pd.bdate_range("2021-01-04", periods=90)
    codes = ["A", "B", "C", "D"]
    p = MemoryProvider({"x": pd.DataFrame(vals, index=idx, columns=codes)})
    wins = [1, 3, 7, 20, 60, 200]
    got = Evaluator(p, codes).evaluate_many([f"Rank($x, {n})" for n in wins])
    span = np.arange(90)[:, None] >= np.array([p._span[c][0] for c in codes])[None, :]
    for n, g in zip(wins, got):
        want = pd.DataFrame(np.where(span, vals, np.nan)).rolling(n, min_periods=1).rank(pct=True).to_numpy()
        np.testing.assert_array_equal(g, np.where(span, want, np.nan).astype(np.float32))


def test_idxmax_idxmin_all_windows_match_raw_window_argmax() -> None:
    rng = np.random.default_rng(7)
    vals = np.round(rng.normal(10, 2, (70, 4)), 0)  # many ties
    vals[rng.random(vals.shape) < 0.12] = np.nan
    vals[:25, 1] = np.nan  # late listing
    vals[:, 2] = 3.0
    idx = pd.bdate_range("2021-01-04", periods=70)
    codes = ["A", "B", "C", "D"]
    p = MemoryProvider({"x": pd.DataFrame(vals, index=idx, columns=codes)})
    wins = [1, 4, 9, 30, 100]
    exprs = [f"{op}($x, {n})" for op in ("IdxMax", "IdxMin") for n in wins]
    got = dict(zip(exprs, Evaluator(p, codes).evaluate_many(exprs)))
    spans = [p._span[c] for c in codes]  # (first, last) stored position
    for e, g in got.items():
        n = int(e.split(",")[1].rstrip(")"))
        fn = np.argmax if e.startswith("IdxMax") else np.argmin
        for j, (s, last) in enumerate(spans):
            for t in range(70):
                win = vals[max(s, t - n + 1) : t + 1, j]
                want = np.nan if not s <= t <= last or np.isnan(win).all() else fn(win) + 1.0  # first NaN wins
                assert (np.isnan(want) and np.isnan(g[t, j])) or g[t, j] == want, (e, t, j)
