"""Operator-level goldens from the real qlib 0.9.7 (run with /work/qlib-venv/bin/python).

Writes a small quirky qlib-format directory to ``tests/golden/expressions/data`` and the output of
qlib's ``D.features`` for every operator (and the Alpha158 features + label) to
``tests/golden/expressions/*.parquet``; ``tests/data/test_expression.py`` compares ours against them.

Quirks in the data: a late listing, a stock whose data stops early (leaves), NaN runs inside the span
(suspensions, also on the very first stored day), a constant-price stretch and a fully constant
stock (std == 0 masking), tied highs/lows (rounded prices), one stock without a ``vwap`` file, a
very short history, and a market whose membership spans are narrower than the stored data.

Usage:
    MLFLOW_ALLOW_FILE_STORE=true /work/qlib-venv/bin/python tools/make_expression_goldens.py
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "expressions"
DATA = OUT / "data"
sys.path.insert(0, str(ROOT / "tools"))

from qlib_data_writer import write_calendar, write_feature, write_instruments  # noqa: E402

T = 180
CODES = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]

#: expressions testing each operator (qlib names and argument order)
OPERATOR_EXPRS = [
    "$close", "$open", "$vwap", "$volume", "$factor",
    "$close+$open", "$close-1", "1-$close", "$close*2", "$close/$open", "2/$close", "$close**2",
    "Add($close,$high)", "Sub($high,$low)", "Mul($close,$volume)", "Div($close,$low)", "Power($close,0.5)",
    "Abs($close-$open)", "Log($volume)", "Sign($close-$open)", "Sign($close>$open)",
    "Greater($open,$close)", "Less($open,$close)", "Greater($close-Ref($close,1),0)",
    "$close>$open", "$close>=$open", "$close<$open", "$close<=$open", "$close==$open", "$close!=$open",
    "Gt($close,Ref($close,1))", "Ge($close,Ref($close,1))", "Lt($close,Ref($close,1))",
    "Le($close,Ref($close,1))", "Eq($close,Ref($close,1))", "Ne($close,Ref($close,1))",
    "And($close>$open,$volume>Ref($volume,1))", "Or($close>$open,$volume>Ref($volume,1))",
    "($close>$open)&($high>Ref($high,1))", "($close>$open)|($high>Ref($high,1))", "Not($close>$open)",
    "If($close>$open,$close,$open)", "If($close>Ref($close,1),1,0)", "If($close>$open,$high,0)",
    "Ref($close,1)", "Ref($close,5)", "Ref($close,-1)", "Ref($close,-3)", "Ref($close,0)",
    "Ref($close>$open,1)", "Ref(Mean($close,5),2)", "Ref(Mean($close,5),-2)", "Mean(Ref($close,-1),5)",
    "Mean($close,1)", "Mean($close,5)", "Mean($close,20)", "Mean($close,0)", "Mean($close,0.5)",
    "Sum($close,5)", "Sum($volume,10)", "Sum($close,0)", "Sum($close>$open,5)",
    "Std($close,5)", "Std($close,20)", "Std($close,0)", "Std($close,2)",
    "Var($close,5)", "Var($close,0)", "Max($high,5)", "Max($high,0)", "Min($low,10)", "Min($low,0)",
    "Med($close,5)", "Med($close,10)", "Med($close,0)", "Mad($close,5)", "Mad($close,0)",
    "Skew($close,5)", "Skew($close,20)", "Skew($close,0)", "Kurt($close,5)", "Kurt($close,20)", "Kurt($close,0)",
    "Count($close,5)", "Count($close,0)", "Count($close>$open,3)",
    "Quantile($close,5,0.8)", "Quantile($close,10,0.2)", "Quantile($close,10,0.5)", "Quantile($close,0,0.3)",
    "Rank($close,5)", "Rank($close,20)", "Rank($close,0)", "Rank($high,3)",
    "Delta($close,1)", "Delta($close,5)", "Delta($close,0)",
    "Slope($close,5)", "Slope($close,20)", "Slope($close,0)", "Resi($close,5)", "Resi($close,20)",
    "Resi($close,0)", "Rsquare($close,5)", "Rsquare($close,20)", "Rsquare($close,0)", "Rsquare($volume,10)",
    "Corr($close,$volume,5)", "Corr($close,Log($volume+1),10)", "Corr($close,$open,20)",
    "Cov($close,$volume,5)", "Cov($close,$open,10)",
    "IdxMax($high,5)", "IdxMax($high,20)", "IdxMax($high,0)", "IdxMin($low,5)", "IdxMin($low,20)",
    "IdxMin($low,0)", "IdxMax($close,3)",
    "EMA($close,5)", "EMA($close,20)", "EMA($close,0.3)", "EMA($close,0)",
    "WMA($close,5)", "WMA($close,20)", "WMA($close,0)",
    "Mean($close>Ref($close,1),5)", "Std(Abs($close/Ref($close,1)-1)*$volume,10)",
    "Mask($close,'AAA')", "ChangeInstrument('BBB',Mean($close,5))",
]  # fmt: skip


def alpha158() -> tuple[list[str], list[str]]:
    """Alpha158 feature expressions (qlib's Alpha158DL default config) + LABEL0."""
    fields = [
        "($close-$open)/$open", "($high-$low)/$open", "($close-$open)/($high-$low+1e-12)",
        "($high-Greater($open, $close))/$open", "($high-Greater($open, $close))/($high-$low+1e-12)",
        "(Less($open, $close)-$low)/$open", "(Less($open, $close)-$low)/($high-$low+1e-12)",
        "(2*$close-$high-$low)/$open", "(2*$close-$high-$low)/($high-$low+1e-12)",
        "$open/$close", "$high/$close", "$low/$close", "$vwap/$close",
    ]  # fmt: skip
    names = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2", "OPEN0", "HIGH0", "LOW0",
             "VWAP0"]  # fmt: skip
    groups = [
        ("ROC", "Ref($close, %d)/$close"), ("MA", "Mean($close, %d)/$close"), ("STD", "Std($close, %d)/$close"),
        ("BETA", "Slope($close, %d)/$close"), ("RSQR", "Rsquare($close, %d)"), ("RESI", "Resi($close, %d)/$close"),
        ("MAX", "Max($high, %d)/$close"), ("MIN", "Min($low, %d)/$close"),
        ("QTLU", "Quantile($close, %d, 0.8)/$close"), ("QTLD", "Quantile($close, %d, 0.2)/$close"),
        ("RANK", "Rank($close, %d)"), ("RSV", "($close-Min($low, %d))/(Max($high, %d)-Min($low, %d)+1e-12)"),
        ("IMAX", "IdxMax($high, %d)/%d"), ("IMIN", "IdxMin($low, %d)/%d"),
        ("IMXD", "(IdxMax($high, %d)-IdxMin($low, %d))/%d"), ("CORR", "Corr($close, Log($volume+1), %d)"),
        ("CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), %d)"),
        ("CNTP", "Mean($close>Ref($close, 1), %d)"), ("CNTN", "Mean($close<Ref($close, 1), %d)"),
        ("CNTD", "Mean($close>Ref($close, 1), %d)-Mean($close<Ref($close, 1), %d)"),
        ("SUMP", "Sum(Greater($close-Ref($close, 1), 0), %d)/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)"),
        ("SUMN", "Sum(Greater(Ref($close, 1)-$close, 0), %d)/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)"),
        ("SUMD", "(Sum(Greater($close-Ref($close, 1), 0), %d)-Sum(Greater(Ref($close, 1)-$close, 0), %d))"
                 "/(Sum(Abs($close-Ref($close, 1)), %d)+1e-12)"),
        ("VMA", "Mean($volume, %d)/($volume+1e-12)"), ("VSTD", "Std($volume, %d)/($volume+1e-12)"),
        ("WVMA", "Std(Abs($close/Ref($close, 1)-1)*$volume, %d)/(Mean(Abs($close/Ref($close, 1)-1)*$volume, %d)"
                 "+1e-12)"),
        ("VSUMP", "Sum(Greater($volume-Ref($volume, 1), 0), %d)/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)"),
        ("VSUMN", "Sum(Greater(Ref($volume, 1)-$volume, 0), %d)/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)"),
        ("VSUMD", "(Sum(Greater($volume-Ref($volume, 1), 0), %d)-Sum(Greater(Ref($volume, 1)-$volume, 0), %d))"
                  "/(Sum(Abs($volume-Ref($volume, 1)), %d)+1e-12)"),
    ]  # fmt: skip
    for name, expr in groups:
        for d in (5, 10, 20, 30, 60):
            fields.append(expr.replace("%d", str(d)))
            names.append(f"{name}{d}")
    fields.append("Ref($close, -2)/Ref($close, -1) - 1")
    names.append("LABEL0")
    return fields, names


