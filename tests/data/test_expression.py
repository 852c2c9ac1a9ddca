"""Parser, evaluator and compute_features; parity with the real qlib 0.9.7 on golden files.

The goldens (tests/golden/expressions) come from ``tools/make_expression_goldens.py`` run with the
real qlib on the small quirky data directory stored next to them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.data.expression import Evaluator, compute_features, parse
from qlib_prefect.data.expression.engine import window_size
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.errors import DataError, ExpressionError

GOLD = Path(__file__).resolve().parents[1] / "golden" / "expressions"
META = json.loads((GOLD / "meta.json").read_text())
#: parity criterion: |ours - qlib| <= RTOL * |qlib| + ATOL, NaN at the same cells
RTOL, ATOL = 1e-5, 1e-6


# ------------------------------------------------------------------ parser
@pytest.mark.parametrize(
    ("text", "canon"),
    [
        ("Mean($close, 5)/$close", "Div(Mean($close,5),$close)"),
        ("$close>Ref($close, 1)", "Gt($close,Ref($close,1))"),
        ("($a > 1) & ($b <= 2) | Not($c != 3)", "Or(And(Gt($a,1),Le($b,2)),Not(Ne($c,3)))"),
        ("Ref($close, -2)/Ref($close, -1) - 1", "Sub(Div(Ref($close,-2),Ref($close,-1)),1)"),
        ("$close ** 2 + 1e-12", "Add(Power($close,2),1e-12)"),
        ("-$close", "Mul($close,-1)"),
        ("$close * (2 - 1)", "Mul($close,1)"),
        ("Quantile($close, 5, 0.8)", "Quantile($close,5,0.8)"),
        ("Mask($close, 'SH000300')", "Mask($close,'SH000300')"),
        ("$$roewa_q", "$$roewa_q"),
    ],
)
def test_parse_canonical(text: str, canon: str) -> None:
    assert str(parse(text)) == canon


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Mean($close, 5", "syntax error"),
        ("Foo($close, 5)", "unknown operator 'Foo'"),
        ("Mean($close)", "takes 2 argument"),
        ("Mean($close, $open)", "needs a number"),
        ("Mean($close, 2.5)", "integer or in \\(0, 1\\)"),
        ("Ref($close, 0.5)", "integer window"),
        ("__import__('os').system('x')", "only Name"),
        ("open('/etc/passwd')", "unknown operator 'open'"),
        ("$close.real", "unsupported syntax"),
        ("1 < $close < 2", "chained"),
        ("3 + 4", "at least one \\$field"),
        ("$", "must be followed"),
        ("Mean(5, 5)", "needs an expression"),
    ],
)
def test_parse_errors_name_the_expression(text: str, match: str) -> None:
    with pytest.raises(ExpressionError, match=match) as ei:
        parse(text)
    assert repr(text) in str(ei.value)


def test_window_size_like_qlib() -> None:
    assert window_size(parse("$close")) == (0, 0)
    assert window_size(parse("Mean($close, 5)")) == (4, 0)
    assert window_size(parse("Ref($close, -2)/Ref($close, -1) - 1")) == (0, 2)
    assert window_size(parse("Corr($close/Ref($close,1), Log($volume), 10)")) == (10, 0)
    assert window_size(parse("Mean(Ref($close, 1), 0)")) == (1, 0)
    assert window_size(parse("Delta($close, 3)")) == (2, 0)  # qlib treats Delta as Rolling(N)


# ------------------------------------------------------------------ evaluator
def _provider() -> MemoryProvider:
    idx = pd.bdate_range("2021-01-04", periods=6)
    close = pd.DataFrame({"A": [1.0, 2, 3, 4, 5, 6], "B": [np.nan, np.nan, 2, 2, 3, 4]}, index=idx)
    return MemoryProvider({"close": close, "open": close + 0.5}, markets={"m": {"A": [(idx[1], idx[3])]}})


class _Fields(MemoryProvider):
    def fields(self) -> set[str]:
        return {"close", "open"}


def test_unknown_field_lists_available_fields_standard_missing_is_nan() -> None:
    p = _provider()
    fp = _Fields({"close": pd.DataFrame({"A": [1.0, 2.0]}, index=p.calendar()[:2])})
    ev = Evaluator(fp, ["A"])
    with pytest.raises(ExpressionError, match=r"unknown field \$foo; available fields: \$close, \$open") as ei:
        ev.evaluate("Mean($foo, 2)")
    assert "'Mean($foo, 2)'" in str(ei.value)
    assert np.isnan(ev.evaluate("$vwap / $close")).all()


def test_evaluate_memoises_shared_subexpressions() -> None:
    ev = Evaluator(_provider(), ["A", "B"])
    ev.evaluate("Mean($close, 3) / $close")
    assert "Mean($close,3)" in ev._memo
    first = ev._memo["Mean($close,3)"]
    ev.evaluate("Mean($close, 3) - 1")
    assert ev._memo["Mean($close,3)"] is first


def test_evaluate_many_frees_intermediates_and_matches_evaluate() -> None:
    exprs = ["Mean($close, 3) / $close", "Std($close, 3)", "Corr($close, $open, 3)", "$close > Ref($close, 1)"]
    ev = Evaluator(_provider(), ["A", "B"])
    outs = ev.evaluate_many(exprs)
    assert not ev._memo  # nothing kept after the batch
    ref = Evaluator(_provider(), ["A", "B"])
    for e, o in zip(exprs, outs):
        np.testing.assert_array_equal(o, ref.evaluate(e))


def test_compute_features_layout_membership_and_window() -> None:
    p = _provider()
    cal = p.calendar()
    df = compute_features(p, "m", ["$close", "Ref($close, 1)"], ["C", "R"], None, None)
    assert list(df.columns) == ["C", "R"]
    assert df.index.names == ["datetime", "instrument"]
    assert list(df.index) == [(cal[1], "A"), (cal[2], "A"), (cal[3], "A")]
    assert df["R"].tolist() == [1.0, 2.0, 3.0]  # history before membership is used
    assert all(df.dtypes == np.float32)
    # list of codes: every stored row, B starts late; start/end aligned to the calendar
    df2 = compute_features(p, ["B", "A"], ["$close"], None, "2021-01-05 12:00", "2021-01-10")
    assert list(df2.index.get_level_values("datetime").unique()) == list(cal[2:5])
    assert df2.index.is_monotonic_increasing
    assert df2.loc[(cal[2], "B"), "$close"] == 2.0
    # {code: spans}
    df3 = compute_features(p, {"B": [(cal[4], cal[5])]}, ["$close"], None, None, None)
    assert df3["$close"].tolist() == [3.0, 4.0]
    # no rows -> empty frame with the columns
    df4 = compute_features(p, "m", ["$close"], None, cal[5], cal[5])
    assert df4.empty and list(df4.columns) == ["$close"]


def test_compute_features_emulates_qlib_loaded_window() -> None:
    """Expanding windows / Ref(x, 0) start at qlib's loaded start (query start - lft)."""
    p = _provider()
    cal = p.calendar()
    df = compute_features(p, ["A"], ["Ref($close, 0)", "Sum($close, 0)", "Sum(Ref($close, 1), 0)"], None, cal[3], None)
    assert df.iloc[0].tolist() == [4.0, 4.0, 3.0]
    assert df.iloc[-1].tolist() == [4.0, 15.0, 12.0]


