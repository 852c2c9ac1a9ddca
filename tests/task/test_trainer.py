"""task_train / TrainerR / DelayTrainerR on real qlib-format data (Alpha158 + a tiny LightGBM) and a real MLflow
SQLite store; the trained rolling runs are then collected and merged (RecorderCollector + RollingGroup)."""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError
from qlib_prefect.model.base import Model
from qlib_prefect.task import trainer as trainer_mod
from qlib_prefect.task.collect import RecorderCollector
from qlib_prefect.task.ens import RollingGroup
from qlib_prefect.task.gen import RollingGen
from qlib_prefect.task.trainer import (
    DelayTrainerR,
    Trainer,
    TrainerR,
    begin_task_train,
    end_task_train,
    task_train,
)
from qlib_prefect.utils import init_instance_by_config
from qlib_prefect.workflow import R
from qlib_prefect.workflow.record_temp import RecordTemp

DATA = Path(__file__).resolve().parents[1] / "golden" / "handlers" / "data"  # 24 quirky instruments, qlib format
EXP = "rolling_train"

TASK: dict[str, Any] = {
    "model": {
        "class": "LGBModel",
        "module_path": "qlib.contrib.model.gbdt",
        "kwargs": {"loss": "mse", "num_boost_round": 20, "num_leaves": 7, "learning_rate": 0.1, "num_threads": 1,
                   "seed": 7},
    },
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158",
                "module_path": "qlib.contrib.data.handler",
                "kwargs": {"start_time": "2020-01-02", "end_time": "2020-06-30", "fit_start_time": "2020-01-02",
                           "fit_end_time": "2020-04-30", "instruments": "mkt"},
            },
            "segments": {"train": ("2020-01-02", "2020-04-30"), "valid": ("2020-05-01", "2020-05-29"),
                         "test": ("2020-06-01", "2020-08-14")},
        },
    },
    "record": [
        {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
         "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
        {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp",
         "kwargs": {"ana_long_short": False, "ann_scaler": 252}},
    ],
}


def store_uri(session_tmp: Path, folder: Path) -> str:
    """A fresh MLflow SQLite store in ``folder``, copied from a per-process template (schema creation is slow)."""
    tpl = session_tmp / "task-mlflow-template" / "mlflow.db"
    if not tpl.exists():
        from mlflow.tracking import MlflowClient

        tpl.parent.mkdir(parents=True, exist_ok=True)
        build = tpl.with_name(f"build-{os.getpid()}.db")
        MlflowClient(tracking_uri=f"sqlite:///{build}").search_experiments()
        build.replace(tpl)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tpl, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


#: artifacts our runs carry beyond qlib's (the per-run research report)
OUR_EXTRA_ARTIFACTS = {"report.html"}


def artifacts(rec: Any) -> set[str]:
    out: set[str] = set()
    for top in rec.list_artifacts():
        out.add(top)
        if "." not in top:
            out.update(rec.list_artifacts(top))
    return out


def test_seg(rec: Any) -> tuple:
    return tuple(rec.load_object("task")["dataset"]["kwargs"]["segments"]["test"])


