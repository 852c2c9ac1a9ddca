"""Rolling retraining flows under a Prefect test harness, on a small slice of the bundled sample (30 stocks)."""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from orch_helpers import make_small_data, small_config

from qlib_prefect.errors import ConfigError
from qlib_prefect.orchestration._publish import PARENT_TAG
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.orchestration._rolling import run_multi_horizon, run_rolling
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.orchestration._windows import TEST_SEGMENT_TAG, WINDOW_STAGE, plan_rolling

pytestmark = pytest.mark.usefixtures("prefect_api")

STEP = 40
TEST_START = "2016-07-01"


def _cal(data_dir: Path) -> pd.DatetimeIndex:
    from qlib_prefect.data.provider import LocalProvider

    return LocalProvider(data_dir).calendar()


def _test_end(data_dir: Path, n_windows: int) -> str:
    cal = _cal(data_dir)
    i0 = int(cal.searchsorted(pd.Timestamp(TEST_START)))
    return str(cal[i0 + STEP * n_windows - 1].date())


def rolling_config(data_dir: Path, mlflow_uri: str, n_windows: int, *, zscore: bool = False) -> dict:
    """3 (``n_windows``) test windows of 40 days; the handler ends with the valid segment, so every window's
    handler end is its own test end (RollingGen's handler_mod)."""
    cfg = small_config(data_dir, mlflow_uri)
    task = cfg["task"]
    task["model"]["kwargs"]["num_boost_round"] = 10
    h = task["dataset"]["kwargs"]["handler"]["kwargs"]
    h["end_time"] = "2016-06-30"
    if zscore:
        h["infer_processors"] = [{"class": "ZScoreNorm", "kwargs": {"fields_group": "feature"}},
                                 {"class": "Fillna", "kwargs": {"fields_group": "feature"}}]
    task["dataset"]["kwargs"]["segments"]["test"] = [TEST_START, _test_end(data_dir, n_windows)]
    port = task["record"][2]["kwargs"]["config"]["backtest"]
    port["start_time"], port["end_time"] = TEST_START, task["dataset"]["kwargs"]["segments"]["test"][1]
    return cfg


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    out: set[str] = set()
    stack = [None]
    while stack:
        for a in client.list_artifacts(run_id, stack.pop()):
            (stack.append(a.path) if a.is_dir else out.add(a.path))
    return out


@pytest.fixture(scope="module")
def short_data(session_tmp: Path) -> Path:
    """The small data cut at 2017-02-28 (the 'before append' state)."""
    return make_small_data(session_tmp / "rolling_short", end="2017-02-28")


def test_rolling_end_to_end_then_cached(small_data, isolated_home, mlflow_uri) -> None:
    cfg = rolling_config(small_data, mlflow_uri, 3)
    plan = plan_rolling(cfg, step=STEP)
    windows = [r for r in plan if r["window"] != "summary"]
    assert len(windows) == 3 and not any(r["cached"] for r in plan)
    assert windows[0]["segments"]["test"][0] == TEST_START
    assert [r["handler_end"] for r in windows] == [r["segments"]["test"][1] for r in windows]

    s = run_rolling(cfg, step=STEP)
    assert s["trained"] == 3 and s["cached"] == 0
    assert [w["state"] for w in s["windows"]] == ["Completed"] * 3
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(s["run_id"])
    assert parent.info.status == "FINISHED"
    arts = _artifacts(client, s["run_id"])
    assert {"pred.pkl", "label.pkl", "sig_analysis/ic.pkl", "portfolio_analysis/report_normal_1day.pkl"} <= arts
    assert "IC" in parent.data.metrics and "1day.excess_return_with_cost.annualized_return" in parent.data.metrics
    # the summary run is as complete as a workflow run's: plots, labelled metrics, a Prefect results artifact
    assert {"portfolio_analysis/cumulative_return.png", "sig_analysis/ic.png"} <= arts
    assert s["mlflow_ui_command"].startswith("mlflow ui") and s["metrics"]["IC"] == parent.data.metrics["IC"]
    assert set(s["stages"]) == {"window-0", "window-1", "window-2", "summary-rolling"}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pclient:
        arts_p = pclient.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["qlib-rolling-results"])))
    assert any(s["run_id"] in a.data and "| Information ratio (with cost) |" in a.data for a in arts_p)
    # window runs: children of the summary run, tagged with their test segment
    merged = []
    for w, row in zip(s["windows"], windows, strict=True):
        run = client.get_run(w["run_id"])
        assert run.data.tags[PARENT_TAG] == s["run_id"]
        assert run.data.tags[TEST_SEGMENT_TAG] == "..".join(row["segments"]["test"])
        wa = _artifacts(client, w["run_id"])
        assert {"pred.pkl", "label.pkl", "params.pkl", "task", "sig_analysis/ic.pkl"} <= wa
        assert not any(a.startswith("portfolio_analysis") for a in wa)  # portfolio analysis runs once, merged
        merged.append(pd.read_pickle(client.download_artifacts(w["run_id"], "pred.pkl")))
    pred = pd.read_pickle(client.download_artifacts(s["run_id"], "pred.pkl"))
    expected = pd.concat(merged).sort_index()
    pd.testing.assert_frame_equal(pred, expected)
    dates = pred.index.get_level_values("datetime")
    assert str(dates.min().date()) == TEST_START and str(dates.max().date()) == windows[-1]["segments"]["test"][1]

    again = run_rolling(cfg, step=STEP)
    assert again["trained"] == 0 and [w["state"] for w in again["windows"]] == ["Cached"] * 3
    assert again["summary_states"] == {"rolling": "Cached"}
    assert all(r["cached"] for r in plan_rolling(cfg, step=STEP))
    pd.testing.assert_frame_equal(pd.read_pickle(client.download_artifacts(again["run_id"], "pred.pkl")), pred)


