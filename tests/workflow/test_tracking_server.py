"""The same API against a real ``mlflow server`` subprocess on 127.0.0.1 (started by the session fixture)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from qlib_prefect.workflow import R


def test_r_api_through_tracking_server(mlflow_server, configure, tmp_path):
    configure(mlflow_server)
    assert R.get_uri() == mlflow_server
    df = pd.DataFrame({"score": [0.5, -0.5]})
    long = "v" * (MAX_PARAM_VAL_LENGTH + 10)
    with R.start(experiment_name="server-e2e"):
        R.log_params(lr=0.05, record=long)
        for i in range(50):
            R.log_metrics(step=i, **{"l2.train": 1.0 / (i + 1)})
        R.set_tags(group="a")
        R.save_objects(**{"pred.pkl": df})
        R.save_objects(artifact_path="sig_analysis", **{"ic.pkl": df["score"]})
        rec = R.get_recorder()
        assert rec.list_artifacts("sig_analysis") == ["sig_analysis/ic.pkl"]
        pd.testing.assert_frame_equal(R.load_object("pred.pkl"), df)
    got = R.get_recorder(recorder_id=rec.id, experiment_name="server-e2e")
    assert got.status == "FINISHED"
    assert got.artifact_uri.startswith("mlflow-artifacts:")
    assert got.list_params()["lr"] == "0.05"
    assert got.list_params()["record"].endswith("params_full/record.txt]")
    assert got.load_text("params_full/record.txt") == long
    assert len(got.get_metric_history("l2.train")) == 50
    pd.testing.assert_series_equal(got.load_object("sig_analysis/ic.pkl"), df["score"])
    assert pd.read_pickle(got.get_artifact_path("pred.pkl", dst_path=str(tmp_path))).equals(df)
    assert got.load_bytes("pred.pkl")[:1] == b"\x80"  # raw pickle bytes
    with pytest.raises(RuntimeError):  # artifacts are not local
        got.get_local_dir()

    with pytest.raises(ZeroDivisionError):
        with R.start(experiment_name="server-e2e"):
            failed_id = R.get_recorder().id
            R.set_tags(group="b")
            1 / 0  # noqa: B018
    exp = R.get_exp(experiment_name="server-e2e")
    assert set(exp.list_recorders(status="FAILED")) == {failed_id}
    assert set(exp.list_recorders(tags={"group": "a"})) == {rec.id}
    assert set(R.list_recorders(experiment_name="server-e2e")) == {rec.id, failed_id}

    with R.start(experiment_name="server-e2e", recorder_id=rec.id, resume=True):
        assert R.get_recorder().id == rec.id
        R.log_metrics(step=50, **{"l2.train": 0.0})
    assert len(got.get_metric_history("l2.train")) == 51


def test_threads_through_tracking_server(mlflow_server):
    from qlib_prefect.workflow import MLflowExpManager

    exp = MLflowExpManager(uri=mlflow_server).get_exp(experiment_name="server-threads")
    ids: dict[int, str] = {}

    def work(t: int) -> None:
        rec = exp.create_recorder(f"t{t}")
        rec.start_run()
        ids[t] = rec.id
        for i in range(200):
            rec.log_metrics(step=i, v=t * 1000 + i)
        rec.end_run("FINISHED")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    for t, rid in ids.items():
        hist = exp.get_recorder(recorder_id=rid, create=False).get_metric_history("v")
        assert sorted((m.step, m.value) for m in hist) == [(i, float(t * 1000 + i)) for i in range(200)]
    assert len(ids) == 4
