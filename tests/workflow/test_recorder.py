"""MLflowRecorder / MLflowExperiment behaviour on a real SQLite store."""

from __future__ import annotations

import pickle
import shutil
import subprocess

import pandas as pd
import pytest
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from qlib_prefect.errors import LoadObjectError, RecorderError
from qlib_prefect.workflow import MLflowExpManager, MLflowRecorder, R, Recorder
from qlib_prefect.workflow.exp import build_filter
from qlib_prefect.workflow.recorder import PARAMS_FULL_DIR


@pytest.fixture
def exp(sqlite_uri):
    return MLflowExpManager(uri=sqlite_uri).get_exp(experiment_name="rec")


def _started(exp, name="r"):
    rec = exp.create_recorder(name)
    rec.start_run()
    return rec


def test_statuses_and_info(exp):
    assert (Recorder.STATUS_S, Recorder.STATUS_R, Recorder.STATUS_FI, Recorder.STATUS_FA) == (
        "SCHEDULED", "RUNNING", "FINISHED", "FAILED")
    rec = exp.create_recorder()
    assert rec.status == "SCHEDULED" and rec.id is None and rec.name == "mlflow_recorder"
    rec.end_run("FINISHED")  # never started: stays SCHEDULED (qlib)
    assert rec.status == "SCHEDULED"
    rec = _started(exp)
    info = rec.info
    assert set(info) == {"class", "id", "name", "experiment_id", "start_time", "end_time", "status"}
    assert info["status"] == "RUNNING" and info["experiment_id"] == exp.id
    with pytest.raises(RecorderError, match="status"):
        rec.end_run("DONE")
    rec.end_run(Recorder.STATUS_K)
    assert exp.get_recorder(recorder_id=rec.id, create=False).status == "KILLED"


def test_long_param_is_truncated_and_saved_in_full(exp):
    rec = _started(exp)
    long = "".join(str(i % 10) for i in range(MAX_PARAM_VAL_LENGTH + 1234))
    record = [{"class": "SignalRecord", "kwargs": {"model": "<MODEL>"}}] * 200  # qlib#1317: the 'record' list
    rec.log_params(long=long, record=record, short="ok")
    rec.end_run("FINISHED")
    params = rec.list_params()
    assert params["short"] == "ok"
    assert len(params["long"]) <= MAX_PARAM_VAL_LENGTH
    assert params["long"].endswith(f"[truncated; full value in artifact {PARAMS_FULL_DIR}/long.txt]")
    assert long.startswith(params["long"].split("...[truncated")[0])
    assert rec.load_text(f"{PARAMS_FULL_DIR}/long.txt") == long
    assert rec.load_text(f"{PARAMS_FULL_DIR}/record.txt") == str(record)
    assert rec.status == "FINISHED"


def test_load_object_errors_are_clear(exp, tmp_path):
    rec = _started(exp)
    f = tmp_path / "raw.txt"
    f.write_text("not a pickle")
    rec.log_artifact(str(f))
    with pytest.raises(LoadObjectError, match=r"missing\.pkl"):
        rec.load_object("missing.pkl")
    with pytest.raises(LoadObjectError, match=r"raw\.txt"):
        rec.load_object("raw.txt")
    with pytest.raises(LoadObjectError):
        exp.create_recorder().load_object("x")  # never started
    rec.end_run("FINISHED")


def test_raw_artifact_access(exp):
    rec = _started(exp)
    df = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index(["x", "y"], name="instrument"))
    rec.save_objects(**{"pred.pkl": df})
    rec.save_objects(artifact_path="portfolio_analysis", **{"report.pkl": df * 2})
    rec.save_parquet(pred=df)
    rec.end_run("FINISHED")
    path = rec.get_artifact_path("pred.pkl")
    with open(path, "rb") as fh:
        pd.testing.assert_frame_equal(pickle.load(fh), df)
    raw = rec.load_bytes("portfolio_analysis/report.pkl")
    pd.testing.assert_frame_equal(pickle.loads(raw), df * 2)
    pd.testing.assert_frame_equal(pd.read_parquet(rec.get_artifact_path("pred.parquet")), df)
    # downloaded copy into a folder of our choice
    dst = rec.get_artifact_path("pred.pkl", dst_path=str(path).rsplit("/", 3)[0])
    assert dst.endswith("pred.pkl")
    assert set(rec.list_artifacts()) >= {"pred.pkl", "pred.parquet", "portfolio_analysis"}
    with pytest.raises(ValueError, match="only one"):
        rec.save_objects(local_path=path, x=1)