def test_incremental_retrain_after_append_trains_one_window(short_data, small_data, tmp_path, isolated_home,
                                                           mlflow_uri) -> None:
    data = shutil.copytree(short_data, tmp_path / "data")
    first = run_rolling(rolling_config(data, mlflow_uri, 3), step=STEP)
    assert first["trained"] == 3
    # data grows (same directory), and the test end moves by one step
    shutil.rmtree(data)
    shutil.copytree(small_data, data)
    cfg = rolling_config(data, mlflow_uri, 4)
    plan = plan_rolling(cfg, step=STEP)
    assert [r["cached"] for r in plan if r["window"] != "summary"] == [True, True, True, False]
    second = run_rolling(cfg, step=STEP)
    assert [w["state"] for w in second["windows"]] == ["Cached", "Cached", "Cached", "Completed"]
    assert second["trained"] == 1
    assert [w["key"] for w in second["windows"][:3]] == [w["key"] for w in first["windows"]]
    pred = pd.read_pickle(MlflowClient(mlflow_uri).download_artifacts(second["run_id"], "pred.pkl"))
    assert pred.index.get_level_values("datetime").nunique() == 4 * STEP


def test_processors_refit_per_window(small_data, isolated_home, mlflow_uri) -> None:
    from qlib_prefect.data.handler import Alpha158

    cfg = rolling_config(small_data, mlflow_uri, 3, zscore=True)
    cfg["task"]["record"] = cfg["task"]["record"][:1]
    s = run_rolling(cfg, step=STEP, rtype="sliding")
    store = ContentStore()
    import qlib_prefect

    qlib_prefect.init(provider_uri=str(small_data), region="us")
    raw = Alpha158(instruments="sp500", start_time="2015-01-02", end_time="2016-12-31", infer_processors=[],
                   learn_processors=[], cache=False).fetch(col_set="feature", data_key="raw")
    means = []
    for w in s["windows"]:
        entry = store.require(WINDOW_STAGE, w["key"])
        rec = StoreRecorder(path=entry.path)
        task = rec.load_object("task")
        train = task["dataset"]["kwargs"]["segments"]["train"]
        hkw = task["dataset"]["kwargs"]["handler"]["kwargs"]
        assert (str(pd.Timestamp(hkw["fit_start_time"]).date()), str(pd.Timestamp(hkw["fit_end_time"]).date())) \
            == (str(pd.Timestamp(train[0]).date()), str(pd.Timestamp(train[1]).date()))
        proc = rec.load_object("dataset").handler.infer_processors[0]
        span = raw.loc[pd.Timestamp(train[0]):pd.Timestamp(train[1])].to_numpy(dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # columns without values in the span: NaN both sides
            direct = np.nanmean(span, axis=0)
        np.testing.assert_allclose(proc.mean_train, direct, rtol=1e-5, atol=1e-6)
        means.append(proc.mean_train)
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])


def test_refit_off_keeps_the_template_fit_window(small_data, isolated_home, mlflow_uri) -> None:
    cfg = rolling_config(small_data, mlflow_uri, 2, zscore=True)
    rows = plan_rolling(cfg, step=STEP, refit_processors=False)
    rows_refit = plan_rolling(cfg, step=STEP)
    assert rows[0]["key"] == rows_refit[0]["key"]  # expanding: window 0 trains on the template's span
    assert rows[1]["key"] != rows_refit[1]["key"]


