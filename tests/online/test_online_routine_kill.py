"""kill -9 during ``qlib-prefect online routine`` (a real SIGKILL of the CLI subprocess), then the same command
again: it completes, with no duplicated prediction rows, exactly one champion, one routine run per day, and data
files, predictions, signals and the target portfolio equal to a clean run's (data files byte-identical).

Two routine days: 2020-03-27 (no retrain: killed after the prediction update or before the champion moves) and
2020-03-31, the retrain day (the rolling step is crossed: killed while LightGBM fits the new window, after it is
trained but before it goes online, or before the champion moves to it)."""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from online_helpers import cut_data, day_frame, golden, init_store, store_uri

from qlib_prefect.orchestration import online_routine, online_strategy, routine_history, routine_portfolio
from qlib_prefect.workflow import R

DAYS = {"plain": (pd.Timestamp("2020-03-26"), pd.Timestamp("2020-03-27")),  # (data end before, routine day)
        "retrain": (pd.Timestamp("2020-03-30"), pd.Timestamp("2020-03-31"))}
FIELDS = ["open", "high", "low", "close", "volume", "factor"]

# the child SIGKILLs itself at the given point (the routine's named hook, or inside the new window's LightGBM fit,
# or just before the strategy switches the online models), then runs the CLI
_CHILD = """
import os, signal, sys
from qlib_prefect.orchestration import _online
from qlib_prefect.model.gbdt import LGBModel
from qlib_prefect.online.strategy import RollingStrategy
def hook(point):
    if point == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
_online._hook = hook
def wrap(cls, name, point):
    orig = getattr(cls, name)
    def kill_first(*a, **k):
        hook(point)
        return orig(*a, **k)
    setattr(cls, name, kill_first)
wrap(LGBModel, "fit", "during-fit")
wrap(RollingStrategy, "prepare_online_models", "before-online-switch")
from qlib_prefect.cli.main import main
sys.exit(main(["online", "routine", sys.argv[1]]))
"""


def _config(uri: str, data: Path, drops: Path) -> dict:
    return {"qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
                "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}},
            "online": {"name": "kill_online", "source": str(drops), "step": 20, "rtype": "sliding", "trunc_days": 2,
                       "fields": FIELDS, "account": 1e6,
                       "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                    "kwargs": {"topk": 5, "n_drop": 2}}},
            "task": copy.deepcopy(golden()["task"])}


def _data_files(root: Path) -> dict[str, str]:
    """Digests of the data files (calendar, instruments, features; the quality report is a report, not data)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("calendars", "instruments", "features") for p in sorted((root / sub).rglob("*"))
            if p.is_file()}


def _setup(session_tmp: Path, folder: Path, day: str) -> tuple[dict, Path]:
    begin, date = DAYS[day]
    uri = store_uri(session_tmp, folder / "store")
    data, drops = folder / "data", folder / "drops"
    cut_data(data, begin)
    drops.mkdir()
    cfg = _config(uri, data, drops)
    online_routine(cfg)  # online init
    day_frame(date, tuple(FIELDS)).to_csv(drops / f"{date.date()}.csv", index=False)
    return cfg, data


def _outcome(cfg: dict, data: Path) -> dict:
    init_store(cfg["qlib_init"]["exp_manager"]["kwargs"]["uri"], data)
    (model,) = online_strategy(cfg).tool.online_models()
    hist = routine_history(cfg)
    versions = R.exp_manager.client.search_model_versions("name = 'kill_online'")
    client = R.exp_manager.client
    sig = R.get_recorder(recorder_id=hist["run_id"].iloc[-1], experiment_name="kill_online_routine").load_object(
        "signals.pkl")
    return {"pred": model.load_object("pred.pkl"), "dates": list(hist["date"]), "signal": sig,
            "aliases": client.get_registered_model("kill_online").aliases,
            "versions": len(versions), "trained": list(hist["trained"]),
            "champion": client.get_model_version_by_alias("kill_online", "champion").run_id,
            "online": model.info["id"], "test_start": model.load_object("pred.pkl").index.get_level_values(
                "datetime").min(),
            "portfolio": routine_portfolio(cfg)[1], "data": _data_files(data)}


def _run_child(env: dict, log: Path, path: Path, point: str) -> tuple[int, str, str]:
    """Run the child in its own process group, output to files (a SIGKILLed child's ephemeral Prefect server
    would keep pipes open); after it ends, whatever it started in its group is ended too."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), point], env=env, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=600)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return rc, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


@pytest.fixture(scope="module")
def cleans(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The clean run of each routine day (built on first use)."""
    return {}


def _clean(cleans: dict, session_tmp: Path, tmp_path_factory: pytest.TempPathFactory, day: str) -> dict:
    if day not in cleans:
        cfg, data = _setup(session_tmp, tmp_path_factory.mktemp(f"clean-{day}"), day)
        online_routine(cfg)
        cleans[day] = _outcome(cfg, data)
    return cleans[day]


@pytest.mark.parametrize(("day", "point"), [("plain", "after-routine"), ("plain", "before-champion"),
                                            ("retrain", "during-fit"), ("retrain", "before-online-switch"),
                                            ("retrain", "before-champion")])
def test_kill_during_routine_then_rerun(session_tmp: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                        cleans: dict, day: str, point: str) -> None:
    clean = _clean(cleans, session_tmp, tmp_path_factory, day)
    begin, date = DAYS[day]
    cfg, data = _setup(session_tmp, tmp_path, day)
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    rc, _, err = _run_child(env, tmp_path / "killed", path, point)
    assert rc == -9, err[-3000:]
    rc, out, err = _run_child(env, tmp_path / "again", path, "never")
    assert rc == 0, err[-3000:]
    assert "routine day" in out and date.date().isoformat() in out

    got = _outcome(cfg, data)
    assert not got["pred"].index.duplicated().any()
    pd.testing.assert_frame_equal(got["pred"], clean["pred"], check_exact=False, rtol=0, atol=1e-12)
    assert got["dates"] == clean["dates"] == [begin.date().isoformat(), date.date().isoformat()]
    assert list(got["aliases"]) == ["champion"] and got["champion"] == got["online"]
    assert got["versions"] == clean["versions"] == (2 if day == "retrain" else 1)
    assert got["test_start"] == clean["test_start"]
    if day == "retrain":  # the new window went online on its first test day, trained once as far as the routine says
        assert got["test_start"] == date and clean["test_start"] == date
        assert got["trained"][1] == got["online"] != got["trained"][0]
    np.testing.assert_allclose(got["signal"]["score"], clean["signal"]["score"], rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(got["portfolio"], clean["portfolio"], check_exact=False, rtol=0, atol=1e-9)
    assert got["data"] == clean["data"]