# ------------------------------------------------------------------ parity with the real qlib
def _parity(name: str) -> tuple[int, int, list[str]]:
    info = META["files"][name]
    gold = pd.read_parquet(GOLD / f"{name}.parquet")
    p = LocalProvider(GOLD / "data")
    inst = p.instruments(info["market"])
    ours = compute_features(p, inst, info["fields"], list(gold.columns), info.get("start"), info.get("end"))
    ours = ours.swaplevel(0, 1).sort_index()
    assert ours.index.equals(gold.index), f"{name}: row index differs from qlib's"
    g = gold.to_numpy(np.float64)
    o = ours.to_numpy(np.float64)
    gn, on = np.isnan(g), np.isnan(o)
    with np.errstate(invalid="ignore"):
        ok = (gn == on) & (gn | (np.abs(o - g) <= RTOL * np.abs(g) + ATOL) | (o == g))
    bad_cols = [info["fields"][j] for j in np.flatnonzero(~ok.all(axis=0))]
    assert (gn == on).all(), f"{name}: NaN positions differ in {bad_cols}"
    return int(ok.sum()), ok.size, bad_cols


@pytest.mark.parametrize("name", sorted(META["files"]))
def test_parity_with_real_qlib(name: str) -> None:
    good, total, bad_cols = _parity(name)
    assert good / total >= 0.9999, f"{name}: {total - good} of {total} cells off: {bad_cols}"


def test_compute_features_market_config_uses_the_given_provider() -> None:
    """A qlib instruments config with a filter_pipe is resolved (filters evaluate expressions on the given
    provider) before the engine computes; the engine refuses an unresolved one instead of misreading it."""
    from qlib_prefect.data.filter import apply_filter_pipe

    p = LocalProvider(GOLD / "data")
    cfg = {"market": "all", "filter_pipe": [{"filter_type": "NameDFilter", "name_rule_re": "^[AG]"}]}
    df = compute_features(p, apply_filter_pipe(p.instruments(cfg["market"]), cfg["filter_pipe"], provider=p),
                          ["$close"])
    assert sorted(set(df.index.get_level_values("instrument"))) == ["AAA", "GGG"]
    assert len(df) == 180 + 12
    with pytest.raises(DataError, match="filter_pipe must be resolved"):
        compute_features(p, cfg, ["$close"])