test_seg.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def env(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """R on a fresh SQLite store, the golden data as provider, 3 rolling tasks trained with TrainerR."""
    uri = store_uri(session_tmp, tmp_path_factory.mktemp("trainer_store"))
    qlib_prefect.init(provider_uri=str(DATA), region="us", exp_manager={
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": "Experiment"}})
    tasks = RollingGen(step=20).generate(copy.deepcopy(TASK))
    tasks_before = copy.deepcopy(tasks)
    trainer = TrainerR(experiment_name=EXP)
    recs = trainer.train(tasks)
    tags_after_train = [r.list_tags()[TrainerR.STATUS_KEY] for r in recs]
    trainer.end_train(recs)
    yield {"tasks": tasks, "tasks_before": tasks_before, "recs": recs, "tags_after_train": tags_after_train}
    if R.is_built() and R.exp_manager.active_experiment is not None:
        R.end_exp("FAILED")
    R.reset()
    C.reset()


def test_qlib_class_paths_resolve_here() -> None:
    for name in ("TrainerR", "DelayTrainerR"):
        assert resolve_class(name, "qlib.model.trainer") is getattr(trainer_mod, name)


def test_task_train_run_has_qlib_artifacts_params_and_tags(env: dict) -> None:
    rec, task = env["recs"][0], env["tasks_before"][0]
    assert rec.status == "FINISHED"
    assert R.get_exp(experiment_name=EXP).get_recorder(recorder_id=rec.id).status == "FINISHED"
    assert {"task", "params.pkl", "dataset", "pred.pkl", "label.pkl", "sig_analysis/ic.pkl",
            "sig_analysis/ric.pkl"} <= artifacts(rec)
    # the task artifact is the task as given (placeholders unfilled, tuples kept)
    assert rec.load_object("task") == task
    params = rec.list_params()
    assert params["model.class"] == "LGBModel"
    assert params["model.kwargs.num_boost_round"] == "20"
    assert params["dataset.kwargs.handler.class"] == "Alpha158"
    assert params["dataset.kwargs.segments.test"] == str(task["dataset"]["kwargs"]["segments"]["test"])
    assert "record" in params  # a list is not flattened (qlib)
    tags = rec.list_tags()
    assert tags["hostname"] and tags[TrainerR.STATUS_KEY] == TrainerR.STATUS_END
    metrics = rec.list_metrics()
    ic = rec.load_object("sig_analysis/ic.pkl")
    assert metrics["IC"] == pytest.approx(ic.mean())
    assert {"l2.train", "l2.valid"} <= set(metrics)  # per-iteration LightGBM history (qlib names)


def test_saved_model_and_dataset_reproduce_pred(env: dict) -> None:
    rec = env["recs"][0]
    task = rec.load_object("task")
    model = rec.load_object("params.pkl")
    assert type(model).__name__ == "LGBModel" and model.num_boost_round == 20
    dataset = init_instance_by_config(task["dataset"])
    pred = rec.load_object("pred.pkl")
    assert list(pred.columns) == ["score"]
    np.testing.assert_array_equal(pred["score"].to_numpy(), model.predict(dataset).to_numpy())
    label = rec.load_object("label.pkl")
    pd.testing.assert_frame_equal(label, dataset.prepare("test", col_set="label", data_key="raw"))
    # the dataset artifact is the config only (no loaded data): small, and still knows its segments
    ds_art = rec.load_object("dataset")
    assert ds_art.segments == dataset.segments
    assert not hasattr(ds_art.handler, "_data") and hasattr(dataset.handler, "_data")
    assert os.path.getsize(rec.get_artifact_path("dataset")) < 100_000  # the loaded features are ~1.5 MB


def test_trainer_r_over_rolling_tasks(env: dict) -> None:
    tasks, recs = env["tasks"], env["recs"]
    assert len(tasks) == 3 and len(recs) == 3
    assert env["tags_after_train"] == [TrainerR.STATUS_BEGIN] * 3
    assert [test_seg(r) for r in recs] == [tuple(t["dataset"]["kwargs"]["segments"]["test"]) for t in tasks]
    cal = pd.DatetimeIndex(pd.read_csv(DATA / "calendars" / "day.txt", header=None)[0])
    for rec, task in zip(recs, tasks):
        start, end = task["dataset"]["kwargs"]["segments"]["test"]
        dates = rec.load_object("pred.pkl").index.get_level_values("datetime").unique()
        window = cal[(cal >= start) & (cal <= end)]
        assert len(window) == 20 and dates.min() == window[0] and dates.max() <= window[-1]
    # our deviation: placeholders are filled on a copy, the caller's tasks are untouched
    assert tasks == env["tasks_before"]


def test_collect_rolling_runs_and_merge(env: dict) -> None:
    def key(rec):
        task = rec.load_object("task")
        return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]

    collected = RecorderCollector(EXP, rec_key_func=key, rec_filter_func=lambda r: r in env["recs"]).collect()
    assert set(collected["pred"]) == {("LGBModel", test_seg(r)) for r in env["recs"]}
    merged = RollingGroup()(collected["pred"])
    assert list(merged) == [("LGBModel",)]
    expected = pd.concat([r.load_object("pred.pkl") for r in env["recs"]]).sort_index()
    pd.testing.assert_frame_equal(merged[("LGBModel",)], expected)
    assert merged[("LGBModel",)].index.get_level_values("datetime").min() == pd.Timestamp("2020-06-01")


def test_delay_trainer_begin_then_end(env: dict) -> None:
    calls: list[str] = []

    def counted_end(rec, experiment_name, **kw):
        calls.append(rec.id)
        return end_task_train(rec, experiment_name, **kw)

    task = env["tasks_before"][0]
    trainer = DelayTrainerR(experiment_name="delay", end_train_func=counted_end)
    assert trainer.is_delay()
    recs = trainer.train([copy.deepcopy(task)])
    rec = recs[0]
    assert rec.list_tags()[TrainerR.STATUS_KEY] == TrainerR.STATUS_BEGIN
    assert artifacts(rec) >= {"task"} and "params.pkl" not in artifacts(rec)
    assert rec.load_object("task") == task
    trainer.end_train(recs)
    assert calls == [rec.id]
    assert rec.list_tags()[TrainerR.STATUS_KEY] == TrainerR.STATUS_END
    assert {"params.pkl", "dataset", "pred.pkl", "sig_analysis/ic.pkl"} <= artifacts(rec)
    # resumed run finished again; the same task gives the same predictions as the direct TrainerR run
    assert R.get_exp(experiment_name="delay").get_recorder(recorder_id=rec.id).status == "FINISHED"
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), env["recs"][0].load_object("pred.pkl"))
    trainer.end_train(rec)  # already ended: skipped
    assert calls == [rec.id]


