"""A Prefect flow run publishes its report: report.html + ledgers in the MLflow run, linked from the run's
description and from the flow run's Prefect artifact; the run is named after what ran."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from orch_helpers import small_config

from qlib_prefect.orchestration import qlib_workflow

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_flow_run_publishes_the_report(small_data, isolated_home, mlflow_uri) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    s = qlib_workflow(small_config(small_data, mlflow_uri))
    client = MlflowClient(mlflow_uri)
    run = client.get_run(s["run_id"])
    names = {a.path for a in client.list_artifacts(s["run_id"])}
    assert {"report.html", "ledgers", "pred.pkl", "portfolio_analysis"} <= names
    html = client.download_artifacts(s["run_id"], "report.html")
    with open(html, encoding="utf-8") as f:
        text = f.read()
    assert "Not available" not in text and "SPX (benchmark)" in text and "model:" in text  # config section
    assert run.info.run_name == "LGBModel Alpha158 sp500 ..2017-06-29"
    assert s["report_url"] in run.data.tags["mlflow.note.content"] and s["report_url"].endswith("/report.html")
    assert len(run.outputs.model_outputs) == 1 and len(run.inputs.dataset_inputs) == 1
    flow_run_id = run.data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as pc:
        arts = pc.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["qlib-workflow-results"])))
    mine = [a for a in arts if str(a.flow_run_id) == flow_run_id]
    assert len(mine) == 1 and f"[report.html]({s['report_url']})" in mine[0].data


def test_strategy_only_rerun_reuses_the_report_signal_sections(small_data, isolated_home, mlflow_uri) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
    from report_helpers import parse_report

    def figures(run_id: str) -> dict:
        path = MlflowClient(mlflow_uri).download_artifacts(run_id, "report.html")
        return parse_report(Path(path).read_text(encoding="utf-8")).figures

    a = qlib_workflow(small_config(small_data, mlflow_uri, topk=10))
    entries = list((isolated_home / "report_sections").glob("*.pkl"))
    assert len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    b = qlib_workflow(small_config(small_data, mlflow_uri, topk=8))
    assert b["stages"]["record.0.SignalRecord"]["state"] == "Cached"
    assert list((isolated_home / "report_sections").glob("*.pkl")) == entries
    assert entries[0].stat().st_mtime_ns == stamp  # read, not written again
    fa, fb = figures(a["run_id"]), figures(b["run_id"])
    for name in ("ic/daily", "ic-decay/decay", "quantile/cumulative", "rolling/ic"):
        assert fa[name] == fb[name]
    assert fa["returns/cumulative"] != fb["returns/cumulative"]  # the new strategy's portfolio is drawn
    assert fa["rolling/sharpe"] != fb["rolling/sharpe"]
