"""The MLflow SQLite store is created atomically: a real Ctrl-C (SIGINT) during creation leaves no broken store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qlib_prefect.workflow._store import get_client

_CREATE = """
import sys
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine

# every SQL statement of the creation takes 10 ms longer: MLflow's migrations then last several seconds on any
# machine, so the signal always lands inside them (the test does not depend on how fast this machine is)
event.listen(Engine, "before_cursor_execute", lambda *a, **k: time.sleep(0.01))
from qlib_prefect.workflow._store import get_client
print("go", flush=True)
get_client(sys.argv[1])
print("done", flush=True)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


@pytest.mark.parametrize("extra_delay", [0.0, 1.5])
def test_sigint_during_creation_leaves_a_usable_store(tmp_path, extra_delay):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CREATE, uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True
    )
    assert proc.stdout.readline().strip() == "go"
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("mlflow.db.tmp-*")):  # creation (MLflow's migrations) is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.01)
    time.sleep(extra_delay)
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=60)
    assert "done" not in out, "creation finished before the signal: the test did not interrupt it"
    assert proc.returncode != 0
    assert not db.exists() or db.stat().st_size == 0  # never a half-migrated store under the real name

    client = get_client(uri)  # the next run creates the store (and removes the killed creator's temp file)
    exp = client.create_experiment("after-sigint")
    run = client.create_run(exp)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert not list(tmp_path.glob("mlflow.db.tmp-*"))


def _half_migrated(db: Path) -> None:
    """The state the issue reported: the last migration created its index, the kill came before alembic stamped
    it, so every later open re-runs it and fails with ``index ... already exists``."""
    import sqlite3

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(f"sqlite:///{db}", str(db.parent / "artifacts")).engine.dispose()
    con = sqlite3.connect(db)
    index = con.execute("SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'idx_model_version_tags_%'")
    assert index.fetchone(), "MLflow's schema changed: the simulated half-migration no longer applies"
    con.execute("UPDATE alembic_version SET version_num = 'ae8bbe7743c9'")
    con.execute("DROP TABLE IF EXISTS scheduler_leases")  # made by a later migration the kill never reached
    con.commit()
    con.close()


def test_half_migrated_store_without_data_is_repaired(tmp_path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = tmp_path / "mlflow.db"
    _half_migrated(db)
    copy = tmp_path / "plain" / "mlflow.db"
    copy.parent.mkdir()
    shutil.copy(db, copy)
    with pytest.raises(Exception, match="already exists"):  # what plain MLflow does with it
        SqlAlchemyStore(f"sqlite:///{copy}", str(tmp_path / "artifacts"))
    client = get_client(f"sqlite:///{db}")
    run = client.create_run(client.create_experiment("repaired"))
    assert client.get_run(run.info.run_id).info.status == "RUNNING"
    assert len(list(tmp_path.glob("mlflow.db.incomplete-*"))) == 1


def test_broken_store_with_runs_is_never_moved(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    _half_migrated(db)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO experiments (experiment_id, name, lifecycle_stage) VALUES (7, 'kept', 'active')")
    con.commit()
    con.close()
    with pytest.raises(Exception, match="already exists"):
        get_client(f"sqlite:///{db}")
    assert db.exists() and not list(tmp_path.glob("mlflow.db.incomplete-*"))
