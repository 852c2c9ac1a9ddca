"""After a real kill -9: `doctor` reports, `gc` (or the next run) marks the MLflow run KILLED and removes the temp
folders no live process owns; `cache ls|prune` list and evict $QLIB_PREFECT_HOME's caches."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qlib_prefect.cli.main import main
from qlib_prefect.orchestration._store import ContentStore

_VICTIM = """
import sys, time
import qlib_prefect
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.data.cache import handler_cache_dir
from qlib_prefect.utils.owner import token
from qlib_prefect.workflow import R
qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                               "kwargs": {"uri": sys.argv[1], "default_exp_name": "Experiment"}})
with R.start(experiment_name="victim"):
    R.log_metrics(step=0, loss=1.0)
    with ContentStore(root=sys.argv[2]).build("train", "k" * 32) as tmp:
        (tmp / "artifacts" / "params.pkl").write_bytes(b"x" * 100000)
        (handler_cache_dir() / f".tmp-{'h' * 16}-{token()}-abcd1234").mkdir(parents=True)
        print(R.get_recorder().id, flush=True)
        time.sleep(600)
"""


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    """gc and doctor also look for Prefect flow runs: a server of this module's own, stopped when it ends (else
    Prefect's temporary server would start in the test process and outlive the tests)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "QLIB_PREFECT_HOME": str(home)}


@pytest.fixture
def killed(tmp_path, new_store, monkeypatch):
    home = tmp_path / "home"
    uri = new_store(tmp_path / "mlruns")
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(home))
    proc = subprocess.Popen([sys.executable, "-c", _VICTIM, uri, str(home / "store")], env=_env(home),
                            stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    assert run_id, "the victim did not start its run"
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    temps = [*(home / "store" / "train").glob(".tmp-*"), *(home / "handler_cache").glob(".tmp-*")]
    assert len(temps) == 2
    return uri, run_id, home, temps


def test_doctor_reports_and_gc_repairs_after_kill_9(killed, capsys):
    uri, run_id, _home, temps = killed
    assert main(["doctor", "--uri", uri]) == 1
    out = capsys.readouterr().out
    assert run_id in out and all(str(t) in out for t in temps)
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"  # doctor changes nothing
    assert main(["gc", "--uri", uri]) == 0
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    assert not any(t.exists() for t in temps)
    assert main(["doctor", "--uri", uri]) == 0


def test_next_run_marks_the_killed_run_and_sweeps_temp_folders(killed, configure):
    from qlib_prefect.data.cache import store_handler
    from qlib_prefect.workflow import R

    uri, run_id, home, temps = killed
    configure(uri)
    with R.start(experiment_name="victim"):
        R.log_metrics(step=0, loss=0.5)
    assert MlflowClient(uri).get_run(run_id).info.status == "KILLED"
    with ContentStore(root=home / "store").build("train", "j" * 32) as tmp:
        (tmp / "artifacts" / "x").write_bytes(b"1")
    assert not temps[0].exists()
    class NoFrames:
        ATTR_MAP: dict = {}
        infer_processors: list = []
        learn_processors: list = []
        shared_processors: list = []

    store_handler("z" * 32, NoFrames())  # the next cache write sweeps the killed writer's temp folder
    assert not temps[1].exists()


def test_live_owner_folders_are_kept(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(home))
    store = ContentStore(root=home / "store")
    with store.build("train", "k" * 32) as tmp:
        assert main(["gc", "--uri", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"]) == 0
        assert tmp.exists()  # ours: alive
    legacy = home / "store" / "train" / ".tmp-legacy"
    legacy.mkdir()
    assert main(["gc", "--uri", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"]) == 0
    assert legacy.exists()  # no owner named, recent: kept
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    assert main(["gc", "--uri", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"]) == 0
    assert not legacy.exists()


def test_cache_ls_and_prune(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(home))
    store = ContentStore(root=home / "store")
    now = time.time()
    for i, age_days in enumerate([30, 10, 1]):
        key = f"{i}" * 32
        with store.build("train", key) as tmp:
            (tmp / "artifacts" / "params.pkl").write_bytes(b"x" * 1_000_000)
        marker = store.path("train", key) / "_COMPLETE"
        os.utime(marker, (now - age_days * 86400, now - age_days * 86400))
    hc = home / "handler_cache" / ("h" * 32)
    hc.mkdir(parents=True)
    (hc / "learn.values.npy").write_bytes(b"v" * 500_000)
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "4 entries" in out and "train" in out and "handler" in out
    assert main(["cache", "prune", "--older-than", "20d", "--dry-run"]) == 0
    assert store.path("train", "0" * 32).exists()
    assert main(["cache", "prune", "--older-than", "20d"]) == 0
    assert not store.path("train", "0" * 32).exists() and store.exists("train", "1" * 32)
    assert main(["cache", "prune", "--max-size", "1.6M"]) == 0  # oldest first: the 10-day entry goes
    assert not store.path("train", "1" * 32).exists()
    left = {p.name for p in (home / "store" / "train").iterdir()} | {p.name for p in (home / "handler_cache").iterdir()}
    assert left == {"2" * 32, "h" * 32}
    assert main(["cache", "prune"]) == 2  # neither option: a clear error
    assert "--older-than" in capsys.readouterr().err
    shutil.rmtree(home)


def test_doctor_and_gc_crash_the_flow_runs_of_killed_processes(tmp_path, capsys, monkeypatch):
    """A Prefect flow run left Running by a process that is gone (owner tags naming a dead process on this host):
    `doctor` lists it and changes nothing, `gc` sets it Crashed; runs of live owners and other hosts are kept."""
    import socket

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from qlib_prefect.orchestration.housekeeping import OWN_FLOW_RUN_TAG, flow_run_owner_tags

    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    gone = subprocess.run([sys.executable, "-c", "from qlib_prefect.utils.owner import token; print(token())"],
                          env=_env(tmp_path / "home"), capture_output=True, text=True, check=True).stdout.strip()
    host = socket.gethostname()

    @flow(name="gc-victim")
    def victim() -> None: ...

    tag_sets = {"dead": [OWN_FLOW_RUN_TAG, f"qlib-prefect-owner:{gone}", f"qlib-prefect-host:{host}"],
                "live": flow_run_owner_tags(),
                "other host": [OWN_FLOW_RUN_TAG, f"qlib-prefect-owner:{gone}", "qlib-prefect-host:elsewhere"]}
    with get_client(sync_client=True) as client:
        ids = {k: str(client.create_flow_run(victim, tags=t, state=Running()).id) for k, t in tag_sets.items()}

    def states() -> dict[str, str]:
        with get_client(sync_client=True) as client:
            return {k: client.read_flow_run(i).state.type.value for k, i in ids.items()}

    uri = f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}"
    assert main(["doctor", "--uri", uri]) == 1
    out = capsys.readouterr().out
    assert f"Prefect flow run {ids['dead']}: left Running by a killed process" in out
    assert ids["live"] not in out and ids["other host"] not in out
    assert set(states().values()) == {"RUNNING"}  # doctor changes nothing
    assert main(["gc", "--uri", uri]) == 0
    assert f"Prefect flow run {ids['dead']}: marked Crashed" in capsys.readouterr().out
    assert states() == {"dead": "CRASHED", "live": "RUNNING", "other host": "RUNNING"}
    assert ids["dead"] not in (main(["doctor", "--uri", uri]), capsys.readouterr().out)[1]
