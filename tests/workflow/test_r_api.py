"""End-to-end tests of ``R`` on a real SQLite store (qlib semantics of spec section 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import qlib_prefect
from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError, RecorderError
from qlib_prefect.workflow import MLflowExpManager, MLflowRecorder, R, Recorder


def test_r_end_to_end(r_sqlite, sqlite_uri, tmp_path):
    assert isinstance(R.exp_manager, MLflowExpManager)
    assert R.get_uri() == sqlite_uri
    pred = pd.DataFrame({"score": [0.1, 0.2]}, index=pd.Index(["a", "b"], name="instrument"))
    with R.start(experiment_name="e2e") as exp:
        assert exp.name == "e2e"
        R.log_params(lr=0.1, depth=8)
        R.log_metrics(step=0, loss=1.0)
        R.log_metrics(step=1, loss=0.5)
        R.set_tags(model="lgb")
        R.save_objects(**{"pred.pkl": pred})
        R.save_objects(artifact_path="sig_analysis", **{"ic.pkl": pd.Series([0.1, 0.2])})
        f = tmp_path / "note.txt"
        f.write_text("hello")
        R.log_artifact(str(f), "notes")
        rec = R.get_recorder()
        assert isinstance(rec, MLflowRecorder)
        assert rec.status == Recorder.STATUS_R
        assert rec.name == "mlflow_recorder"
        pd.testing.assert_frame_equal(R.load_object("pred.pkl"), pred)
        dl = R.download_artifact("notes/note.txt", str(tmp_path))
        assert Path(dl).read_text() == "hello"
    assert rec.status == Recorder.STATUS_FI
    got = R.get_recorder(recorder_id=rec.id, experiment_name="e2e")
    assert got.status == "FINISHED" and got.info["end_time"] is not None
    assert got.list_params()["lr"] == "0.1"
    assert "cmd-sys.argv" in got.list_params()
    assert got.list_metrics() == {"loss": 0.5}
    assert [(m.step, m.value) for m in got.get_metric_history("loss")] == [(0, 1.0), (1, 0.5)]
    assert got.list_tags()["model"] == "lgb"
    assert got.list_tags()["mlflow.runName"] == "mlflow_recorder"
    assert set(got.list_artifacts()) >= {"pred.pkl", "sig_analysis", "notes"}
    assert got.list_artifacts("sig_analysis") == ["sig_analysis/ic.pkl"]
    pd.testing.assert_series_equal(got.load_object("sig_analysis/ic.pkl"), pd.Series([0.1, 0.2]))
    # by name, newest first; list / search / experiments
    assert R.get_recorder(recorder_name="mlflow_recorder", experiment_name="e2e").id == rec.id
    assert list(R.list_recorders(experiment_name="e2e")) == [rec.id]
    assert "e2e" in R.list_experiments()
    exp_id = R.get_exp(experiment_name="e2e").id
    runs = R.search_records([exp_id], filter_string="tags.model = 'lgb'")
    assert [r.info.run_id for r in runs] == [rec.id]
    # artifacts live under <db folder>/artifacts, not the CWD
    assert Path(got.get_local_dir()).is_relative_to(Path(sqlite_uri[len("sqlite:///"):]).parent / "artifacts")
    # delete recorder / experiment
    R.get_exp(experiment_name="e2e", start=False)
    with R.start(experiment_name="e2e"):
        pass
    assert len(R.list_recorders(experiment_name="e2e")) == 2
    R.get_exp(experiment_name="e2e").delete_recorder(rec.id)
    assert rec.id not in R.list_recorders(experiment_name="e2e")
    R.delete_exp(experiment_name="e2e")
    assert "e2e" not in R.list_experiments()
    with pytest.raises(ValueError):
        R.get_exp(experiment_name="e2e", create=False)


def test_failed_on_exception_and_reraise(r_sqlite):
    with pytest.raises(KeyError, match="boom"):
        with R.start(experiment_name="fail"):
            rid = R.get_recorder().id
            R.log_metrics(x=1.0)
            raise KeyError("boom")
    assert R.exp_manager.active_experiment is None
    rec = R.get_recorder(recorder_id=rid, experiment_name="fail")
    assert rec.status == "FAILED"
    assert rec.list_metrics() == {"x": 1.0}


def test_defaults_and_auto_start(r_sqlite):
    R.log_metrics(ic=0.3)  # nothing active: default experiment + default run, left RUNNING
    exp = R.exp_manager.active_experiment
    assert exp.name == "Experiment"
    rec = R.get_recorder()
    assert rec.name == "mlflow_recorder" and rec.status == "RUNNING"
    R.end_exp()  # R.end_exp defaults to FINISHED
    assert R.get_recorder(recorder_id=rec.id).status == "FINISHED"
    # outside R.start, get_recorder falls back to the newest run named "mlflow_recorder"
    assert R.get_recorder().id == rec.id
    # save_objects/load_object outside start reuse that run (not restarted)
    R.save_objects(**{"x.pkl": 1})
    assert R.load_object("x.pkl") == 1
    assert R.exp_manager.active_experiment is None
    with pytest.raises(ValueError):
        R.get_recorder(recorder_id="0" * 32)
    with pytest.raises(ValueError):
        R.get_exp(experiment_name="missing", create=False)


def test_resume_semantics(r_sqlite):
    with R.start(experiment_name="res", recorder_name="r1"):
        R.log_params(a=1)
        rid = R.get_recorder().id
    # resume=False ignores the id: a new run
    with R.start(experiment_name="res", recorder_id=rid):
        assert R.get_recorder().id != rid
    # resume=True reopens the same run, keeps its data, and params can still be added
    with R.start(experiment_name="res", recorder_id=rid, resume=True):
        rec = R.get_recorder()
        assert rec.id == rid and rec.status == "RUNNING"
        assert MlflowClient(R.get_uri()).get_run(rid).info.status == "RUNNING"
        R.log_params(b=2)
    rec = R.get_recorder(recorder_id=rid, experiment_name="res")
    assert rec.status == "FINISHED"
    assert {"a": "1", "b": "2"}.items() <= rec.list_params().items()
    # resume by name; unknown name -> created
    with R.start(experiment_name="res", recorder_name="r1", resume=True):
        assert R.get_recorder().id == rid
    with R.start(experiment_name="res", recorder_name="new", resume=True):
        assert R.get_recorder().id != rid


def test_uri_api(r_sqlite, sqlite_uri, tmp_path, new_store):
    other = new_store(tmp_path / "other")
    with R.uri_context(other):
        assert R.get_uri() == other
        with R.start(experiment_name="ctx"):
            R.log_metrics(m=1.0)
        assert "ctx" in R.list_experiments()
    assert R.get_uri() == sqlite_uri
    assert "ctx" not in R.list_experiments()
    with R.start(experiment_name="tmp", uri=other):  # temporary uri for one experiment
        assert R.get_uri() == other
    assert R.get_uri() == sqlite_uri
    R.set_uri(other)
    assert R.get_uri() == other and "tmp" in R.list_experiments()


def test_file_uri_is_refused_with_advice(tmp_path, monkeypatch, configure):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match=r"sqlite:///.*mlflow\.db"):
        configure(f"file:{tmp_path}/mlruns")


def test_default_store_without_init(tmp_path, monkeypatch, new_store):
    new_store(tmp_path / "mlruns")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QLIB_PREFECT_MLFLOW_URI", raising=False)
    R.reset()
    C.reset()
    with R.start():
        R.save_objects(**{"o.pkl": [1]})
        rec = R.get_recorder()
    assert R.get_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert Path(rec.get_local_dir()).is_relative_to(tmp_path.resolve() / "mlruns" / "artifacts")


def test_env_var_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env' / 'mlflow.db'}"
    monkeypatch.setenv("QLIB_PREFECT_MLFLOW_URI", uri)
    R.reset()
    C.reset()
    assert R.get_uri() == uri


def test_reinit_while_active_is_refused(r_sqlite, sqlite_uri):
    R.start_exp(experiment_name="active")
    with pytest.raises(RecorderError, match="already active"):
        R.start_exp(experiment_name="other")
    with pytest.raises(RecorderError, match="reinitialize"):
        qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "kwargs": {"uri": sqlite_uri}})
    R.end_exp()


def test_config_hash_tag(r_sqlite):
    from qlib_prefect.workflow.lineage import CONFIG_HASH_TAG, config_hash

    cfg = {"model": {"class": "LGBModel"}, "seed": 1}
    with R.start(experiment_name="cfg", config=cfg):
        rec = R.get_recorder()
    assert rec.list_tags()[CONFIG_HASH_TAG] == config_hash(cfg)
    found = R.get_exp(experiment_name="cfg").list_recorders(tags={CONFIG_HASH_TAG: config_hash(cfg)})
    assert list(found) == [rec.id]


_EXIT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import qlib_prefect
    from qlib_prefect.workflow import R
    qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                   "kwargs": {"uri": sys.argv[1]}})
    mode = sys.argv[2]
    R.start_exp(experiment_name="exit-" + mode)
    R.log_metrics(step=0, v=1.0)
    print(R.get_recorder().id, flush=True)
    if mode == "raise":
        raise RuntimeError("uncaught")
    if mode == "ctrlc":
        raise KeyboardInterrupt
    """
)


