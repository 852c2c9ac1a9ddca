"""The online manager fed one new trading day at a time (the data directory grows day by day, no future calendar)
gives the same signals and the same online history as one ``simulate`` over the same days on the full data.

This exercises our fix of qlib's frozen calendar (D2): qlib's RollingGen keeps the calendar of the moment it was
built, so without a future calendar its daily routine never rolls; ours re-reads it on every routine. The first
model's last window is open-ended on the cut data (``test=(start, None)``) and the handler then reads up to the
newest day; PredUpdater extends the online model's predictions day by day.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from online_helpers import DATA, cut_data, golden

from qlib_prefect.data import registry
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.online.manager import OnlineManager
from qlib_prefect.online.strategy import RollingStrategy, task_test_segment
from qlib_prefect.task.gen import RollingGen
from qlib_prefect.task.trainer import DelayTrainerR, TrainerR

BEGIN, END = "2020-03-13", "2020-04-03"


def _rg() -> RollingGen:
    return RollingGen(step=20, rtype=RollingGen.ROLL_SD, trunc_days=2)  # no label look-ahead into the routine day


def _use(path: Path) -> None:
    registry.set_provider(LocalProvider(path))


@pytest.fixture(scope="module")
def simulated(store: str) -> tuple:
    """One simulate on the full data with TrainerR."""
    sim_s = RollingStrategy("online_sim", copy.deepcopy(golden()["task"]), _rg())
    sim = OnlineManager(sim_s, trainer=TrainerR(), begin_time=BEGIN)
    return sim_s, sim, sim.simulate(end_time=END)


def test_delay_trainer_simulate_equals_trainer_r(simulated: tuple) -> None:
    """DelayTrainerR postpones fitting and signals to delay_prepare: same history and signal values."""
    sim_s, sim, sim_signals = simulated
    s = RollingStrategy("online_sim_delay", copy.deepcopy(golden()["task"]), _rg())
    m = OnlineManager(s, trainer=DelayTrainerR(), begin_time=BEGIN)
    signals = m.simulate(end_time=END)
    pd.testing.assert_series_equal(signals, sim_signals, check_exact=False, rtol=0, atol=1e-12)
    ours = [[task_test_segment(r)[0] for r in per[s]] for per in m.history.values()]
    assert ours == [[task_test_segment(r)[0] for r in per[sim_s]] for per in sim.history.values()]
    assert {r.list_tags()["train_status"] for r in s.tool.online_models()} == {DelayTrainerR.STATUS_END}


def test_daily_routine_equals_simulate(store: str, simulated: tuple, tmp_path: Path) -> None:
    task = golden()["task"]
    cal = pd.DatetimeIndex(pd.read_csv(DATA / "calendars" / "day.txt", header=None)[0])
    days = cal[(cal > pd.Timestamp(BEGIN)) & (cal <= pd.Timestamp(END))]
    sim_s, sim, sim_signals = simulated

    # the same days as daily routines on a data directory that grows one day at a time
    live = tmp_path / "data"

    def cut(last: pd.Timestamp) -> None:  # what a daily data drop does to the data directory
        cut_data(live, last)

    cut(pd.Timestamp(BEGIN))
    _use(live)
    try:
        live_s = RollingStrategy("online_live", copy.deepcopy(task), _rg())
        manager = OnlineManager(live_s, trainer=TrainerR())
        assert manager.begin_time == pd.Timestamp(BEGIN)  # the last calendar day
        manager.first_train()
        (first,) = live_s.tool.online_models()
        assert task_test_segment(first)[1] is None  # its window runs past the (cut) calendar
        for d in days:
            cut(d)
            manager.routine()
            assert manager.cur_time == d
        signals = manager.get_signals()
    finally:
        registry.set_provider(None)
        from online_helpers import init_store

        init_store(store)

    assert not signals.index.duplicated().any()
    expected = sim_signals[sim_signals.index.get_level_values("datetime") <= pd.Timestamp(END)]
    pd.testing.assert_index_equal(signals.index, expected.index)
    pd.testing.assert_series_equal(signals, expected, check_exact=False, rtol=0, atol=1e-12)
    # the same online model (by test start) on every day; one retrain at 2020-03-31
    ours = {t: [task_test_segment(r)[0] for r in per[live_s]] for t, per in manager.history.items()}
    theirs = {t: [task_test_segment(r)[0] for r in per[sim_s]] for t, per in sim.history.items()}
    assert ours == theirs
    assert sorted({s for v in ours.values() for s in v}) == [pd.Timestamp("2020-03-02"), pd.Timestamp("2020-03-31")]


def test_routine_rejects_task_kwargs(store: str) -> None:
    s = RollingStrategy("online_kw", copy.deepcopy(golden()["task"]), _rg())
    with pytest.raises(ValueError, match="task_kwargs"):
        s.prepare_tasks(pd.Timestamp(END), foo=1)
