"""Real flow runs under a Prefect test harness, on a small slice of the bundled sample."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from orch_helpers import small_config

from qlib_prefect.errors import ConfigError
from qlib_prefect.orchestration import ContentStore, qlib_workflow, text_report

pytestmark = pytest.mark.usefixtures("prefect_api")

STAGES = ["dataset", "train", "record.0.SignalRecord", "record.1.SigAnaRecord", "record.2.PortAnaRecord"]


def _states(summary: dict) -> dict[str, str]:
    return {k: v["state"] for k, v in summary["stages"].items()}


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    out: set[str] = set()
    stack = [None]
    while stack:
        for a in client.list_artifacts(run_id, stack.pop()):
            (stack.append(a.path) if a.is_dir else out.add(a.path))
    return out


def test_full_run_then_identical_rerun_is_cached_and_complete(small_data, isolated_home, mlflow_uri) -> None:
    cfg = small_config(small_data, mlflow_uri)
    first = qlib_workflow(cfg)
    assert _states(first) == dict.fromkeys(STAGES, "Completed")
    second = qlib_workflow(cfg)
    assert _states(second) == dict.fromkeys(STAGES, "Cached")
    assert second["run_id"] != first["run_id"]
    # each computed stage says what it took; a cached one took nothing in this run (text report: "-")
    took = {k: v["seconds"] for k, v in first["stages"].items()}
    assert all(isinstance(t, float) and t > 0 for t in took.values()), took
    assert max(took.values()) <= first["elapsed_s"]  # stages run concurrently: each, not their sum, is inside the run
    assert all(v["seconds"] is None for v in second["stages"].values())
    rows = [line.split() for line in text_report(first).splitlines() if line.startswith(tuple(STAGES))]
    assert [r[3] for r in rows] == [f"{took[r[0]]:.1f}" for r in rows] and len(rows) == len(STAGES)
    assert all(line.split()[-1] == "-" for line in text_report(second).splitlines() if line.startswith("train "))
    client = MlflowClient(mlflow_uri)
    for summary in (first, second):
        run = client.get_run(summary["run_id"])
        assert run.info.status == "FINISHED"
        arts = _artifacts(client, summary["run_id"])
        assert {"task", "config", "dataset", "params.pkl", "pred.pkl", "label.pkl", "sig_analysis/ic.pkl",
                "sig_analysis/ric.pkl", "sig_analysis/ic.png", "portfolio_analysis/report_normal_1day.pkl",
                "portfolio_analysis/port_analysis_1day.pkl", "portfolio_analysis/positions_normal_1day.pkl",
                "portfolio_analysis/cumulative_return.png", "portfolio_analysis/drawdown.png"} <= arts
        m = run.data.metrics
        for k in ("IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                  "1day.excess_return_without_cost.max_drawdown", "1day.pa", "1day.ffr"):
            assert k in m
        hist = client.get_metric_history(summary["run_id"], "l2.valid")
        assert [h.step for h in sorted(hist, key=lambda h: h.step)] == list(range(20))
        assert run.data.params["model.kwargs.learning_rate"] == "0.2"
        assert run.data.tags["qlib_prefect.config_hash"] and run.data.tags["prefect.flow_run_id"]
    # the cached run reports the very same numbers
    m1, m2 = (client.get_run(s["run_id"]).data.metrics for s in (first, second))
    assert {k: m1[k] for k in m1 if not k.startswith("l2")} == {k: m2[k] for k in m2 if not k.startswith("l2")}
    assert first["metrics"]["IC"] == pytest.approx(m1["IC"])


def test_model_change_reuses_the_dataset(small_data, isolated_home, mlflow_uri) -> None:
    qlib_workflow(small_config(small_data, mlflow_uri))
    s = qlib_workflow(small_config(small_data, mlflow_uri, lr=0.1))
    assert _states(s) == {"dataset": "Cached", **dict.fromkeys(STAGES[1:], "Completed")}


def test_failing_stage_fails_the_run_and_caches_nothing(small_data, isolated_home, mlflow_uri, monkeypatch) -> None:
    failing = {"class": "FailingRecord", "module_path": "stage_helpers", "kwargs": {"label": "a"}}
    cfg = small_config(small_data, mlflow_uri, extra_records=[failing])
    monkeypatch.setenv("QP_TEST_FAIL", "1")
    with pytest.raises(RuntimeError, match="failing on purpose"):
        qlib_workflow(cfg)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    store = ContentStore()
    assert not (store.root / "FailingRecord").exists() or not any(
        (p / "_COMPLETE").exists() for p in (store.root / "FailingRecord").iterdir())
    monkeypatch.delenv("QP_TEST_FAIL")
    s = qlib_workflow(cfg)
    states = _states(s)
    assert states["record.3.FailingRecord"] == "Completed"  # recomputed: the failure left no cache entry
    assert all(states[n] == "Cached" for n in STAGES)
    arts = _artifacts(client, s["run_id"])
    assert "failing/ok.pkl" in arts and "failing/partial.pkl" in arts


def test_current_recorder_reaches_the_run_from_a_worker_thread(small_data, isolated_home, mlflow_uri) -> None:
    rec = {"class": "ContextRecord", "module_path": "stage_helpers"}
    s = qlib_workflow(small_config(small_data, mlflow_uri, extra_records=[rec]))
    run = MlflowClient(mlflow_uri).get_run(s["run_id"])
    assert run.data.tags["context_record"] == "reached"
    assert run.data.metrics["pred_rows"] > 0


def test_config_error_names_the_yaml_path(small_data, isolated_home, mlflow_uri) -> None:
    cfg = small_config(small_data, mlflow_uri)
    cfg["task"]["model"]["kwargs"]["learning_rat"] = cfg["task"]["model"]["kwargs"].pop("learning_rate")
    with pytest.raises(ConfigError, match=r"task\.model\.kwargs\.learning_rat.*did you mean 'learning_rate'"):
        qlib_workflow(cfg)


def test_prefect_artifact_has_the_metrics_table(small_data, isolated_home, mlflow_uri) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    s = qlib_workflow(small_config(small_data, mlflow_uri))
    flow_run_id = MlflowClient(mlflow_uri).get_run(s["run_id"]).data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["qlib-workflow-results"])))
    mine = [a for a in arts if str(a.flow_run_id) == flow_run_id]
    assert len(mine) == 1 and mine[0].type == "markdown"
    assert s["run_id"] in mine[0].data and "| IC |" in mine[0].data and "| Rank IC |" in mine[0].data
    # what qrun prints besides the headline numbers: mean/std of the excess return, ffr, pa, pos
    for label in ("Excess return, daily mean (with cost)", "Excess return, daily std (without cost)",
                  "Fulfill rate of orders (ffr)", "Price advantage (pa)", "Positive rate of price advantage (pos)"):
        assert f"| {label} |" in mine[0].data