class MeanModel(Model):
    """Predicts the train-label mean; its ``fit`` has no ``reweighter`` (qlib filters that argument out)."""

    def fit(self, dataset) -> None:
        self.mean = float(dataset.prepare("train", col_set="label", data_key="learn").iloc[:, 0].mean())

    def predict(self, dataset, segment="test") -> pd.Series:
        x = dataset.prepare(segment, col_set="feature", data_key="infer")
        return pd.Series(self.mean, index=x.index)


class EchoRecord(RecordTemp):
    """Saves what it was given (model/dataset via try_kwargs, a dotted placeholder value)."""

    def __init__(self, recorder=None, model=None, dataset=None, value=None) -> None:
        super().__init__(recorder=recorder)
        self.model, self.dataset, self.value = model, dataset, value

    def generate(self, **kwargs) -> None:
        self.save(**{"echo.pkl": {"model": type(self.model).__name__, "dataset": type(self.dataset).__name__,
                                  "value": self.value}})


class ModelOnlyRecord(EchoRecord):
    """Accepts ``model`` but not ``dataset``: qlib's try_kwargs are all-or-nothing, so it gets neither."""

    def __init__(self, recorder=None, model=None) -> None:
        super().__init__(recorder=recorder, model=model)

    def generate(self, **kwargs) -> None:
        self.save(**{"model_only.pkl": type(self.model).__name__})


def test_placeholders_try_kwargs_and_fit_kwarg_filter(env: dict) -> None:
    task = copy.deepcopy(env["tasks_before"][0])
    task["model"] = {"class": MeanModel}
    task["reweighter"] = None
    task["record"] = {"class": EchoRecord, "kwargs": {"value": "<dataset.kwargs.segments.test.0>"}}  # one dict
    rec = task_train(task, "placeholders")
    echo = rec.load_object("echo.pkl")
    assert echo == {"model": "MeanModel", "dataset": "DatasetH",
                    "value": task["dataset"]["kwargs"]["segments"]["test"][0]}
    assert isinstance(rec.load_object("params.pkl"), MeanModel)
    assert task["record"]["kwargs"]["value"] == "<dataset.kwargs.segments.test.0>"  # caller's dict untouched
    # explicit <MODEL> placeholder vs try_kwargs
    task["record"] = [{"class": ModelOnlyRecord}, {"class": ModelOnlyRecord, "kwargs": {"model": "<MODEL>"}}]
    rec = task_train(task, "placeholders")
    assert rec.load_object("model_only.pkl") == "MeanModel"  # second record (same artifact name) overwrote
    task["record"] = [{"class": ModelOnlyRecord}]
    rec = task_train(task, "placeholders")
    assert rec.load_object("model_only.pkl") == "NoneType"


