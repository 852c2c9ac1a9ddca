"""Collector / MergeCollector / RecorderCollector on a real MLflow SQLite store (qlib's collect.py semantics)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError, LoadObjectError
from qlib_prefect.task import collect as collect_mod
from qlib_prefect.task.collect import Collector, MergeCollector, RecorderCollector
from qlib_prefect.task.ens import AverageEnsemble, RollingGroup
from qlib_prefect.workflow import R

EXP = "rolling_collect"
INSTS = ["A", "B", "C"]


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


def pred_frame(start: str, periods: int, seed: int) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=periods)
    idx = pd.MultiIndex.from_product([dates, INSTS], names=["datetime", "instrument"])
    return pd.DataFrame({"score": np.random.default_rng(seed).standard_normal(len(idx))}, index=idx)


def seg(pred: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    d = pred.index.get_level_values("datetime")
    return d.min(), d.max()


def rolling_key(rec) -> tuple:
    task = rec.load_object("task")
    return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]


def log_run(model: str, pred: pd.DataFrame | None, *, fail: bool = False, tags: dict | None = None,
            extra: dict | None = None) -> str:
    """One recorder in EXP holding ``task`` (+ ``pred.pkl`` unless None); FAILED if ``fail``."""
    task = {"model": {"class": model, "module_path": "qlib.contrib.model.gbdt"},
            "dataset": {"kwargs": {"segments": {"test": seg(pred) if pred is not None else None}}}}
    objs = {"task": task, **({"pred.pkl": pred} if pred is not None else {}), **(extra or {})}

    class Boom(Exception):
        pass

    rid = ""
    try:
        with R.start(experiment_name=EXP):
            rid = R.get_recorder().id
            R.save_objects(**objs)
            R.set_tags(model=model.lower(), **(tags or {}))
            if fail:
                raise Boom
    except Boom:
        pass
    return rid


@pytest.fixture(scope="module")
def runs(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    uri = store_uri(session_tmp, tmp_path_factory.mktemp("collect_store"))
    qlib_prefect.init(region="us", exp_manager={
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": "Experiment"}})
    w1 = pred_frame("2020-01-01", 10, 1)
    w2 = pred_frame("2020-01-10", 10, 2)   # starts inside w1's dates -> overlap
    w3 = pred_frame("2020-01-29", 5, 3)
    mlp = pred_frame("2020-01-01", 10, 4)
    ids = {
        "w2": log_run("LGBModel", w2, extra={"sig_analysis/ic.pkl": pd.Series([0.1, 0.2])}),
        "w1": log_run("LGBModel", w1),
        "w3": log_run("LGBModel", w3),
        "mlp": log_run("MLPModel", mlp),
        "failed": log_run("LGBModel", pred_frame("2020-02-05", 5, 5), fail=True),
        "nopred": log_run("XGBModel", None),
    }
    yield {"ids": ids, "w1": w1, "w2": w2, "w3": w3, "mlp": mlp}
    if R.is_built() and R.exp_manager.active_experiment is not None:
        R.end_exp("FAILED")
    R.reset()
    C.reset()


def test_qlib_class_paths_resolve_here() -> None:
    for name in ("Collector", "MergeCollector", "RecorderCollector"):
        assert resolve_class(name, "qlib.workflow.task.collect") is getattr(collect_mod, name)


def test_default_collects_finished_pred_by_run_id(runs: dict) -> None:
    ids = runs["ids"]
    out = RecorderCollector(EXP).collect()
    assert list(out) == ["pred"]
    # FAILED run excluded (status filter), the run without pred.pkl skipped (only_exist=True)
    assert set(out["pred"]) == {ids["w1"], ids["w2"], ids["w3"], ids["mlp"]}
    pd.testing.assert_frame_equal(out["pred"][ids["w2"]], runs["w2"])
    assert R.get_exp(experiment_name=EXP).get_recorder(recorder_id=ids["failed"]).status == "FAILED"


def test_status_filter_is_pushed_to_the_store(runs: dict) -> None:
    exp = R.get_exp(experiment_name=EXP)
    calls: list[dict] = []
    real = exp.list_recorders

    def spy(**kwargs):
        calls.append(kwargs)
        res = real(**kwargs)
        calls[-1]["statuses"] = {r.status for r in res.values()}
        return res

    exp.list_recorders = spy  # instance attribute: records what RecorderCollector asks the store
    RecorderCollector(exp).collect()
    assert calls[-1]["status"] == "FINISHED" and calls[-1]["statuses"] == {"FINISHED"}
    out = RecorderCollector(exp, status={"FINISHED", "FAILED"}).collect()
    assert calls[-1]["filter_string"] == ("attributes.status != 'SCHEDULED' and attributes.status != 'RUNNING' "
                                          "and attributes.status != 'KILLED'")
    assert calls[-1]["statuses"] == {"FINISHED", "FAILED"}
    assert runs["ids"]["failed"] in out["pred"] and len(out["pred"]) == 5
    out_all = RecorderCollector(exp, status=None).collect(artifacts_key="__raw")
    assert "status" not in calls[-1] and len(out_all["__raw"]) == 6
    # user filter_string combined with the status filter; list_kwargs status narrows further
    RecorderCollector(exp, status={"FINISHED", "FAILED"},
                      list_kwargs={"filter_string": "tags.model = 'lgbmodel'"}).collect()
    assert calls[-1]["filter_string"].startswith("tags.model = 'lgbmodel' and attributes.status != 'SCHEDULED'")
    assert calls[-1]["statuses"] == {"FINISHED", "FAILED"}
    assert RecorderCollector(exp, list_kwargs={"status": "FAILED"}).collect() == {}


def test_rolling_key_and_rolling_group_later_window_wins(runs: dict) -> None:
    out = RecorderCollector(EXP, rec_key_func=rolling_key, process_list=RollingGroup())()
    assert set(out["pred"]) == {("LGBModel",), ("MLPModel",)}
    merged = out["pred"][("LGBModel",)]
    w1, w2, w3 = runs["w1"], runs["w2"], runs["w3"]
    assert merged.index.is_monotonic_increasing and not merged.index.has_duplicates
    overlap = w1.index.intersection(w2.index)
    assert len(overlap) > 0
    pd.testing.assert_frame_equal(merged.loc[overlap], w2.loc[overlap])  # the later window wins
    expected = pd.concat([w1.drop(overlap), w2, w3]).sort_index()
    pd.testing.assert_frame_equal(merged, expected)
    pd.testing.assert_frame_equal(out["pred"][("MLPModel",)], runs["mlp"])
    # the raw collection is keyed by (model class, test segment)
    raw = RecorderCollector(EXP, rec_key_func=rolling_key).collect()["pred"]
    assert ("LGBModel", seg(w3)) in raw and ("MLPModel", seg(runs["mlp"])) in raw


def test_rec_filter_func_client_side_and_override(runs: dict) -> None:
    ids = runs["ids"]
    only_lgb = RecorderCollector(EXP, rec_filter_func=lambda r: r.list_tags()["model"] == "lgbmodel")
    assert set(only_lgb.collect()["pred"]) == {ids["w1"], ids["w2"], ids["w3"]}
    # a filter given to collect() replaces the default one
    assert set(only_lgb.collect(rec_filter_func=lambda r: r.id == ids["mlp"])["pred"]) == {ids["mlp"]}
    # tags in list_kwargs go to the store instead
    by_tag = RecorderCollector(EXP, list_kwargs={"tags": {"model": "mlpmodel"}}).collect()
    assert set(by_tag["pred"]) == {ids["mlp"]}


def test_only_exist(runs: dict, caplog: pytest.LogCaptureFixture) -> None:
    ids = runs["ids"]
    rc = RecorderCollector(EXP, artifacts_path={"pred": "pred.pkl", "ic": "sig_analysis/ic.pkl"})
    with caplog.at_level(logging.WARNING, logger="qlib_prefect.task.collect"):
        out = rc.collect()
    assert set(out["pred"]) == {ids["w1"], ids["w2"], ids["w3"], ids["mlp"]}
    assert set(out["ic"]) == {ids["w2"]}
    assert "sig_analysis/ic.pkl" in caplog.text and "ignored" in caplog.text
    with pytest.raises(LoadObjectError, match=r"sig_analysis/ic\.pkl"):
        rc.collect(artifacts_key="ic", only_exist=False)
    assert set(rc.collect(artifacts_key="ic")["ic"]) == {ids["w2"]}


def test_raw_key_duplicate_keys_and_bad_keys(runs: dict, caplog: pytest.LogCaptureFixture) -> None:
    raw = RecorderCollector(EXP, artifacts_key=["__raw"]).collect()["__raw"]
    assert {rec.status for rec in raw.values()} == {"FINISHED"} and len(raw) == 5
    assert all(rid == rec.id for rid, rec in raw.items())
    with caplog.at_level(logging.WARNING, logger="qlib_prefect.task.collect"):
        dup = RecorderCollector(EXP, rec_key_func=lambda r: "same").collect()
    assert list(dup["pred"]) == ["same"] and "duplicated" in caplog.text
    # listing is newest first, so the last one loaded (the oldest run, w2) overrides: qlib's behaviour
    pd.testing.assert_frame_equal(dup["pred"]["same"], runs["w2"])
    with pytest.raises(ConfigError, match="'label'"):
        RecorderCollector(EXP).collect(artifacts_key="label")


def test_experiment_forms(runs: dict) -> None:
    exp = R.get_exp(experiment_name=EXP)
    by_obj = RecorderCollector(exp).collect()
    by_name = RecorderCollector(EXP).collect()
    assert set(by_obj["pred"]) == set(by_name["pred"])
    assert RecorderCollector(exp).get_exp_name() == EXP == RecorderCollector(EXP).get_exp_name()
    recs = list(exp.list_recorders().values())
    # a callable returning recorders: the status filter is applied client-side
    by_call = RecorderCollector(lambda: recs).collect()
    assert set(by_call["pred"]) == set(by_name["pred"])
    # a missing experiment is created on demand (as qlib's R.get_exp) and yields nothing
    assert RecorderCollector("never_used_before").collect() == {}
    assert "never_used_before" in R.list_experiments()
    with pytest.raises(ConfigError, match="experiment"):
        RecorderCollector(42)
    with pytest.raises(ConfigError, match="DONE"):
        RecorderCollector(EXP, status={"DONE"})


def test_merge_collector_keys_and_processing(runs: dict) -> None:
    lgb = RecorderCollector(EXP, rec_key_func=rolling_key, process_list=RollingGroup(),
                            rec_filter_func=lambda r: r.list_tags()["model"] == "lgbmodel")
    mlp = RecorderCollector(EXP, rec_key_func=rolling_key, process_list=RollingGroup(),
                            list_kwargs={"tags": {"model": "mlpmodel"}})
    merged = MergeCollector({"lgb": lgb, "mlp": mlp}).collect()
    assert set(merged) == {("lgb", "pred"), ("mlp", "pred")}
    assert list(merged[("mlp", "pred")]) == [("MLPModel",)]
    named = MergeCollector({"lgb": lgb, "mlp": mlp}, merge_func=lambda ck, k: f"{ck}_{k}").collect()
    assert set(named) == {"lgb_pred", "mlp_pred"}
    # qlib's rolling example: group per model, then average the models
    same = MergeCollector({"lgb": lgb, "mlp": mlp}, merge_func=lambda ck, k: k)()
    assert list(same) == ["pred"] and list(same["pred"]) == [("MLPModel",)]  # same key: the later collector wins
    # processing of the merged dict (e.g. unwrap the single group of each collector)
    unwrapped = MergeCollector({"lgb": lgb, "mlp": mlp}, process_list=lambda d: next(iter(d.values())))()
    pd.testing.assert_frame_equal(unwrapped[("mlp", "pred")], runs["mlp"])
    avg = AverageEnsemble()({"lgb": merged[("lgb", "pred")], "mlp": merged[("mlp", "pred")]})
    assert isinstance(avg, pd.Series) and avg.index.is_monotonic_increasing


def test_collector_process_collect() -> None:
    data = {"a": 1, "b": 2}
    assert Collector.process_collect(data, [lambda v: v + 1, lambda v: v * 10]) == {"a": 20, "b": 30}
    assert Collector.process_collect(data, lambda v, k=0: v + k, k=5) == {"a": 6, "b": 7}
    with pytest.raises(NotImplementedError, match="int"):
        Collector.process_collect(data, [3])
    with pytest.raises(NotImplementedError):
        Collector()()

    class Const(Collector):
        def collect(self) -> dict:
            return {"x": 2}

    assert Const(process_list=lambda v: v**3)() == {"x": 8}


def test_collector_pickle_roundtrip_keeps_functions(runs: dict, tmp_path: Path) -> None:
    rc = RecorderCollector(EXP, rec_key_func=lambda r: ("k", r.id), process_list=[RollingGroup()])
    path = tmp_path / "collector.pkl"
    rc.to_pickle(path)
    back = RecorderCollector.load(path)
    assert back.get_exp_name() == EXP
    out = back()
    assert set(out["pred"]) == {("k",)} and out["pred"][("k",)].index.is_monotonic_increasing
