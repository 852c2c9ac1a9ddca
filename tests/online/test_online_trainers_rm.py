"""OnlineManager.simulate with the MongoDB task-pool trainers (TrainerRM, DelayTrainerRM; a real wire-protocol
server) equals qlib's golden run on its first two windows (signals and history)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from online_helpers import GOLD, golden, init_store, store_uri

from qlib_prefect.config.runtime import C
from qlib_prefect.online.manager import OnlineManager
from qlib_prefect.online.strategy import RollingStrategy, task_test_segment
from qlib_prefect.task.gen import RollingGen
from qlib_prefect.task.trainer_rm import DelayTrainerRM, TrainerRM
from qlib_prefect.workflow import R

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "task"))
from mongo_server import mongo_server  # the task tests' in-memory MongoDB server

END = "2020-04-03"  # two windows: 2020-03-02 .. 2020-03-30 and 2020-03-31 .. 2020-04-28


@pytest.fixture(scope="module")
def mongo(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = store_uri(session_tmp, tmp_path_factory.mktemp("online_rm_store"))
    with mongo_server() as url:
        init_store(uri)
        C["mongo"] = {"task_url": url, "task_db_name": "qp_online_rm"}
        yield url
        R.reset()
        C.reset()


@pytest.mark.parametrize("trainer_cls", [TrainerRM, DelayTrainerRM])
def test_simulate_with_task_pool_trainers_equals_qlib(mongo: str, trainer_cls: type) -> None:
    g = golden()
    name = f"online_{trainer_cls.__name__.lower()}"
    s = RollingStrategy(name, copy.deepcopy(g["task"]), RollingGen(step=g["step"], rtype=RollingGen.ROLL_SD))
    m = OnlineManager(s, trainer=trainer_cls(task_pool=f"{name}_pool"), begin_time=g["begin"])
    signals = m.simulate(end_time=END)
    ref = pd.read_csv(GOLD / "signals.csv", dtype={"instrument": object})
    ref["datetime"] = pd.to_datetime(ref["datetime"]).astype("datetime64[ns]")
    ref = ref[ref["datetime"] <= pd.Timestamp("2020-04-28")].set_index(["datetime", "instrument"])["score"]
    pd.testing.assert_series_equal(signals.rename("score"), ref, check_exact=False, rtol=0, atol=1e-12)
    ours = [[t.date().isoformat(), [str(pd.Timestamp(task_test_segment(r)[0]).date()) for r in per[s]]]
            for t, per in m.history.items()]
    theirs = [[d, [seg[1] for seg in segs]] for d, segs in g["history"] if d <= END]
    assert ours == theirs