def test_failing_task_leaves_a_failed_run_that_is_not_collected(env: dict) -> None:
    bad = copy.deepcopy(env["tasks_before"][0])
    bad["model"] = {"class": "NoSuchModel", "module_path": "qlib.contrib.model.gbdt"}
    with pytest.raises(ConfigError, match="NoSuchModel"):
        TrainerR(experiment_name="failing").train(bad)
    recs = R.get_exp(experiment_name="failing").list_recorders()
    assert [r.status for r in recs.values()] == ["FAILED"]
    assert RecorderCollector("failing", artifacts_key="__raw").collect() == {}
    assert len(RecorderCollector("failing", artifacts_key="__raw", status=None).collect()["__raw"]) == 1




def test_trainer_base_and_inputs(env: dict) -> None:
    with pytest.raises(NotImplementedError):
        Trainer().train([])
    with pytest.raises(NotImplementedError):
        Trainer().worker()
    assert not Trainer().is_delay() and not TrainerR().has_worker()
    assert Trainer().end_train([1]) == [1]
    assert TrainerR(experiment_name=EXP).train([]) == []
    # a train_func given to train() replaces the default; a single dict is one task
    seen: list = []

    def fake_train(task, experiment_name, recorder_name=None, **kw):
        seen.append((experiment_name, recorder_name, kw))
        return begin_task_train(task, experiment_name, recorder_name)

    recs = TrainerR(experiment_name="other", default_rec_name="named").train(
        {"model": {}, "dataset": {}}, train_func=fake_train, extra=1)
    assert seen == [("other", "named", {"extra": 1})]
    assert recs[0].name == "named" and recs[0].list_tags()[TrainerR.STATUS_KEY] == TrainerR.STATUS_BEGIN


@pytest.mark.slow
def test_call_in_subproc(env: dict) -> None:
    task = copy.deepcopy(env["tasks_before"][0])
    recs = TrainerR(experiment_name="subproc", call_in_subproc=True)(task)
    rec = recs[0]
    assert rec.list_tags()[TrainerR.STATUS_KEY] == TrainerR.STATUS_END
    assert R.get_exp(experiment_name="subproc").get_recorder(recorder_id=rec.id).status == "FINISHED"
    pd.testing.assert_frame_equal(rec.load_object("pred.pkl"), env["recs"][0].load_object("pred.pkl"))