def test_multi_horizon(small_data, isolated_home, mlflow_uri) -> None:
    cfg = rolling_config(small_data, mlflow_uri, 1)
    cfg["task"]["record"] = cfg["task"]["record"][:2]
    seg = cfg["task"]["dataset"]["kwargs"]["segments"]
    cfg["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = seg["test"][1]  # no RollingGen handler_mod
    s = run_multi_horizon(cfg, horizon=[1, 5])
    assert [w["group"] for w in s["windows"]] == ["h1", "h5"]
    assert "h1.IC" in s["all_metrics"] and "h5.IC" in s["all_metrics"]
    client = MlflowClient(mlflow_uri)
    tasks = [StoreRecorder(path=ContentStore().require(WINDOW_STAGE, w["key"]).path).load_object("task")
             for w in s["windows"]]
    labels = [t["dataset"]["kwargs"]["handler"]["kwargs"]["label"][0][0] for t in tasks]
    assert labels == ["Ref($close, -2)/Ref($close, -1) - 1", "Ref($close, -6)/Ref($close, -1) - 1"]
    assert client.get_run(s["run_id"]).data.metrics["h5.IC"] == s["all_metrics"]["h5.IC"]
    children = client.search_runs([s["experiment_id"]], filter_string=f"tags.`{PARENT_TAG}` = '{s['run_id']}'")
    names = sorted(r.data.tags["mlflow.runName"] for r in children)
    assert names == ["summary-h1", "summary-h5", "window-0", "window-1"]
    h5 = next(r for r in children if r.data.tags["mlflow.runName"] == "summary-h5")
    assert h5.data.metrics["IC"] == s["all_metrics"]["h5.IC"]
    assert {"pred.pkl", "label.pkl", "sig_analysis/ic.pkl"} <= _artifacts(client, h5.info.run_id)


def test_bad_windows_fail_before_running(small_data, isolated_home, mlflow_uri) -> None:
    cfg = rolling_config(small_data, mlflow_uri, 3)
    bad = copy.deepcopy(cfg)
    bad["task"]["dataset"]["kwargs"]["segments"]["valid"] = ["2016-06-30", "2016-01-01"]
    with pytest.raises(ConfigError, match=r"segments\.valid"):
        plan_rolling(bad, step=STEP)
    with pytest.raises(ConfigError, match="rtype"):
        plan_rolling(cfg, step=STEP, rtype="diagonal")


def test_cli_plan_lists_windows_and_cache_status(small_data, isolated_home, mlflow_uri, tmp_path, capsys) -> None:
    import yaml

    from qlib_prefect.cli.main import main

    cfg = rolling_config(small_data, mlflow_uri, 3)
    path = tmp_path / "rolling.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["rolling", str(path), "--step", str(STEP), "--rtype", "sliding", "--plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.split()[:1] != [] and line.split()[0].isdigit() and "rolling" in line]
    assert len(rows) == 3 and all(" no " in r for r in rows)
    test_segs = [r.split()[4] for r in rows]
    assert test_segs[0].startswith(TEST_START) and len(set(test_segs)) == 3
    assert rows[1].split()[2] != rows[0].split()[2]  # sliding: the train segment moves
    assert out[-1] == "3 windows, 3 to train, 0 cached"
    assert main(["rolling", str(path), "--step", "0", "--plan"]) == 2  # ConfigError -> exit code 2


def test_sliced_union_raw_equals_per_window_build(small_data, isolated_home, mlflow_uri) -> None:
    """Features computed once for the union and sliced per window == each window's own handler build."""
    from qlib_prefect.orchestration._rolling import _drop_raw, _RunCtx, _window_dataset
    from qlib_prefect.orchestration._windows import rolling_plan

    cfg = rolling_config(small_data, mlflow_uri, 3, zscore=True)
    _cfg, plan = rolling_plan(cfg, step=STEP)
    assert len({w.raw_group for w in plan.windows}) == 1 and len({w.handler_end for w in plan.windows}) == 3
    shared = _RunCtx(store_root=str(isolated_home / "store"), raw_groups=plan.raw_groups)
    alone = _RunCtx(store_root=str(isolated_home / "store"), raw_groups={}, share_raw=False)
    try:
        for w in (plan.windows[0], plan.windows[2]):
            a, b = _window_dataset(shared, w), _window_dataset(alone, w)
            for seg in ("train", "test"):
                for key in ("infer", "learn"):
                    pd.testing.assert_frame_equal(a.prepare(seg, data_key=key), b.prepare(seg, data_key=key))
    finally:
        _drop_raw()