def make_data() -> dict:
    """Write the quirky data directory; return its description."""
    if DATA.exists():
        shutil.rmtree(DATA)
    rng = np.random.default_rng(20240531)
    cal = pd.bdate_range("2020-01-01", periods=T)
    write_calendar(DATA, cal)
    spans_all, spans_sub = [], []
    for k, code in enumerate(CODES):
        s, e = 0, T - 1
        close = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.02, T)))
        vol = rng.uniform(1e5, 5e6, T).round(0)
        if code == "BBB":  # late listing
            s = 70
        if code == "CCC":  # leaves: data stops early
            e = 120
        if code == "DDD":  # NaN runs (suspensions), also on the first stored day
            s = 3
        if code == "EEE":  # constant stretch
            close[40:75] = close[40]
            vol[50:60] = 1e6
        if code == "FFF":  # constant everywhere
            close[:] = 10.0
            vol[:] = 2e6
        if code == "GGG":  # very short history
            s, e = 150, 161
        if code == "HHH":  # ties: rounded prices
            close = np.round(close, 0)
        opn = close * (1 + rng.normal(0, 0.01, T))
        high = np.maximum(opn, close) * (1 + np.abs(rng.normal(0, 0.01, T)))
        low = np.minimum(opn, close) * (1 - np.abs(rng.normal(0, 0.01, T)))
        if code == "HHH":
            high, low = np.round(high, 0), np.round(low, 0)
        if code == "FFF":
            opn[:], high[:], low[:] = 10.0, 10.0, 10.0
        vwap = (opn + high + low + close) / 4
        factor = np.full(T, 1.0 + 0.1 * k)
        sl = slice(s, e + 1)
        fields = {"open": opn, "close": close, "high": high, "low": low, "volume": vol, "vwap": vwap, "factor": factor}
        if code == "DDD":
            for f in fields.values():
                f[[3, 30, 31, 32, 33, 34, 35, 36, 90, 140, 141]] = np.nan
        if code == "AAA":  # isolated NaN in one field only; a zero volume (-> inf in vol/Ref(vol))
            fields["close"][100] = np.nan
            fields["volume"][80] = 0.0
        for f, v in fields.items():
            if f == "vwap" and code == "CCC":
                continue  # no vwap file -> $vwap NaN
            write_feature(DATA, code, f, s, v[sl])
        spans_all.append((code, cal[s], cal[e]))
        if code == "AAA":
            spans_sub += [(code, cal[10], cal[60]), (code, cal[100], cal[150])]
        elif code in ("BBB", "DDD", "HHH"):
            spans_sub.append((code, cal[max(s, 30)], cal[min(e, 170)]))
    write_instruments(DATA, "all", spans_all)
    write_instruments(DATA, "sub", spans_sub)
    return {"calendar": [str(d.date()) for d in cal], "codes": CODES}


