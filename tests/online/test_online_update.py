"""PredUpdater / LabelUpdater / OnlineToolR on a real trained recorder (Alpha158 + tiny LightGBM, SQLite MLflow):
an update over new dates equals a full re-predict; qlib's no-op and clipping rules; tags."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data.cache import wait_for_pending_writes
from qlib_prefect.errors import LoadObjectError
from qlib_prefect.online.update import LabelUpdater, PredUpdater, get_date_by_shift, replace_range
from qlib_prefect.online.utils import OnlineToolR
from qlib_prefect.task.trainer import DelayTrainerR, TrainerR
from qlib_prefect.utils import init_instance_by_config

EXP = "online_update"
TASK: dict[str, Any] = {
    "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
              "kwargs": {"loss": "mse", "num_boost_round": 10, "num_leaves": 7, "num_threads": 1, "seed": 3}},
    "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
        "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                    "kwargs": {"start_time": "2019-06-03", "end_time": "2020-06-30", "fit_start_time": "2019-06-03",
                               "fit_end_time": "2020-03-31", "instruments": "mkt"}},
        "segments": {"train": ("2019-06-03", "2020-03-31"), "valid": ("2020-04-01", "2020-05-29"),
                     "test": ("2020-06-01", "2020-06-30")}}},
    "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}


def _full_dataset(end: str) -> Any:
    task = copy.deepcopy(TASK)
    task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = end
    task["dataset"]["kwargs"]["segments"]["test"] = ("2020-06-01", end)
    return init_instance_by_config(task["dataset"])


@pytest.fixture(scope="module")
def rec(store: str) -> Any:
    (rec,) = TrainerR(experiment_name=EXP).train([copy.deepcopy(TASK)])
    return rec


def test_pred_update_equals_full_repredict(rec: Any) -> None:
    old = rec.load_object("pred.pkl")
    assert old.index.get_level_values("datetime").max() == pd.Timestamp("2020-06-30")
    up = PredUpdater(rec, to_date="2020-07-31")
    assert up.last_end == pd.Timestamp("2020-06-30")
    up.update()
    new = rec.load_object("pred.pkl")
    full = rec.load_object("params.pkl").predict(_full_dataset("2020-07-31")).to_frame("score")
    pd.testing.assert_frame_equal(new, full.sort_index(), check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(new.loc[:"2020-06-30"], old)  # old dates untouched
    # nothing new: no write, None even with ret_new
    assert PredUpdater(rec, to_date="2020-07-31").update(ret_new=True) is None
    # from_date recomputes from that day on (same values)
    again = PredUpdater(rec, to_date="2020-07-31", from_date="2020-07-15").update(write=False, ret_new=True)
    pd.testing.assert_frame_equal(again, new, check_exact=False, rtol=1e-12)


def test_to_date_past_the_calendar_is_clipped(rec: Any) -> None:
    up = PredUpdater(rec, to_date="2031-01-01")
    assert up.to_date == pd.Timestamp("2020-09-09")


def test_label_update_equals_full_label(rec: Any) -> None:
    old = rec.load_object("label.pkl")
    up = LabelUpdater(rec, to_date="2020-07-31")
    assert up.last_end == old.dropna().index.get_level_values("datetime").max()
    up.update()
    new = rec.load_object("label.pkl")
    full = _full_dataset("2020-07-31").prepare("test", col_set="label", data_key="raw")
    pd.testing.assert_frame_equal(new, full.sort_index())
    assert new.index.get_level_values("datetime").max() == pd.Timestamp("2020-07-31")


def test_online_tool_tags_and_update(rec: Any, store: str) -> None:
    tool = OnlineToolR(EXP)
    assert tool.get_online_tag(rec) == "offline"  # missing tag
    (other,) = DelayTrainerR(experiment_name=EXP).train([copy.deepcopy(TASK)])  # no pred.pkl yet
    tool.reset_online_tag([rec, other])
    assert {r.id for r in tool.online_models()} == {rec.id, other.id}
    tool.reset_online_tag(rec)
    assert [r.id for r in tool.online_models()] == [rec.id]
    assert tool.get_online_tag(other) == "offline"
    tool.set_online_tag("online", other)
    tool.update_online_pred(to_date="2020-08-14")  # `other` has no pred.pkl: skipped with a warning (qlib)
    dates = rec.load_object("pred.pkl").index.get_level_values("datetime")
    assert dates.max() == pd.Timestamp("2020-08-14")
    with pytest.raises(LoadObjectError):
        other.load_object("pred.pkl")


def test_date_helpers(store: str) -> None:
    assert get_date_by_shift("2020-06-30", 1) == pd.Timestamp("2020-07-01")
    assert get_date_by_shift("2020-07-04", -1, align="right") == pd.Timestamp("2020-07-03")  # Sat -> 07-06, -1
    assert get_date_by_shift("2019-01-02", -5) == pd.Timestamp("2019-01-02")  # clipped
    with pytest.raises(IndexError):
        get_date_by_shift("2019-01-02", -5, clip_shift=False)
    idx = pd.MultiIndex.from_product([pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]), ["a", "b"]],
                                     names=["datetime", "instrument"])
    old = pd.DataFrame({"score": np.arange(6.0)}, index=idx)
    new = pd.DataFrame({"score": [10.0]}, index=idx[2:3])
    out = replace_range(old, new)
    assert list(out["score"]) == [0.0, 1.0, 10.0, 4.0, 5.0]  # the new date range replaces old rows of that range
    pd.testing.assert_frame_equal(replace_range(old, new.iloc[:0]), old)


def test_online_models_of_one_template_share_the_new_features(store: str) -> None:
    """Two windows of one template (different test segments and handler ends, same fit window) re-pointed at the
    new dates are equal datasets: `update_online_pred` sets them up once; each model's update still equals its
    full re-predict."""
    first, second = copy.deepcopy(TASK), copy.deepcopy(TASK)
    second["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = "2020-07-15"
    second["dataset"]["kwargs"]["segments"]["test"] = ("2020-07-01", "2020-07-15")
    second["model"]["kwargs"]["seed"] = 5
    _full_dataset("2020-06-30")  # the first window's handler, built once before: its training is a cache hit
    wait_for_pending_writes()
    recs = TrainerR(experiment_name=f"{EXP}_shared").train([first, second])
    for r in recs:  # both predict up to 07-15: the same new window for both
        PredUpdater(r, to_date="2020-07-15").update()
    memo: dict = {}
    datasets = [PredUpdater(r, to_date="2020-08-14").prepare_data(memo=memo) for r in recs]
    assert len(memo) == 1 and datasets[0] is datasets[1]
    tool = OnlineToolR(f"{EXP}_shared")
    tool.reset_online_tag(recs)
    tool.update_online_pred(to_date="2020-08-14")
    for r in recs:
        new = r.load_object("pred.pkl").loc["2020-07-16":]
        full = r.load_object("params.pkl").predict(_full_dataset("2020-08-14")).to_frame("score")
        pd.testing.assert_frame_equal(new, full.sort_index().loc["2020-07-16":], check_exact=False, rtol=1e-12)
