"""Golden parity with qlib 0.9.7's ``OnlineManager.simulate`` (RollingStrategy + RollingGen(20, ROLL_SD) + TrainerR,
Alpha158 + a tiny LightGBM on the handler goldens' data; tools/make_online_goldens.py).

Compared: the history (same keys in the same order, the same online test segments per key), the final online tags,
the number of recorders and the signal values of qlib de-duplicated by ``(datetime, instrument)`` (keep last, what
qlib means: it re-appends its last signal date on every routine, D3). Tolerance: 1e-12 absolute on z-scores (the
models are the same LightGBM on the same float32 features; observed difference ~1e-15).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pandas as pd
import pytest
from online_helpers import GOLD, golden

from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.online import manager as manager_mod
from qlib_prefect.online import strategy as strategy_mod
from qlib_prefect.online import update as update_mod
from qlib_prefect.online import utils as utils_mod
from qlib_prefect.online.manager import OnlineManager
from qlib_prefect.online.strategy import RollingStrategy, task_test_segment
from qlib_prefect.task.gen import RollingGen
from qlib_prefect.task.trainer import TrainerR
from qlib_prefect.workflow import R


def _iso(seg: tuple) -> list:
    end = None if seg[1] is None else pd.Timestamp(seg[1]).date().isoformat()
    return [pd.Timestamp(seg[0]).date().isoformat(), end]


@pytest.fixture(scope="module")
def sim(store: str) -> Iterator[dict]:
    g = golden()
    rg = RollingGen(step=g["step"], rtype=RollingGen.ROLL_SD)
    strategy = RollingStrategy(g["name"], copy.deepcopy(g["task"]), rg)
    manager = OnlineManager(strategy, trainer=TrainerR(), begin_time=g["begin"])
    signals = manager.simulate(end_time=g["end"])
    yield {"g": g, "strategy": strategy, "manager": manager, "signals": signals}


def test_qlib_online_class_paths_resolve_to_ours() -> None:
    for mod, names in ((manager_mod, ["OnlineManager"]), (strategy_mod, ["OnlineStrategy", "RollingStrategy"]),
                       (utils_mod, ["OnlineTool", "OnlineToolR"]),
                       (update_mod, ["PredUpdater", "LabelUpdater", "RMDLoader", "DSBasedUpdater"])):
        qlib_mod = "qlib.workflow.online." + mod.__name__.rsplit(".", 1)[1]
        for name in names:
            assert resolve_class(name, qlib_mod) is getattr(mod, name)


def test_history_equals_qlib(sim: dict) -> None:
    manager, strategy, g = sim["manager"], sim["strategy"], sim["g"]
    ours = [[t.date().isoformat(), sorted([rec.load_object("task")["model"]["class"], *_iso(task_test_segment(rec))]
                                           for rec in per[strategy])]
            for t, per in manager.history.items()]
    assert ours == g["history"]
    rows = manager.history_records()
    assert list(rows["datetime"].dt.date.astype(str).unique()) == [h[0] for h in g["history"]]


def test_tags_and_recorders_equal_qlib(sim: dict) -> None:
    strategy, g = sim["strategy"], sim["g"]
    online = strategy.tool.online_models()
    assert sorted("|".join(str(x) for x in _iso(task_test_segment(r))) for r in online) == g["online_segments"]
    recs = R.list_recorders(experiment_name=g["name"])
    assert len(recs) == g["n_recorders"]
    tags = [r.list_tags() for r in recs.values()]
    assert sorted(t["online_status"] for t in tags) == ["offline"] * (len(tags) - 1) + ["online"]
    assert {t["train_status"] for t in tags} == {TrainerR.STATUS_END}


def test_signals_equal_qlib_deduplicated(sim: dict) -> None:
    signals = sim["signals"]
    ref = pd.read_csv(GOLD / "signals.csv", dtype={"instrument": object})
    ref["datetime"] = pd.to_datetime(ref["datetime"]).astype("datetime64[ns]")
    ref = ref.set_index(["datetime", "instrument"])["score"]
    # our fix of D3: no duplicated rows, sorted, and exactly qlib's de-duplicated rows
    assert not signals.index.duplicated().any()
    assert signals.index.is_monotonic_increasing
    assert len(ref) < sim["g"]["raw_rows"]  # qlib's own output does carry the duplicated blocks
    pd.testing.assert_index_equal(signals.index, ref.index)
    pd.testing.assert_series_equal(signals.rename("score"), ref, check_exact=False, rtol=0, atol=1e-12)
    assert signals.dtype == "float64"
    dates = signals.index.get_level_values("datetime").unique()
    assert [d.date().isoformat() for d in dates] == sim["g"]["raw_dates"]


def test_prepare_signals_recomputes_the_last_date_instead_of_duplicating_it(sim: dict) -> None:
    manager = sim["manager"]
    before = manager.get_signals().copy()
    tail = manager.prepare_signals()
    last = before.index.get_level_values("datetime").max()
    assert set(tail.index.get_level_values("datetime")) == {last}
    pd.testing.assert_series_equal(manager.get_signals(), before)
    full = manager.prepare_signals(over_write=True)
    pd.testing.assert_series_equal(full, before)
