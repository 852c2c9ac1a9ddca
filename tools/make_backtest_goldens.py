"""Build the backtest parity goldens with the REAL qlib (oracle side; never imported by the package or tests).

Run (about a minute):

    PYTHONHASHSEED=0 MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \
        /work/qlib-venv/bin/python tools/make_backtest_goldens.py [OUT_DIR]

OUT_DIR defaults to ``tests/golden/backtest``. It writes:

* ``data/``: a tiny deterministic qlib-format dataset (40 stocks + 2 benchmarks x 130 days). A variant
  ``data_adj`` (``data`` with ``$factor`` of S002 NaN on day 40 -> qlib's adjusted-price mode) is written to a
  temp dir only; the tests rebuild it in memory;
* ``pred.parquet``: the fixed prediction (``score``; ``(datetime, instrument)`` index);
* ``configs.json``: every backtest config (qlib ``backtest()`` kwargs + dataset + region);
* ``report.parquet``, ``indicators.parquet``, ``positions.parquet``, ``positions_account.parquet``,
  ``risk.parquet``, ``indicator_analysis.parquet``: qlib's results for all configs (``config`` column).

PYTHONHASHSEED=0 makes qlib's set-ordered position iteration reproducible (qlib iterates ``set(position)``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qlib_data_writer import write_calendar, write_feature, write_instruments

N_STOCKS, N_DAYS = 40, 130
FIELDS = ["open", "close", "high", "low", "volume", "factor", "change", "vwap"]


def build_dataset(root: Path, adjusted: bool = False) -> tuple[pd.DatetimeIndex, dict]:
    """Write the synthetic dataset; returns the calendar and {code: (first, last) data positions}."""
    rng = np.random.default_rng(20240601)
    cal = pd.bdate_range("2020-01-02", periods=N_DAYS)
    write_calendar(root, cal)
    codes = [f"S{j:03d}" for j in range(N_STOCKS)]
    r = rng.normal(0.0005, 0.02, size=(N_DAYS, N_STOCKS))
    # limit up / down days (|change| >= 0.095 under the cn threshold), a few exactly at the threshold
    for _ in range(45):
        r[rng.integers(1, N_DAYS), rng.integers(0, N_STOCKS)] = 0.1
    for _ in range(45):
        r[rng.integers(1, N_DAYS), rng.integers(0, N_STOCKS)] = -0.1
    for t, j in [(12, 3), (30, 4), (44, 5), (61, 6)]:
        r[t, j] = 0.095
    for t, j in [(15, 7), (33, 8), (70, 9)]:
        r[t, j] = -0.095
    base = 5.0 + 45.0 * rng.random(N_STOCKS)
    close = base * np.cumprod(1 + r, axis=0)
    change = r.copy()
    change[0] = np.nan
    opn = close / (1 + rng.normal(0, 0.01, size=close.shape))
    high = np.maximum(close, opn) * (1 + 0.01 * rng.random(close.shape))
    low = np.minimum(close, opn) * (1 - 0.01 * rng.random(close.shape))
    vwap = (close + opn) / 2
    vwap[rng.random(close.shape) < 0.03] = np.nan
    vwap[rng.random(close.shape) < 0.02] = 0.0
    volume = np.round(1e4 + 2e6 * rng.random(close.shape))
    volume[rng.random(close.shape) < 0.01] = 0.0
    factor = np.ones_like(close)
    factor[:, 30:35] = 0.37
    factor[:, 35:40] = 1.23
    factor[N_DAYS // 2:, 35:40] = 2.5
    # suspensions: every field NaN
    susp = np.zeros(close.shape, dtype=bool)
    for _ in range(25):
        t, j, n = rng.integers(1, N_DAYS - 5), rng.integers(0, N_STOCKS), rng.integers(1, 6)
        susp[t:t + n, j] = True
    arrays = {"open": opn, "close": close, "high": high, "low": low, "volume": volume, "factor": factor,
              "change": change, "vwap": vwap}
    for k in arrays:
        arrays[k] = np.where(susp, np.nan, arrays[k])
    if adjusted:
        arrays["factor"][40, 2] = np.nan  # factor missing while $close exists -> adjusted-price mode
    first = {c: 0 for c in codes}
    last = {c: N_DAYS - 1 for c in codes}
    first["S038"] = 30  # listed late
    last["S037"] = 90  # delisted (data ends) while possibly held
    spans = {}
    for j, c in enumerate(codes):
        i0, i1 = first[c], last[c]
        for f in FIELDS:
            write_feature(root, c, f, i0, arrays[f][i0:i1 + 1, j])
        spans[c] = (i0, i1)
    # benchmarks: BENCH full span, BENCH2 starts on day 5
    for c, i0, sd in [("BENCH", 0, 0.012), ("BENCH2", 5, 0.015)]:
        rb = rng.normal(0.0003, sd, size=N_DAYS)
        cb = 1000 * np.cumprod(1 + rb)
        for f in FIELDS:
            v = {"close": cb, "open": cb, "high": cb, "low": cb, "vwap": cb, "volume": np.full(N_DAYS, 1e9),
                 "factor": np.ones(N_DAYS), "change": np.r_[np.nan, rb[1:]]}[f]
            write_feature(root, c, f, i0, v[i0:])
        spans[c] = (i0, N_DAYS - 1)
    # universe: membership = data span, except S036 leaves the universe on day 80 (data continues)
    all_spans = []
    for c, (i0, i1) in spans.items():
        e = 80 if c == "S036" else i1
        all_spans.append((c, cal[i0], cal[e]))
    write_instruments(root, "all", all_spans)
    write_instruments(root, "mkt", [(c, cal[i0], cal[i1]) for c, (i0, i1) in spans.items() if c.startswith("S")])
    return cal, spans


def build_pred(cal: pd.DatetimeIndex, spans: dict) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = [(d, c) for t, d in enumerate(cal) for c, (i0, i1) in spans.items()
            if c.startswith("S") and i0 <= t <= i1]
    idx = pd.MultiIndex.from_tuples(rows, names=["datetime", "instrument"])
    pred = pd.DataFrame({"score": rng.normal(size=len(idx))}, index=idx)
    dt = idx.get_level_values(0)
    inst = idx.get_level_values(1)
    # S007 has no score on days 40..60; S008 has NaN scores on days 20..30; S011 NaN on day 50 only
    keep = ~((inst == "S007") & (dt >= cal[40]) & (dt <= cal[60]))
    pred.loc[(inst == "S008") & (dt >= cal[20]) & (dt <= cal[30]), "score"] = np.nan
    pred.loc[(inst == "S011") & (dt == cal[50]), "score"] = np.nan
    # a held stock leaves the prediction universe: S036 has no scores after day 80
    keep &= ~((inst == "S036") & (dt > cal[80]))
    return pred[keep].sort_index()


def configs(cal: pd.DatetimeIndex) -> list[dict]:
    cn_ex = {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
             "min_cost": 5}
    start, end = str(cal[3].date()), str(cal[-2].date())
    base = {"dataset": "data", "region": "cn", "start_time": start, "end_time": end, "account": 1e6,
            "benchmark": "BENCH", "exchange_kwargs": cn_ex, "strategy": {"topk": 10, "n_drop": 3}}

    def cfg(name: str, **over) -> dict:
        c = json.loads(json.dumps(base))
        for k, v in over.items():
            if k in ("exchange_kwargs", "strategy"):
                c[k].update(v)
            else:
                c[k] = v
        c["name"] = name
        return c

    return [
        cfg("cn_default"),
        cfg("us_style", region="us", exchange_kwargs={"limit_threshold": None}, benchmark=["BENCH", "BENCH2"],
            strategy={"topk": 10, "n_drop": 2}),
        cfg("small_account", account=1e5, strategy={"topk": 8, "n_drop": 2}),
        cfg("min_cost_tiny", account=3e4, exchange_kwargs={"min_cost": 20}, strategy={"topk": 6, "n_drop": 2}),
        cfg("hold_thresh3", strategy={"topk": 12, "n_drop": 4, "hold_thresh": 3}),
        cfg("only_tradable", strategy={"topk": 10, "n_drop": 4, "only_tradable": True}),
        cfg("no_forbid_limit", strategy={"topk": 10, "n_drop": 4, "forbid_all_trade_at_limit": False}),
        cfg("impact_vwap", exchange_kwargs={"impact_cost": 0.1, "deal_price": "vwap"},
            strategy={"topk": 10, "n_drop": 3, "risk_degree": 0.9}),
        cfg("adjusted_price", dataset="data_adj"),
        cfg("topk5_ndrop5", strategy={"topk": 5, "n_drop": 5}),
        cfg("ndrop0", strategy={"topk": 6, "n_drop": 0}),
        cfg("bench_series", benchmark="__series__", start_time=str(cal[0].date())),
        cfg("init_positions",
            account={"cash": 5e5, "S001": {"amount": 1000, "price": 15.0}, "S002": {"amount": 500, "price": 20.0}},
            strategy={"topk": 8, "n_drop": 2}),
        cfg("us_open_costs", region="us", exchange_kwargs={"limit_threshold": None, "open_cost": 0.001,
                                                           "close_cost": 0.002, "min_cost": 0, "deal_price": "open"},
            strategy={"topk": 15, "n_drop": 5}),
        cfg("expr_price", exchange_kwargs={"deal_price": ["$open", "($close + $open) / 2"]},
            strategy={"topk": 10, "n_drop": 3}),
        cfg("limit_expr", exchange_kwargs={"limit_threshold": ["$change >= 0.05", "$change <= -0.05"]},
            strategy={"topk": 10, "n_drop": 3}),
        # risk_degree 1: the last buys lack the cost -> qlib's cash-limit clipping (cost-ratio branch)
        cfg("cash_limit_us", region="us", exchange_kwargs={"limit_threshold": None, "impact_cost": 0.05},
            strategy={"topk": 10, "n_drop": 3, "risk_degree": 1.0}),
        # small cash below the critical price min_cost/ratio + min_cost -> (cash - min_cost) / price branch
        cfg("cash_limit_min_cost", region="us", account=3e4, exchange_kwargs={"limit_threshold": None, "min_cost": 50},
            strategy={"topk": 4, "n_drop": 2, "risk_degree": 1.0}),
        # min cost above position values: sells rejected for cash, buys rejected when cash < min cost
        cfg("huge_min_cost", account=3e4, exchange_kwargs={"min_cost": 2e4}, strategy={"topk": 3, "n_drop": 1}),
    ]


def bench_series(cal: pd.DatetimeIndex) -> pd.Series:
    rng = np.random.default_rng(11)
    return pd.Series(rng.normal(0.0, 0.01, size=len(cal)), index=cal, name="bench")


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/golden/backtest"
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    out.mkdir(parents=True, exist_ok=True)
    cal, spans = build_dataset(out / "data")
    tmp = Path(tempfile.mkdtemp(prefix="bt-golden-"))
    build_dataset(tmp / "data_adj", adjusted=True)  # not stored: tests rebuild it (one NaN factor)
    pred = build_pred(cal, spans)
    pred.to_parquet(out / "pred.parquet")
    bench_series(cal).to_frame().to_parquet(out / "bench_series.parquet")
    cfgs = configs(cal)
    (out / "configs.json").write_text(json.dumps(cfgs, indent=1))

    import qlib
    from qlib.backtest import backtest
    from qlib.contrib.evaluate import indicator_analysis, risk_analysis

    reports, inds, poss, accs, risks, ianas = [], [], [], [], [], []
    for c in cfgs:
        root = out / "data" if c["dataset"] == "data" else tmp / c["dataset"]
        qlib.init(provider_uri=str(root), region=c["region"])
        strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                    "kwargs": {"signal": pred, **c["strategy"]}}
        executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                    "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
        bench = bench_series(cal) if c["benchmark"] == "__series__" else c["benchmark"]
        account = json.loads(json.dumps(c["account"]))
        ek = dict(c["exchange_kwargs"])
        if isinstance(ek.get("limit_threshold"), list):  # qlib wants a tuple of expressions
            ek["limit_threshold"] = tuple(ek["limit_threshold"])
        pm, ind = backtest(start_time=c["start_time"], end_time=c["end_time"], strategy=strategy, executor=executor,
                           benchmark=bench, account=account, exchange_kwargs=ek)
        report, positions = pm["1day"]
        idf, _obj = ind["1day"]
        name = c["name"]
        reports.append(report.assign(config=name).reset_index())
        inds.append(idf.rename_axis("datetime").assign(config=name).reset_index())
        for d, p in positions.items():
            accs.append({"config": name, "datetime": d, "cash": p.position["cash"],
                         "now_account_value": p.position["now_account_value"]})
            for s in sorted(p.get_stock_list()):
                v = p.position[s]
                poss.append({"config": name, "datetime": d, "instrument": s, "amount": v["amount"],
                             "price": v["price"], "weight": v["weight"], "count_day": v.get("count_day", 0)})
        for label, r in {"excess_return_without_cost": report["return"] - report["bench"],
                         "excess_return_with_cost": report["return"] - report["bench"] - report["cost"]}.items():
            for mode in ("sum", "product"):
                ra = risk_analysis(r, freq="day", mode=mode)["risk"]
                for m, v in ra.items():
                    risks.append({"config": name, "analysis": label, "mode": mode, "metric": m, "risk": float(v)})
        for method in ("mean", "amount_weighted", "value_weighted"):
            ia = indicator_analysis(idf, method=method)["value"]
            for m, v in ia.items():
                ianas.append({"config": name, "method": method, "metric": m, "value": float(v)})
        print(name, "rows", len(report), "final account", report["account"].iloc[-1], flush=True)

    pd.concat(reports, ignore_index=True).to_parquet(out / "report.parquet")
    pd.concat(inds, ignore_index=True).to_parquet(out / "indicators.parquet")
    pd.DataFrame(poss).to_parquet(out / "positions.parquet")
    pd.DataFrame(accs).to_parquet(out / "positions_account.parquet")
    pd.DataFrame(risks).to_parquet(out / "risk.parquet")
    pd.DataFrame(ianas).to_parquet(out / "indicator_analysis.parquet")


if __name__ == "__main__":
    main()
