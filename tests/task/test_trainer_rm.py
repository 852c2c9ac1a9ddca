"""TrainerRM / DelayTrainerRM on a real MongoDB wire-protocol server (SecantusDB) and a real MLflow SQLite store:
qlib's tags, dedupe with reuse of done tasks, a worker in another process, the delayed begin/end split, and one
end-to-end LightGBM + Alpha158 task trained through the pool with the real ``task_train``."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mongo_server import mongo_server

import qlib_prefect
from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError
from qlib_prefect.task.manage import TaskManager
from qlib_prefect.task.trainer import TrainerR
from qlib_prefect.task.trainer_rm import DelayTrainerRM, TrainerRM
from qlib_prefect.workflow import R

DATA = Path(__file__).resolve().parents[1] / "golden" / "handlers" / "data"  # 24 instruments, qlib format
EXP = "trainer_rm"


@pytest.fixture(scope="module")
def env(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A SecantusDB server, an MLflow SQLite store and qlib_prefect.init pointing at both."""
    store = tmp_path_factory.mktemp("trainer_rm_store")
    tpl = session_tmp / "task-mlflow-template" / "mlflow.db"  # shared with test_trainer.py (schema creation is slow)
    if not tpl.exists():
        from mlflow.tracking import MlflowClient

        tpl.parent.mkdir(parents=True, exist_ok=True)
        build = tpl.with_name(f"build-{os.getpid()}.db")
        MlflowClient(tracking_uri=f"sqlite:///{build}").search_experiments()
        build.replace(tpl)
    shutil.copyfile(tpl, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    with mongo_server() as url:
        cfg = {"provider_uri": str(DATA), "region": "us",
               "exp_manager": {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                               "kwargs": {"uri": uri, "default_exp_name": "Experiment"}},
               "mongo": {"task_url": url, "task_db_name": "qp_trainer_rm"}}
        qlib_prefect.init(**cfg)
        yield {"url": url, "uri": uri, "store": store}
        if R.is_built() and R.exp_manager.active_experiment is not None:
            R.end_exp("FAILED")
        R.reset()
        C.reset()


@pytest.fixture
def pool(env: dict) -> str:
    return f"pool_{uuid.uuid4().hex[:8]}"


def toy_train(task: dict, experiment_name: str, recorder_name: str | None = None) -> Any:
    """A cheap train_func: one recorder per task with the task's params and the training process as a tag."""
    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        R.log_params(**task)
        R.set_tags(trained_by=str(os.getpid()))
        return R.get_recorder()


def toy_end(rec: Any, experiment_name: str) -> Any:
    with R.start(experiment_name=experiment_name, recorder_id=rec.info["id"], resume=True):
        R.log_metrics(double=2 * R.load_object("task")["x"])
    return rec


def n_runs(exp: str) -> int:
    return len(R.list_recorders(experiment_name=exp))


def test_class_paths_resolve_here() -> None:
    assert resolve_class("TrainerRM", "qlib.model.trainer") is TrainerRM
    assert resolve_class("DelayTrainerRM", "qlib.model.trainer") is DelayTrainerRM
    assert issubclass(TrainerRM, TrainerR) and TrainerRM(EXP).has_worker()


def test_trainer_rm_tags_order_and_reuse(env: dict, pool: str) -> None:
    exp = f"{EXP}_reuse"
    tasks = [{"x": 1}, {"x": 2}, {"x": 3}]
    trainer = TrainerRM(exp, pool, train_func=toy_train, poll_interval=0.05)
    assert trainer.train([]) == []
    recs = trainer.train(tasks)
    assert [r.list_params()["x"] for r in recs] == ["1", "2", "3"]
    tm = TaskManager(pool)
    assert tm.task_stat() == {"done": 3}
    for rec in recs:
        tags = rec.list_tags()
        assert tags[TrainerRM.STATUS_KEY] == TrainerRM.STATUS_BEGIN
        assert tm.re_query(tags[TrainerRM.TM_ID])["res"].info["id"] == rec.info["id"]
        assert rec.status == "FINISHED"
    assert n_runs(exp) == 3
    # dedupe: a done task is not trained again, its stored recorder comes back
    again = trainer.train([tasks[1], {"x": 4}])
    assert again[0].info["id"] == recs[1].info["id"] and again[1].list_params()["x"] == "4"
    assert n_runs(exp) == 4
    assert trainer.end_train(recs) == recs
    assert {r.list_tags()[TrainerRM.STATUS_KEY] for r in recs} == {TrainerRM.STATUS_END}


def test_trainer_rm_pool_defaults_to_experiment_name(env: dict) -> None:
    exp = f"{EXP}_{uuid.uuid4().hex[:6]}"
    (rec,) = TrainerRM(exp, train_func=toy_train, poll_interval=0.05).train({"x": 5})
    assert exp in TaskManager.list() and rec.list_params()["x"] == "5"
    with pytest.raises(ConfigError, match="task_pool or an experiment_name"):
        TrainerRM(train_func=toy_train).train([{"x": 1}])


WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    import qlib_prefect
    from qlib_prefect.task.trainer_rm import TrainerRM
    from qlib_prefect.workflow import R

    cfg, exp, pool = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    qlib_prefect.init(**cfg)

    def train(task, experiment_name, recorder_name=None):
        with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
            R.log_params(**task)
            R.set_tags(trained_by=str(os.getpid()))
            return R.get_recorder()

    deadline = time.monotonic() + 120
    n = 0
    while n < int(sys.argv[4]) and time.monotonic() < deadline:
        n += TrainerRM(exp, pool, train_func=train).worker()  # True when it ran tasks
        time.sleep(0.1)
    """
)


def test_skip_run_task_waits_for_a_worker_process(env: dict, pool: str, tmp_path: Path) -> None:
    import json

    exp = f"{EXP}_worker"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cfg = {"provider_uri": str(DATA), "region": "us", "mongo": dict(C["mongo"]),
           "exp_manager": {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": env["uri"], "default_exp_name": "Experiment"}}}
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(cfg), exp, pool, "1"])
    try:
        trainer = TrainerRM(exp, pool, train_func=toy_train, skip_run_task=True, poll_interval=0.1)
        recs = trainer.train([{"x": 10}, {"x": 20}])
    finally:
        assert proc.wait(timeout=180) == 0
    assert [r.list_params()["x"] for r in recs] == ["10", "20"]
    assert {r.list_tags()["trained_by"] for r in recs} == {str(proc.pid)}  # trained by the worker, not here
    assert TaskManager(pool).task_stat() == {"done": 2}


def test_delay_trainer_rm_begin_then_end(env: dict, pool: str) -> None:
    exp = f"{EXP}_delay"
    trainer = DelayTrainerRM(exp, pool, end_train_func=toy_end, poll_interval=0.05)
    assert trainer.is_delay()
    recs = trainer.train([{"x": 1}, {"x": 2}])  # the real begin_task_train: task logged, nothing fitted
    tm = TaskManager(pool)
    assert tm.task_stat() == {"part_done": 2}
    assert [r.load_object("task") for r in recs] == [{"x": 1}, {"x": 2}]
    assert {r.list_tags()[TrainerRM.STATUS_KEY] for r in recs} == {TrainerRM.STATUS_BEGIN}
    assert all("double" not in r.list_metrics() for r in recs)
    out = trainer.end_train(recs)
    assert out == recs and tm.task_stat() == {"done": 2}
    assert [r.list_metrics()["double"] for r in recs] == [2, 4]
    assert {r.list_tags()[TrainerRM.STATUS_KEY] for r in recs} == {TrainerRM.STATUS_END}
    with pytest.raises(ConfigError, match="_id in TaskManager"):
        trainer.end_train(toy_train({"x": 9}, exp))


def test_delay_trainer_rm_worker_fits_part_done_tasks(env: dict, pool: str) -> None:
    exp = f"{EXP}_delay_worker"
    trainer = DelayTrainerRM(exp, pool, end_train_func=toy_end, skip_run_task=True, poll_interval=0.05)
    recs = trainer.train([{"x": 3}])  # preparation always runs here, even with skip_run_task
    assert TaskManager(pool).task_stat() == {"part_done": 1}
    assert DelayTrainerRM(exp, pool, end_train_func=toy_end).worker() is True  # e.g. on a GPU machine
    t0 = time.monotonic()
    trainer.end_train(recs)  # skip_run_task: only waits (already done)
    assert time.monotonic() - t0 < 60
    assert recs[0].list_metrics()["double"] == 6 and TaskManager(pool).task_stat() == {"done": 1}


TASK: dict[str, Any] = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
              "kwargs": {"loss": "mse", "num_boost_round": 10, "num_leaves": 7, "learning_rate": 0.1,
                         "num_threads": 1, "seed": 7}},
    "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
        "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                    "kwargs": {"start_time": "2020-01-02", "end_time": "2020-06-30", "fit_start_time": "2020-01-02",
                               "fit_end_time": "2020-04-30", "instruments": "mkt"}},
        "segments": {"train": ("2020-01-02", "2020-04-30"), "valid": ("2020-05-01", "2020-05-29"),
                     "test": ("2020-06-01", "2020-06-30")}}},
    "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}


def test_trainer_rm_end_to_end_lightgbm(env: dict, pool: str) -> None:
    exp = f"{EXP}_lgb"
    trainer = TrainerRM(exp, pool, poll_interval=0.05)  # the real task_train
    (rec,) = trainer(copy.deepcopy(TASK))
    assert rec.status == "FINISHED" and rec.list_tags()[TrainerRM.STATUS_KEY] == TrainerRM.STATUS_END
    assert {"task", "params.pkl", "dataset", "pred.pkl", "label.pkl"} <= set(rec.list_artifacts())
    pred = rec.load_object("pred.pkl")
    assert list(pred.columns) == ["score"] and len(pred) > 0
    assert rec.load_object("task") == TASK
    assert TaskManager(pool).re_query(rec.list_tags()[TrainerRM.TM_ID])["status"] == "done"
    (again,) = trainer.train(copy.deepcopy(TASK))  # already done in the pool: reused
    assert again.info["id"] == rec.info["id"] and n_runs(exp) == 1
