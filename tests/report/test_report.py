"""The report of a real run: sections, offline, numbers equal the run's artifacts, ledgers reconcile, MLflow 3."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from report_helpers import parse_report, trace

from qlib_prefect.backtest.analysis import risk_analysis
from qlib_prefect.report import SECTION_IDS, build_run_report
from qlib_prefect.report.analysis import IC_WINDOW, horizon_label_expression


def _report(rec) -> str:
    return rec.load_text("report.html")


def test_run_has_report_and_ledgers(real_run) -> None:
    rec = real_run["recorder"]
    arts = set(rec.list_artifacts())
    assert {"report.html", "ledgers"} <= arts
    assert set(rec.list_artifacts("ledgers")) == {f"ledgers/{k}_1day.{s}" for k in ("positions", "trades")
                                                  for s in ("parquet", "csv")}


def test_html_parses_has_every_section_and_no_external_url(real_run) -> None:
    text = _report(real_run["recorder"])
    p = parse_report(text)
    assert p.sections == list(SECTION_IDS)
    assert "Not available" not in text  # a full run fills every section
    charts = {name.split("/")[0] for name in p.figures}
    assert charts == set(SECTION_IDS) - {"metrics", "config"}
    assert all(not u.startswith(("http:", "https:", "//")) for u in p.urls), p.urls
    outside = "".join(p.text_outside_library)
    assert not re.search(r"https?://", outside), re.findall(r"https?://\S{0,40}", outside)[:5]
    assert "cdn" not in "".join(p.urls)
    for name, fig in p.figures.items():  # every chart names its axes (and the units where there are some)
        lay = fig["layout"]
        assert lay["xaxis"]["title"]["text"] and lay["yaxis"]["title"]["text"], name


def test_figures_equal_the_run_artifacts(real_run) -> None:
    rec = real_run["recorder"]
    p = parse_report(_report(rec))
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    cum = p.figures["returns/cumulative"]
    excess = trace(cum, "excess return (with cost)")
    expected = (report["return"] - report["bench"] - report["cost"]).cumsum()
    assert excess["y"][-1] == pytest.approx(expected.iloc[-1], rel=1e-12)
    assert excess["x"][0] == report.index[0].strftime("%Y-%m-%d") and len(excess["y"]) == len(report)
    assert trace(cum, "SPX (benchmark)")["y"][-1] == pytest.approx(report["bench"].sum(), rel=1e-12)
    assert "sum of daily returns" in cum["layout"]["yaxis"]["title"]["text"]
    dd = trace(p.figures["drawdown/drawdown"], "excess return (with cost)")["y"]
    pa = rec.load_object("portfolio_analysis/port_analysis_1day.pkl")
    assert min(dd) == pytest.approx(pa.loc[("excess_return_with_cost", "max_drawdown"), "risk"], rel=1e-12)
    heat = p.figures["monthly/heatmap"]["data"][0]
    total = np.nansum(np.array(heat["z"], dtype=float))
    assert total == pytest.approx(expected.iloc[-1], rel=1e-9)
    ic = rec.load_object("sig_analysis/ic.pkl")
    bars = trace(p.figures["ic/daily"], "IC")
    np.testing.assert_allclose(np.array(bars["y"], dtype=float), ic.to_numpy(), rtol=1e-12, equal_nan=True)
    rolling = trace(p.figures["rolling/ic"], f"IC {IC_WINDOW}-day mean")["y"]
    assert all(v is None for v in rolling[:IC_WINDOW - 1]) and rolling[IC_WINDOW - 1] == pytest.approx(
        ic.iloc[:IC_WINDOW].mean(), rel=1e-12)  # a full window, no single-day start
    decay = trace(p.figures["ic-decay/decay"], "IC")
    assert decay["x"] == list(range(1, 21))
    assert decay["y"][0] == pytest.approx(ic.mean(), rel=1e-6)  # horizon 1 is the run's own label
    assert horizon_label_expression(1) == "Ref($close, -2)/Ref($close, -1) - 1"
    turnover = trace(p.figures["turnover/turnover"], "turnover")["y"]
    np.testing.assert_allclose(turnover, report["turnover"].to_numpy(), rtol=1e-12)
    q = p.figures["quantile/cumulative"]
    assert [t["name"] for t in q["data"]] == [*(f"Group{i}" for i in range(1, 6)), "long-short"]
    np.testing.assert_allclose(np.array(trace(q, "long-short")["y"], dtype=float),
                               np.array(trace(q, "Group1")["y"], dtype=float)
                               - np.array(trace(q, "Group5")["y"], dtype=float), rtol=1e-9, atol=1e-12)
    count = trace(p.figures["holdings/count"], "instruments held")["y"]
    positions = rec.load_object("portfolio_analysis/positions_normal_1day.pkl")
    assert count[-1] == len(positions[report.index[-1]].get_stock_list()) == 10  # topk
    text = _report(rec)
    bench = risk_analysis(report["bench"], freq="day")["risk"]
    assert f"{bench['annualized_return']:.6f}" in text and "SPX (benchmark) annualized_return" in text


def test_ledgers_reconcile_with_the_report(real_run, tmp_path) -> None:
    rec = real_run["recorder"]
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    pos = pd.read_parquet(rec.download_artifact("ledgers/positions_1day.parquet", str(tmp_path)))
    trades = pd.read_parquet(rec.download_artifact("ledgers/trades_1day.parquet", str(tmp_path)))
    assert list(pos.columns) == ["datetime", "instrument", "amount", "price", "value", "weight", "count_day"]
    assert {"instrument", "amount", "price", "weight", "cost"} <= set(trades.columns)
    value = pos.groupby("datetime")["value"].sum().reindex(report.index, fill_value=0.0)
    np.testing.assert_allclose(value + report["cash"], report["account"], rtol=1e-10)
    w = pos.groupby("datetime")["weight"].sum().reindex(report.index, fill_value=0.0)
    np.testing.assert_allclose(w + report["cash"] / report["account"], 1.0, rtol=1e-10)
    cost = trades.groupby("datetime")["cost"].sum().reindex(report.index, fill_value=0.0)
    np.testing.assert_allclose(cost.cumsum(), report["total_cost"], rtol=1e-10, atol=1e-6)
    prev_account = report["account"].shift(1).fillna(100000000)
    np.testing.assert_allclose(cost / prev_account, report["cost"], rtol=1e-10, atol=1e-15)
    dealt = trades[trades["deal_amount"] > 0]
    assert (dealt["cost"] >= 5).all()  # min_cost of the config
    csv = pd.read_csv(rec.download_artifact("ledgers/trades_1day.csv", str(tmp_path)), parse_dates=["datetime"])
    np.testing.assert_allclose(csv["cost"], trades["cost"], rtol=1e-12)


def test_mlflow3_model_dataset_name_description(real_run) -> None:
    from qlib_prefect.data.dataset import DatasetH
    from qlib_prefect.data.registry import get_provider
    from qlib_prefect.report.tracking import MODEL_ID_TAG
    from qlib_prefect.utils import init_instance_by_config

    rec, uri = real_run["recorder"], real_run["uri"]
    client = MlflowClient(uri)
    run = client.get_run(rec.id)
    assert run.info.run_name == "LGBModel Alpha158 sp500 ..2017-06-29"
    note = run.data.tags["mlflow.note.content"]
    assert "report.html" in note and rec.get_artifact_uri() in note
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (ds_input,) = run.inputs.dataset_inputs
    fingerprint = get_provider().fingerprint()
    assert ds_input.dataset.digest == fingerprint[:36] and ds_input.dataset.name == "Alpha158"
    assert json.loads(ds_input.dataset.source)["fingerprint"] == fingerprint
    model_id = run.data.tags[MODEL_ID_TAG]
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    finally:
        mlflow.set_tracking_uri(None)
    cols = loaded.metadata.get_input_schema().input_names()
    dataset = init_instance_by_config(real_run["config"]["task"]["dataset"], accept_types=DatasetH)
    x = dataset.prepare("test", col_set="feature", data_key="infer")
    assert cols == list(x.columns) and len(cols) == 158
    pred = rec.load_object("pred.pkl")["score"]
    got = loaded.predict(x)
    np.testing.assert_allclose(np.asarray(got, dtype=float), pred.reindex(x.index).to_numpy(), rtol=1e-12)


def test_rebuilding_is_idempotent_and_fast_enough_to_measure(real_run, tmp_path) -> None:
    rec = real_run["recorder"]
    path = build_run_report(rec, output=tmp_path, log=False)
    p = parse_report(path.read_text(encoding="utf-8"))
    assert p.sections == list(SECTION_IDS)
    client = MlflowClient(real_run["uri"])
    before = client.get_run(rec.id)
    build_run_report(rec, output=tmp_path / "again")  # logs again: no second model, no second dataset input
    after = client.get_run(rec.id)
    assert len(after.outputs.model_outputs) == len(before.outputs.model_outputs) == 1
    assert len(after.inputs.dataset_inputs) == 1