@pytest.mark.parametrize("name", sorted(META["files"]))
def test_compute_features_instrument_threads_give_the_same_frame(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from qlib_prefect.data.expression import engine

    info = META["files"][name]
    p = LocalProvider(GOLD / "data")
    inst = p.instruments(info["market"])
    args = (inst, info["fields"], None, info.get("start"), info.get("end"))
    monkeypatch.setenv("QLIB_PREFECT_EXPR_THREADS", "1")
    one = compute_features(p, *args)
    monkeypatch.setenv("QLIB_PREFECT_EXPR_THREADS", "3")
    monkeypatch.setattr(engine, "_MIN_CODES_PER_THREAD", 1)
    assert engine._threads(len(inst)) == 3
    three = compute_features(p, *args)
    pd.testing.assert_frame_equal(one, three, check_exact=True)


_WINDOWED = [
    "$close", "Ref($close, 1)", "Mean(Ref($close, 1), 5) / $close", "Std($close, 20)", "Skew($close, 10)",
    "Kurt($volume, 10)", "Max($high, 30) / Min($low, 30)", "Med($close, 9)", "Mad($close, 7)",
    "Slope($close, 10)", "Rsquare($close, 10)", "Resi($close, 10)", "IdxMax($high, 10)", "IdxMin($low, 12)",
    "(IdxMax($high, 30) - IdxMin($low, 30)) / 30", "Rank($close, 20)", "Quantile($close, 20, 0.8)",
    "Corr($close, Log($volume + 1), 10)", "Cov($close, $open, 5)", "EMA($close, 10)", "WMA($close, 6)",
    "Count($close > Ref($close, 1), 20)", "Sum(Greater($close - Ref($close, 1), 0), 14)", "Delta($close, 3)",
    "Ref($close, -2) / Ref($close, -1) - 1", "Mean($close, 0)", "Sum(Ref($close, 1), 0)", "EMA($close, 0.3)",
]  # fmt: skip


def _golden_frames() -> tuple[pd.DatetimeIndex, list[str], dict[str, pd.DataFrame]]:
    local = LocalProvider(GOLD / "data")
    cal = pd.DatetimeIndex(local.calendar())
    codes = sorted(local.instruments("all"))
    frames = {}
    for f in ["open", "high", "low", "close", "volume"]:
        fd = local.load_field(f, codes)
        frames[f] = pd.DataFrame(np.asarray(fd.values, dtype=np.float64), index=cal, columns=codes)
    return cal, codes, frames


@pytest.mark.parametrize("threads", [1, 3])
def test_late_start_computes_only_the_loaded_window(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query from a late date computes only qlib's loaded window (``start - lft``), not the history before it.
    Each column equals the expression evaluated on a copy of the data that holds only the dates from
    ``start - lft`` on (qlib's semantics: the dates before are absent), read cell by cell, for rolling, nested,
    pairwise, forward-looking and expanding operators in one call (one window group per ``lft``), on data with
    NaN runs and late listings; single-threaded and in instrument blocks."""
    from qlib_prefect.data.expression import engine

    monkeypatch.setenv("QLIB_PREFECT_EXPR_THREADS", str(threads))
    monkeypatch.setattr(engine, "_MIN_CODES_PER_THREAD", 1)
    cal, codes, frames = _golden_frames()
    full = MemoryProvider(frames, calendar=cal)
    si = len(cal) * 2 // 3
    got = compute_features(full, codes, _WINDOWED, None, cal[si], None)
    assert len({window_size(parse(e))[0] for e in _WINDOWED}) > 5  # several groups of different starts
    t_pos = cal.get_indexer(got.index.get_level_values("datetime"))
    c_pos = pd.Index(codes).get_indexer(got.index.get_level_values("instrument"))
    for expr in _WINDOWED:
        lft = window_size(parse(expr))[0]
        qs = 0 if not np.isfinite(lft) else max(0, si - int(lft))
        cut = MemoryProvider({f: v.iloc[qs:] for f, v in frames.items()}, calendar=cal[qs:])
        panel = Evaluator(cut, codes).evaluate(expr)
        want = compute_features(cut, codes, [expr], None, cal[si], None)
        assert want.index.equals(got.index), expr
        col = got[expr].to_numpy()
        assert np.isfinite(col).any(), expr
        np.testing.assert_array_equal(col, panel[t_pos - qs, c_pos], err_msg=expr)