def test_background_error_raised_at_next_flush_and_nothing_else_lost(exp):
    rec = _started(exp)
    rec.log_params(p="1")
    rec.log_params(p="2", q="kept")  # params are immutable in MLflow: fails in the background
    rec.log_metrics(step=0, m=1.0)
    with pytest.raises(RecorderError, match="'p'"):
        rec.list_params()  # a read flushes and re-raises
    params = rec.list_params()  # error reported once
    assert params["p"] == "1" and params["q"] == "kept"
    assert rec.list_metrics() == {"m": 1.0}
    rec.log_params(p="3")
    with pytest.raises(RecorderError):
        rec.end_run("FINISHED")  # end_run flushes too; the run is still ended
    assert exp.get_recorder(recorder_id=rec.id, create=False).status == "FINISHED"


def test_non_numeric_metric_fails_in_the_caller(exp):
    rec = _started(exp)
    with pytest.raises(RecorderError, match="'IC'"):
        rec.log_metrics(IC="high")
    rec.end_run("FINISHED")


def test_reads_see_everything_logged_before(exp):
    """qlib's 'Metric IC is malformed' race: a read right after async logging must see complete data."""
    rec = _started(exp)
    for i in range(300):
        rec.log_metrics(step=i, IC=i / 10, ICIR=-i)
    other = exp.get_recorder(recorder_id=rec.id, create=False)  # another object for the same run
    assert other.list_metrics() == {"IC": 29.9, "ICIR": -299.0}
    assert len(other.get_metric_history("IC")) == 300
    rec.end_run("FINISHED")


def test_list_recorders_filters_are_pushed_to_mlflow(exp):
    recs = []
    for i in range(6):
        rec = _started(exp, name=f"r{i}")
        rec.set_tags(group="even" if i % 2 == 0 else "odd")
        rec.log_params(window=str(i % 3))
        rec.end_run("FINISHED" if i < 4 else "FAILED")
        recs.append(rec)
    ids = [r.id for r in recs]
    assert set(exp.list_recorders()) == set(ids)
    assert set(exp.list_recorders(status="FAILED")) == {ids[4], ids[5]}
    assert set(exp.list_recorders(tags={"group": "even"})) == {ids[0], ids[2], ids[4]}
    assert set(exp.list_recorders(tags={"group": "even"}, params={"window": "1"})) == {ids[4]}
    assert set(exp.list_recorders(filter_string="params.window = '0'", status="FINISHED")) == {ids[0], ids[3]}
    lst = exp.list_recorders(rtype="list", max_results=2)
    assert [r.id for r in lst] == [ids[5], ids[4]]  # newest first
    assert exp.get_recorder(recorder_name="r3", create=False).id == ids[3]
    with pytest.raises(NotImplementedError):
        exp.list_recorders(rtype="frame")
    assert build_filter("a = 'b'", status="X", tags={"k'": "v"}) == "a = 'b' and attributes.status = 'X' and " \
        "tags.\"k'\" = 'v'"


def test_get_local_dir_and_artifact_uri(exp, sqlite_uri):
    rec = exp.create_recorder()
    with pytest.raises(ValueError):
        rec.get_local_dir()
    rec.start_run()
    assert rec.get_artifact_uri().startswith("file://")
    assert rec.get_local_dir().endswith(rec.id)
    rec.end_run("FINISHED")