_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")
#: The same rolling pipeline for qlib (argv[1] == "qlib") and qlib-prefect: RollingGen(step=20) -> TrainerR ->
#: RecorderCollector(rec_key_func=(model class, test segment), RollingGroup) + DelayTrainerR + AverageEnsemble.
_PIPELINE = textwrap.dedent(r"""
    import copy, pickle, sys, tempfile, time
    from pathlib import Path
    which, out, DATA, TASK = sys.argv[1], sys.argv[2], sys.argv[3], pickle.loads(Path(sys.argv[4]).read_bytes())
    tmp = Path(tempfile.mkdtemp())
    if which == "qlib":
        import qlib
        qlib.init(provider_uri=DATA, region="us", kernels=1, exp_manager={
            "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": f"file:{tmp}/mlruns", "default_exp_name": "Experiment"}})
        from qlib.model.ens.ensemble import AverageEnsemble
        from qlib.model.ens.group import RollingGroup
        from qlib.model.trainer import DelayTrainerR, TrainerR
        from qlib.workflow.task.collect import RecorderCollector
        from qlib.workflow.task.gen import RollingGen
    else:
        import qlib_prefect
        qlib_prefect.init(provider_uri=DATA, region="us", exp_manager={
            "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": f"sqlite:///{tmp}/mlflow.db", "default_exp_name": "Experiment"}})
        from qlib_prefect.task.collect import RecorderCollector
        from qlib_prefect.task.ens import AverageEnsemble, RollingGroup
        from qlib_prefect.task.gen import RollingGen
        from qlib_prefect.task.trainer import DelayTrainerR, TrainerR

    def key(rec):
        t = rec.load_object("task")
        return t["model"]["class"], t["dataset"]["kwargs"]["segments"]["test"]

    def artifacts(rec, path=None):
        res = []
        for f in rec.client.list_artifacts(rec.id, path):
            res.append(f.path)
            if f.is_dir:
                res += artifacts(rec, f.path)
        return sorted(res)

    t0 = time.time()
    tasks = RollingGen(step=20).generate(copy.deepcopy(TASK))
    segments = copy.deepcopy([t["dataset"]["kwargs"]["segments"] for t in tasks])
    handler_ends = [t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] for t in tasks]
    recs = TrainerR(experiment_name="roll")(tasks)
    t_train = time.time() - t0
    coll = RecorderCollector(experiment="roll", rec_key_func=key, process_list=RollingGroup(),
                             artifacts_path={"pred": "pred.pkl", "ic": "sig_analysis/ic.pkl"})()
    # fresh tasks: qlib's TrainerR filled the placeholders of `tasks` in place (a DelayTrainerR on them fails)
    drecs = DelayTrainerR(experiment_name="delay")(RollingGen(step=20).generate(copy.deepcopy(TASK))[:1])
    res = {"segments": segments, "handler_ends": handler_ends, "pred": coll["pred"], "ic": coll["ic"],
           "artifacts": [a for a in artifacts(recs[0]) if not a.startswith("code_")],
           "tags": [rec.list_tags().get("train_status") for rec in recs], "params": sorted(recs[0].list_params()),
           "metrics": recs[0].list_metrics(), "delay_pred": drecs[0].load_object("pred.pkl"),
           "delay_tag": drecs[0].list_tags().get("train_status"),
           "avg": AverageEnsemble()({"a": recs[0].load_object("pred.pkl"), "b": recs[1].load_object("pred.pkl")}),
           "t_train": t_train}
    pickle.dump(res, open(out, "wb"))
""")


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_same_rolling_results_as_real_qlib(tmp_path: Path) -> None:
    """Opt-in (~2 min): ``QLIB_ORACLE_PYTHON=/work/qlib-venv/bin/python pytest -m qlib tests/task/test_trainer.py``."""
    script = tmp_path / "pipeline.py"
    script.write_text(_PIPELINE)
    (tmp_path / "task.pkl").write_bytes(pickle.dumps(TASK))
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    res = {}
    for which, python in (("qlib", _ORACLE), ("ours", sys.executable)):
        r = subprocess.run([python, str(script), which, str(tmp_path / f"{which}.pkl"), str(DATA),
                            str(tmp_path / "task.pkl")], env=env,
                           capture_output=True, text=True, timeout=1800, cwd=tmp_path)
        assert r.returncode == 0, f"{which}: {r.stderr[-3000:]}"
        res[which] = pickle.loads((tmp_path / f"{which}.pkl").read_bytes())
    q, o = res["qlib"], res["ours"]
    # ours adds the research report to every run (issue 14; docs/report.md); every artifact of qlib's is there
    assert [a for a in o["artifacts"] if a not in OUR_EXTRA_ARTIFACTS] == q["artifacts"], "artifacts"
    for key in ("segments", "handler_ends", "tags", "params", "delay_tag"):
        assert o[key] == q[key], key
    assert sorted(o["metrics"]) == sorted(q["metrics"])
    assert o["metrics"]["IC"] == pytest.approx(q["metrics"]["IC"], rel=1e-9)
    assert list(o["pred"]) == list(q["pred"]) == [("LGBModel",)]
    # same rows, same bits; only the datetime unit differs (ours ns, qlib us: a data-layer choice), hence
    # check_index_type=False
    exact = {"check_exact": True, "check_index_type": False}
    pd.testing.assert_frame_equal(o["pred"][("LGBModel",)], q["pred"][("LGBModel",)], **exact)
    pd.testing.assert_frame_equal(o["delay_pred"], q["delay_pred"], **exact)
    assert list(o["ic"]) == list(q["ic"])
    for k in q["ic"]:
        pd.testing.assert_series_equal(o["ic"][k], q["ic"][k], rtol=1e-12, check_index_type=False)
    pd.testing.assert_series_equal(o["avg"], q["avg"], check_names=False, rtol=1e-12, atol=1e-13,
                                   check_index_type=False)
