"""`qlib-prefect task-pool POOL task_stat|wait|reset_waiting|remove|list|query` against a real MongoDB wire-protocol
server (SecantusDB, in memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "task"))
from mongo_server import mongo_server

from qlib_prefect.cli.main import main
from qlib_prefect.config.runtime import C
from qlib_prefect.task.manage import TaskManager

DB = "qp_cli_db"


@pytest.fixture(scope="module")
def mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture
def pool(mongo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("QLIB_PREFECT_MONGO_URL", mongo_url)
    monkeypatch.setenv("QLIB_PREFECT_MONGO_DB", DB)
    monkeypatch.setitem(C, "mongo", {"task_url": "mongodb://localhost:27017/", "task_db_name": "default_task_db"})
    name = f"cli_{uuid.uuid4().hex[:8]}"
    yield name
    TaskManager(name).task_pool.drop()


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(["task-pool", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_stat_query_reset_remove_list(pool: str, capsys: pytest.CaptureFixture) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i} for i in range(4)])
    tm.commit_task_res(tm.fetch_task(query={"_id": ids[0]}), {"ic": 0.5})
    tm.fetch_task(query={"_id": ids[1]})
    assert run(capsys, pool, "task_stat") == (0, json.dumps({"done": 1, "running": 1, "waiting": 2}) + "\n", "")
    rc, out, _ = run(capsys, pool, "task_stat", '{"status": "waiting"}')
    assert rc == 0 and json.loads(out) == {"waiting": 2}

    rc, out, _ = run(capsys, pool, "query", json.dumps({"_id": str(ids[0])}))
    (line,) = out.splitlines()
    doc = json.loads(line)
    assert rc == 0 and doc["_id"] == str(ids[0]) and doc["status"] == "done"
    assert doc["def"] == {"i": 0} and doc["res"] == {"ic": 0.5}
    rc, out, _ = run(capsys, pool, "query", '{"status": "running"}', "--raw")
    (doc,) = [json.loads(x) for x in out.splitlines()]
    assert doc["_id"] == str(ids[1]) and doc["def"].startswith("<pickled, ") and doc["lease"]["from"] == "waiting"

    assert run(capsys, pool, "reset_waiting")[1] == "1 task(s) set to waiting\n"
    assert json.loads(run(capsys, pool, "task-stat")[1]) == {"done": 1, "waiting": 3}
    rc, _, err = run(capsys, pool, "remove")
    assert rc == 2 and "--yes" in err and tm.task_pool.count_documents({}) == 4
    assert run(capsys, pool, "remove", '{"status": "done"}')[1] == "removed 1 task(s)\n"
    rc, out, _ = run(capsys, "list")
    assert rc == 0 and pool in out.splitlines()
    assert run(capsys, pool, "remove", "--yes")[1] == "removed 3 task(s)\n"


def test_wait(pool: str, capsys: pytest.CaptureFixture) -> None:
    tm = TaskManager(pool)
    tm.create_task([{"i": 0}])
    rc, _, err = run(capsys, pool, "wait", "--poll", "0.05", "--timeout", "0.2")
    assert rc == 1 and "still undone" in err
    tm.commit_task_res(tm.fetch_task(), 1)
    assert run(capsys, pool, "wait", "--poll", "0.05") == (0, '{"done": 1}\n', "")


def test_bad_input_gives_clear_errors(pool: str, capsys: pytest.CaptureFixture) -> None:
    rc, _, err = run(capsys, pool, "explode")
    assert rc == 2 and "unknown action 'explode'" in err
    rc, _, err = run(capsys, pool, "query", "{status: 1}")
    assert rc == 2 and "QUERY is not valid JSON" in err
    rc, _, err = run(capsys, pool, "query", "[1]")
    assert rc == 2 and "JSON object" in err
    rc, _, err = run(capsys, pool)
    assert rc == 2 and "POOL ACTION" in err
    rc, _, err = run(capsys, pool, "query", '{"_id": "xyz"}')
    assert rc == 2 and "'xyz' is not a task _id" in err


def test_unreachable_server(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(C, "mongo", {"task_url": "mongodb://localhost:27017/", "task_db_name": "d",
                                     "server_selection_timeout_ms": 200})
    rc, _, err = run(capsys, "--url", "mongodb://127.0.0.1:9/", "--db", "x", "p", "task_stat")
    assert rc == 2 and "cannot reach MongoDB at mongodb://127.0.0.1:9/" in err


def test_entry_point_in_a_subprocess(pool: str, mongo_url: str) -> None:
    TaskManager(pool).create_task([{"i": 1}, {"i": 2}])
    env = dict(os.environ, QLIB_PREFECT_MONGO_URL="mongodb://127.0.0.1:9/")  # overridden by --url
    out = subprocess.run([sys.executable, "-m", "qlib_prefect.cli.main", "task-pool", "--url", mongo_url, "--db", DB,
                          pool, "task_stat"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"waiting": 2}