def test_lineage_inside_and_outside_git(exp, tmp_path, monkeypatch):
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    rec = _started(exp)
    rec.end_run("FINISHED")
    assert not {"code_diff.txt", "code_status.txt", "code_cached.txt"} & set(rec.list_artifacts())
    assert "qlib_prefect.version" in rec.list_tags()
    assert "cmd-sys.argv" in rec.list_params()
    if shutil.which("git") is None:  # pragma: no cover - git is installed on CI and here
        pytest.fail("git is required for this test")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 2\n")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    monkeypatch.setenv("_QLIB_SEED", "7")
    rec = _started(exp)
    rec.end_run("FINISHED")
    assert {"code_diff.txt", "code_status.txt", "code_cached.txt"} <= set(rec.list_artifacts())
    assert "+x = 2" in rec.load_text("code_diff.txt")
    assert rec.list_tags()["mlflow.source.git.commit"] == commit
    assert rec.list_params()["_QLIB_SEED"] == "7"


def test_recorder_equality_and_pickle(exp):
    rec = _started(exp)
    running_copy = pickle.loads(pickle.dumps(rec))  # e.g. shipped to a Prefect task
    running_copy.log_metrics(step=3, from_copy=1.0)
    running_copy.end_run("FAILED")  # a copy never ends the run it did not start
    assert exp.get_recorder(recorder_id=rec.id, create=False).status == "RUNNING"
    rec.end_run("FINISHED")
    assert rec.list_metrics()["from_copy"] == 1.0
    again = exp.get_recorder(recorder_id=rec.id, create=False)
    assert again == rec and hash(again) == hash(rec) and isinstance(again, MLflowRecorder)
    by_id = MLflowRecorder.from_run_id(rec.id, exp.uri)
    assert by_id == rec and by_id.status == "FINISHED" and by_id.name == rec.name
    with pytest.raises(RecorderError, match="no MLflow run"):
        MLflowRecorder.from_run_id("f" * 32, exp.uri)
    clone = pickle.loads(pickle.dumps(again))
    assert clone.id == rec.id and clone.list_params() == rec.list_params()


def test_worker_thread_logging_goes_to_the_active_run(r_sqlite):
    from concurrent.futures import ThreadPoolExecutor

    with R.start(experiment_name="threads"):
        rid = R.get_recorder().id
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: R.log_metrics(step=i, loss=float(i)), range(40)))
    rec = R.get_recorder(recorder_id=rid, experiment_name="threads")
    assert sorted(m.step for m in rec.get_metric_history("loss")) == list(range(40))


def test_lean_listing_matches_mlflow_search(exp):
    from qlib_prefect.workflow.exp import lean_list, search_runs_all

    for i in range(5):
        rec = _started(exp, name=f"n{i}")
        rec.set_tags(group="a" if i < 3 else "b")
        rec.end_run("FINISHED" if i != 1 else "FAILED")
    client = exp._client
    lean = lean_list(client, exp.id, tags={"group": "a"}, status="FINISHED")
    assert lean is not None  # the SQL fast path is used on SQLite
    full = search_runs_all(client, [exp.id], "tags.\"group\" = 'a' and attributes.status = 'FINISHED'")
    assert [r.info.run_id for r in lean] == [r.info.run_id for r in full]
    for a, b in zip(lean, full):
        assert (a.info.status, a.info.start_time, a.info.end_time, a.info.artifact_uri, a.info.run_name) == (
            b.info.status, b.info.start_time, b.info.end_time, b.info.artifact_uri, b.info.run_name)


def test_sqlite_lock_errors_are_retried(tmp_path):
    import sqlite3
    import threading

    from qlib_prefect.workflow._store import is_locked_error, retry_locked

    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("create table t (v int)")
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("begin exclusive")
    threading.Timer(0.5, lambda: holder.execute("commit")).start()
    attempts = []

    def write() -> None:
        attempts.append(1)
        with sqlite3.connect(db, timeout=0) as conn:
            conn.execute("insert into t values (1)")

    with pytest.raises(sqlite3.OperationalError) as info:
        write()
    assert is_locked_error(info.value)
    retry_locked(write)  # succeeds once the holder commits
    assert len(attempts) > 2
    assert sqlite3.connect(db).execute("select count(*) from t").fetchone() == (1,)
    with pytest.raises(ZeroDivisionError):
        retry_locked(lambda: 1 / 0)  # other errors are not retried
