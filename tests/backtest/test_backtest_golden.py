"""Parity with the real qlib 0.9.7: every golden config, column by column and day by day (rtol 1e-9).

Goldens: tools/make_backtest_goldens.py (qlib's ``backtest()`` + ``risk_analysis`` + ``indicator_analysis``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.backtest import backtest, indicator_analysis, risk_analysis

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "backtest"

RTOL = 1e-9
CONFIGS = [
    "cn_default", "us_style", "small_account", "min_cost_tiny", "hold_thresh3", "only_tradable", "no_forbid_limit",
    "impact_vwap", "adjusted_price", "topk5_ndrop5", "ndrop0", "bench_series", "init_positions", "us_open_costs",
    "expr_price", "limit_expr", "cash_limit_us", "cash_limit_min_cost", "huge_min_cost",
]


def _golden(name: str, config: str) -> pd.DataFrame:
    df = pd.read_parquet(GOLDEN / f"{name}.parquet")
    return df[df["config"] == config].drop(columns="config").reset_index(drop=True)


def run_config(c: dict, pred: pd.DataFrame, provider, region) -> tuple:
    region(c["region"])
    bench = c["benchmark"]
    if bench == "__series__":
        bench = pd.read_parquet(GOLDEN / "bench_series.parquet")["bench"]
    strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                "kwargs": {"signal": pred, **c["strategy"]}}
    executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
    return backtest(c["start_time"], c["end_time"], strategy, executor, benchmark=bench, account=c["account"],
                    exchange_kwargs=dict(c["exchange_kwargs"]), provider=provider)


def assert_close(ours: pd.Series, gold: pd.Series, what: str, atol: float = 0.0) -> None:
    a, b = ours.to_numpy(dtype=float), gold.to_numpy(dtype=float)
    assert a.shape == b.shape, f"{what}: {a.shape} vs {b.shape}"
    both_nan = np.isnan(a) & np.isnan(b)
    bad = ~both_nan & ~np.isclose(a, b, rtol=RTOL, atol=atol)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AssertionError(f"{what}: {bad.sum()} mismatches, first at {i}: ours={a[i]!r} qlib={b[i]!r}")


@pytest.mark.parametrize("name", CONFIGS)
def test_backtest_matches_qlib(name, golden_configs, golden_pred, golden_provider, golden_adj_provider, region):
    c = golden_configs[name]
    prov = golden_adj_provider if c["dataset"] == "data_adj" else golden_provider
    pm, ind = run_config(c, golden_pred, prov, region)
    report, positions = pm["1day"]
    idf, _ = ind["1day"]

    g = _golden("report", name)
    assert list(report.index) == list(pd.DatetimeIndex(g["datetime"]))
    for col in ["account", "return", "total_turnover", "turnover", "total_cost", "cost", "value", "cash", "bench"]:
        # cash can end near 0 (even slightly negative: qlib's +0.1 share guard can round a cash-limited buy up),
        # a difference of large sums; 1e-6 currency units absolute = 1e-12 of these accounts
        assert_close(report[col], g[col], f"{name}.report.{col}", atol=1e-6 if col == "cash" else 0.0)

    gi = _golden("indicators", name)
    assert list(idf.index) == list(pd.DatetimeIndex(gi["datetime"]))
    for col in ["ffr", "pa", "pos", "deal_amount", "value"]:
        assert_close(idf[col], gi[col], f"{name}.indicators.{col}")
    assert idf["count"].tolist() == gi["count"].tolist()

    gp = _golden("positions", name)
    rows = [{"datetime": d, "instrument": s, **{k: p.position[s].get(k, 0) for k in
                                                 ("amount", "price", "weight", "count_day")}}
            for d, p in positions.items() for s in sorted(p.get_stock_list())]
    ours = pd.DataFrame(rows)
    assert ours[["datetime", "instrument"]].astype(str).values.tolist() == \
        gp[["datetime", "instrument"]].astype(str).values.tolist()
    for col in ["amount", "price", "weight"]:
        assert_close(ours[col], gp[col], f"{name}.positions.{col}")
    assert ours["count_day"].tolist() == gp["count_day"].tolist()
    ga = _golden("positions_account", name)
    assert_close(pd.Series([p.position["cash"] for p in positions.values()]), ga["cash"], f"{name}.pos.cash",
                 atol=1e-6)
    assert_close(pd.Series([p.position["now_account_value"] for p in positions.values()]),
                 ga["now_account_value"], f"{name}.pos.now_account_value")

    gr = _golden("risk", name)
    for label, r in {"excess_return_without_cost": report["return"] - report["bench"],
                     "excess_return_with_cost": report["return"] - report["bench"] - report["cost"]}.items():
        for mode in ("sum", "product"):
            ra = risk_analysis(r, freq="day", mode=mode)["risk"]
            exp = gr[(gr["analysis"] == label) & (gr["mode"] == mode)].set_index("metric")["risk"]
            assert_close(ra.loc[exp.index], exp, f"{name}.risk.{label}.{mode}")
    gia = _golden("indicator_analysis", name)
    for method in ("mean", "amount_weighted", "value_weighted"):
        ia = indicator_analysis(idf, method=method)["value"]
        exp = gia[gia["method"] == method].set_index("metric")["value"]
        assert_close(ia.loc[exp.index], exp, f"{name}.indicator_analysis.{method}")


@pytest.mark.parametrize("name", ["cn_default", "us_style", "limit_expr"])
def test_backtest_on_qlib_files_matches_qlib(name, golden_configs, golden_pred, region):
    """The same parity through the real on-disk reader (LocalProvider over the golden qlib-format directory)."""
    from qlib_prefect.data.provider import LocalProvider

    c = golden_configs[name]
    pm, _ = run_config(c, golden_pred, LocalProvider(GOLDEN / "data"), region)
    report = pm["1day"][0]
    g = _golden("report", name)
    for col in ["account", "return", "turnover", "cost", "value", "cash", "bench"]:
        assert_close(report[col], g[col], f"{name}.local.report.{col}")