def test_exit_handler_statuses_in_subprocesses(tmp_path, sqlite_uri):
    uri = sqlite_uri
    script = tmp_path / "exit_script.py"
    script.write_text(_EXIT_SCRIPT)
    modes = {"normal": "FINISHED", "raise": "FAILED", "ctrlc": "FAILED"}
    procs = {
        m: subprocess.Popen([sys.executable, str(script), uri, m], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=dict(os.environ))
        for m in modes
    }
    client = MlflowClient(uri)
    for mode, want in modes.items():
        out, err = procs[mode].communicate(timeout=240)
        rid = out.decode().split()[0]
        run = client.get_run(rid)
        assert run.info.status == want, (mode, err.decode()[-2000:])
        assert run.data.metrics == {"v": 1.0}
        if mode == "raise":
            assert b"RuntimeError: uncaught" in err


_RACE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from qlib_prefect.workflow.expm import MLflowExpManager
    start_at = float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))
    m = MLflowExpManager(uri=sys.argv[1])
    exp = m.get_exp(experiment_name="raced")
    print(exp.id)
    """
)


def test_two_processes_create_same_experiment(tmp_path):
    """A fresh DB: the schema creation and the experiment creation race; one experiment, no error."""
    uri = f"sqlite:///{tmp_path / 'race' / 'mlflow.db'}"
    script = tmp_path / "race.py"
    script.write_text(_RACE_SCRIPT)
    start_at = time.time() + 6.0  # both processes have imported mlflow by then
    procs = [
        subprocess.Popen([sys.executable, str(script), uri, str(start_at)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=tmp_path)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()[-3000:]
    ids = {out.decode().strip() for out, _ in outs}
    assert len(ids) == 1
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("raced") == 1