def main() -> None:
    import qlib
    from qlib.data import D

    OUT.mkdir(parents=True, exist_ok=True)
    make_data()
    qlib.init(provider_uri=str(DATA), region="us", kernels=1)
    a_fields, a_names = alpha158()
    ok = []
    for f in OPERATOR_EXPRS:  # qlib must accept each one (e.g. it has no unary minus on features)
        try:
            D.features(["AAA"], [f])
            ok.append(f)
        except Exception as e:
            print(f"qlib rejects {f!r}: {e}")
    assert ok == OPERATOR_EXPRS, "drop the expressions qlib rejects from OPERATOR_EXPRS"
    outputs = {
        "operators_all": (OPERATOR_EXPRS, D.instruments("all")),
        "alpha158_all": (a_fields, D.instruments("all")),
        "operators_sub": (OPERATOR_EXPRS[:40], D.instruments("sub")),
    }
    meta = {"qlib_version": qlib.__version__, "files": {}}
    for name, (fields, inst) in outputs.items():
        df = D.features(inst, fields)
        df.columns = [f"c{i:03d}" for i in range(len(fields))]
        df.to_parquet(OUT / f"{name}.parquet", compression="zstd")
        meta["files"][name] = {"market": inst["market"], "fields": fields, "rows": len(df)}
    meta["files"]["alpha158_all"]["names"] = a_names
    # a narrower query window: qlib computes each expression from start - lft, which changes
    # expanding windows, Ref(x, 0), EMA/ewm and pandas' online residues
    for name, fields, (st, en) in (
        ("alpha158_window", a_fields, ("2020-05-01", "2020-07-31")),
        ("operators_window", OPERATOR_EXPRS, ("2020-05-01", "2020-07-31")),
    ):
        df = D.features(D.instruments("all"), fields, start_time=st, end_time=en)
        df.columns = [f"c{i:03d}" for i in range(len(fields))]
        df.to_parquet(OUT / f"{name}.parquet", compression="zstd")
        meta["files"][name] = {"market": "all", "fields": fields, "rows": len(df), "start": st, "end": en}
    cal = D.calendar(start_time="2020-02-01", end_time="2020-03-01")
    meta["calendar_slice"] = [str(pd.Timestamp(d).date()) for d in cal]
    meta["calendar_type"] = f"{type(cal).__name__}:{cal.dtype}"
    meta["list_instruments_sub"] = {
        k: [[str(pd.Timestamp(a).date()), str(pd.Timestamp(b).date())] for a, b in v]
        for k, v in D.list_instruments(D.instruments("sub"), start_time="2020-03-01", end_time="2020-08-01").items()
    }
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1))
    print({k: v["rows"] for k, v in meta["files"].items()})


if __name__ == "__main__":
    main()
