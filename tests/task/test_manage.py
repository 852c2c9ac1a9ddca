"""TaskManager / run_task against a real MongoDB wire-protocol server (SecantusDB, in memory): qlib's API and document
encoding, priority, dedupe, leases (expiry, heartbeat, lost-lease commits), the allow-list unpickler, a 4-process
claim race and a SIGKILLed worker whose task is reclaimed and finished by another worker."""

from __future__ import annotations

import datetime as dt
import io
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pymongo.errors
import pytest
from bson.binary import Binary
from mongo_server import mongo_server

import qlib_prefect
from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError, LoadObjectError
from qlib_prefect.task import manage, unpickler
from qlib_prefect.task.manage import (
    TaskManager,
    TaskPoolError,
    UnsafePickleError,
    add_safe_class,
    mongo_config,
    run_task,
    safe_loads,
)
from qlib_prefect.workflow.recorder import MLflowRecorder

DB = "qp_test_db"


@pytest.fixture(scope="module")
def mongo_url() -> Iterator[str]:
    with mongo_server() as url:
        yield url


@pytest.fixture
def pool(mongo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh pool name on the test server (the server reached through the environment settings)."""
    monkeypatch.setenv("QLIB_PREFECT_MONGO_URL", mongo_url)
    monkeypatch.setenv("QLIB_PREFECT_MONGO_DB", DB)
    monkeypatch.setitem(C, "mongo", {"task_url": "mongodb://localhost:27017/", "task_db_name": "default_task_db"})
    name = f"pool_{uuid.uuid4().hex[:8]}"
    yield name
    TaskManager(name).task_pool.drop()


class Custom:  # a class outside the allow-list
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and other.x == self.x


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/qlib_prefect_pwned",))


def raw(tm: TaskManager, _id) -> dict:
    return tm.task_pool.find_one({"_id": _id})


# ---- configuration --------------------------------------------------------------------------------------------------
def test_mongo_config_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QLIB_PREFECT_MONGO_URL", raising=False)
    monkeypatch.delenv("QLIB_PREFECT_MONGO_DB", raising=False)
    qlib_prefect.init()
    try:
        cfg = mongo_config()
        assert (cfg["task_url"], cfg["task_db_name"]) == ("mongodb://localhost:27017/", "default_task_db")
        assert cfg["lease_seconds"] == manage.DEFAULT_LEASE_SECONDS
        monkeypatch.setenv("QLIB_PREFECT_MONGO_URL", "mongodb://envhost:1/")
        monkeypatch.setenv("QLIB_PREFECT_MONGO_DB", "envdb")
        assert (mongo_config()["task_url"], mongo_config()["task_db_name"]) == ("mongodb://envhost:1/", "envdb")
        qlib_prefect.init(mongo={"task_url": "mongodb://cfghost:2/", "task_db_name": "cfgdb", "lease_seconds": 5})
        cfg = mongo_config()
        assert (cfg["task_url"], cfg["task_db_name"], cfg["lease_seconds"]) == ("mongodb://cfghost:2/", "cfgdb", 5.0)
        assert TaskManager("x").lease_seconds == 5.0  # no connection made by the constructor
        assert TaskManager("x", lease_seconds=0).lease_seconds == 0.0
    finally:
        C.reset()


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="task_pool"):
        TaskManager("")
    with pytest.raises(ConfigError, match="lease_seconds"):
        TaskManager("p", lease_seconds=-1)
    with pytest.raises(ConfigError, match="'nope' is not a task _id"):
        TaskManager("p")._decode_query({"_id": "nope"})
    with pytest.raises(ValueError, match="STATUS_WAITING"):
        run_task(len, "p", before_status="done")


def test_qlib_class_path_resolves_here() -> None:
    assert resolve_class("TaskManager", "qlib.workflow.task.manage") is TaskManager


def test_unreachable_server_names_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(C, "mongo", {"task_url": "mongodb://127.0.0.1:9/", "task_db_name": "d",
                                     "server_selection_timeout_ms": 200})
    with pytest.raises(TaskPoolError, match=re.escape("cannot reach MongoDB at mongodb://127.0.0.1:9/")):
        TaskManager.list()
    with pytest.raises(TaskPoolError, match=re.escape("task pool 'p' create_task: cannot reach MongoDB at mongodb://")):
        TaskManager("p").create_task([{"a": 1}])


# ---- encoding and creation ------------------------------------------------------------------------------------------
def test_document_encoding_and_dedupe(pool: str, capsys: pytest.CaptureFixture) -> None:
    tm = TaskManager(pool)
    t1 = {"model": {"class": "LGBModel"}, "seg": ("2020-01-01", "2020-06-30")}
    t2 = {"model": {"class": "Linear"}, "n": 2}
    t3 = {"model": {"class": "LGBModel"}, "path": Path("/data/x")}  # not BSON-encodable: stringified filter
    assert tm.create_task([t1, t2], dry_run=True, print_nt=True) == []
    assert str(t1) in capsys.readouterr().out
    assert tm.task_pool.count_documents({}) == 0
    id1, id2 = tm.create_task([t1, t2])
    assert tm.create_task([t2, t3, t1, t3]) == [id2, tm.create_task([t3])[0], id1, tm.create_task([t3])[0]]
    assert tm.task_pool.count_documents({}) == 3
    doc = raw(tm, id1)
    # qlib's document: pickled def, the task itself as BSON filter (tuples become arrays), status waiting
    assert pickle.loads(doc["def"]) == t1 and doc["status"] == "waiting"
    assert doc["filter"] == {"model": {"class": "LGBModel"}, "seg": ["2020-01-01", "2020-06-30"]}
    doc3 = tm.task_pool.find_one({"filter.path": "/data/x"})
    assert doc3["filter"] == {"model": "{'class': 'LGBModel'}", "path": "/data/x"}
    assert tm.re_query(str(doc3["_id"]))["def"] == t3
    # dedupe is exact BSON equality: another key order is another task (as in qlib)
    assert tm.create_task([{"n": 2, "model": {"class": "Linear"}}])[0] != id2


def test_concurrent_create_task_inserts_each_task_once(pool: str) -> None:
    tasks = [{"i": i, "seg": ("2020-01-01", "2020-06-30")} for i in range(30)]
    barrier = threading.Barrier(4)
    results: list[list] = []

    def create() -> None:
        tm = TaskManager(pool)
        tm.task_pool.find_one()  # connect before the barrier
        barrier.wait()
        results.append(tm.create_task(tasks))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    tm = TaskManager(pool)
    assert tm.task_pool.count_documents({}) == 30 and len(set(results[0])) == 30
    assert tm.task_pool.find_one()["filter_key"]  # the unique key behind it
    with pytest.raises(pymongo.errors.DuplicateKeyError):
        tm.insert_task_def(tasks[0])


def test_insert_and_replace_task(pool: str) -> None:
    tm = TaskManager(pool)
    _id = tm.insert_task_def({"a": 1}).inserted_id
    task = tm.re_query(_id)
    tm.replace_task(task, {"def": {"a": 2}, "filter": {"a": 2}, "status": "done", "res": [1, 2]})
    got = tm.re_query(_id)
    assert (got["def"], got["filter"], got["status"], got["res"]) == ({"a": 2}, {"a": 2}, "done", [1, 2])
    with pytest.raises(TaskPoolError, match="no task with _id"):
        tm.re_query("0123456789ab0123456789ab")


# ---- fetching, statuses, priority ------------------------------------------------------------------------------------
def test_fetch_commit_return_and_queries(pool: str) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i} for i in range(4)])
    task = tm.fetch_task(query={"_id": str(ids[2])})
    assert task["_id"] == ids[2] and task["def"] == {"i": 2} and task["status"] == "running"
    assert task["lease"]["worker"] == tm.worker_id and task["lease"]["from"] == "waiting"
    assert task["lease"]["deadline"] > dt.datetime.now(dt.timezone.utc)
    assert tm.fetch_task(query={"_id": str(ids[2])}) is None  # already claimed
    assert tm.task_stat() == {"waiting": 3, "running": 1}
    assert tm.commit_task_res(task, {"score": 1.5}) is True
    done = tm.re_query(ids[2])
    assert done["status"] == "done" and done["res"] == {"score": 1.5} and "lease" not in done
    t0 = tm.fetch_task(query={"_id": {"$in": [str(ids[0])]}})
    assert tm.return_task(t0) is True and raw(tm, ids[0])["status"] == "waiting" and "lease" not in raw(tm, ids[0])
    t1 = tm.fetch_task(query={"_id": ids[1]})
    tm.commit_task_res(t1, "half", status=TaskManager.STATUS_PART_DONE)
    assert tm.task_stat() == {"waiting": 2, "done": 1, "part_done": 1}
    assert tm.task_stat({"_id": {"$in": [str(i) for i in ids[:2]]}}) == {"waiting": 1, "part_done": 1}
    part = tm.fetch_task(status=TaskManager.STATUS_PART_DONE)
    assert part["_id"] == ids[1] and part["res"] == "half" and part["lease"]["from"] == "part_done"
    tm.return_task(part, status=TaskManager.STATUS_PART_DONE)
    assert sorted(t["def"]["i"] for t in tm.query({"status": "waiting"})) == [0, 3]
    undecoded = next(tm.query({"_id": ids[2]}, decode=False))
    assert isinstance(undecoded["res"], bytes) and pickle.loads(undecoded["res"]) == {"score": 1.5}
    assert pool in TaskManager.list()


def test_priority_order(pool: str) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i} for i in range(6)])
    for i, p in [(1, 1), (4, 9), (2, 5), (5, -3)]:
        tm.prioritize(tm.re_query(ids[i]), p)
    order = []
    while (t := tm.fetch_task()) is not None:
        order.append(t["def"]["i"])
    # higher priority first; documents without one after all with one (qlib's DESCENDING sort)
    assert order[:4] == [4, 2, 1, 5] and sorted(order[4:]) == [0, 3]


def test_reset_remove(pool: str) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i} for i in range(5)])
    for _ in range(3):
        tm.fetch_task()
    assert tm.task_stat() == {"running": 3, "waiting": 2}
    assert tm.reset_waiting() == 3 and tm.task_stat() == {"waiting": 5}
    assert all("lease" not in d for d in tm.task_pool.find())
    assert tm.reset_status({"_id": {"$in": [str(ids[0]), str(ids[1])]}}, "done") == 2
    assert tm.reset_waiting({"status": "done"}) == 2
    tm.reset_status({"_id": str(ids[4])}, "done")
    assert tm.remove({"status": "done"}) == 1 and tm.task_pool.count_documents({}) == 4
    assert tm.remove() == 4 and tm.task_stat() == {}


def test_safe_fetch_returns_task_on_error(pool: str) -> None:
    tm = TaskManager(pool)
    (a,) = tm.create_task([{"i": 0}])
    with pytest.raises(RuntimeError, match="boom"), tm.safe_fetch_task() as task:
        assert raw(tm, a)["status"] == "running"
        raise RuntimeError("boom")
    assert raw(tm, a)["status"] == "waiting" and "lease" not in raw(tm, a)
    tm.reset_status({}, TaskManager.STATUS_PART_DONE)
    with pytest.raises(KeyboardInterrupt), tm.safe_fetch_task(status=TaskManager.STATUS_PART_DONE) as task:
        assert task["_id"] == a
        raise KeyboardInterrupt
    assert raw(tm, a)["status"] == "part_done"  # back to its original status
    with tm.safe_fetch_task() as task:
        assert task is None


def test_task_fetcher_iter(pool: str) -> None:
    tm = TaskManager(pool)
    tm.create_task([{"i": i} for i in range(3)])
    seen = []
    for task in tm.task_fetcher_iter():
        seen.append(task["def"]["i"])
        tm.commit_task_res(task, task["def"]["i"] * 10)
    assert sorted(seen) == [0, 1, 2]
    assert sorted(t["res"] for t in tm.query()) == [0, 10, 20]


def test_wait_until_done_and_timeout(pool: str, capsys: pytest.CaptureFixture) -> None:
    tm = TaskManager(pool)
    tm.wait()  # empty pool: returns at once
    ids = tm.create_task([{"i": i} for i in range(3)])
    with pytest.raises(TimeoutError, match="3 task"):
        tm.wait(poll_interval=0.05, timeout=0.2)

    def finish() -> None:
        other = TaskManager(pool)
        for task in other.task_fetcher_iter():
            time.sleep(0.05)
            other.commit_task_res(task, 1)

    th = threading.Thread(target=finish)
    th.start()
    tm.wait(poll_interval=0.05)
    th.join()
    assert tm.task_stat() == {"done": 3}
    assert "3/3 done" in capsys.readouterr().err
    tm.wait({"_id": {"$in": [str(i) for i in ids]}}, poll_interval=0.05)


# ---- run_task -------------------------------------------------------------------------------------------------------
def add_k(param: dict, k: int = 0) -> dict:
    return {"i": param["i"], "step": param.get("step", 0) + 1 + k}


def test_run_task_transitions(pool: str) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i} for i in range(3)])
    assert run_task(add_k, pool, query={"_id": {"$in": [str(ids[0]), str(ids[1])]}},
                    after_status=TaskManager.STATUS_PART_DONE, k=10) is True
    assert tm.task_stat() == {"part_done": 2, "waiting": 1}
    # part_done tasks get their stored result as the parameter
    assert run_task(add_k, tm, before_status=TaskManager.STATUS_PART_DONE) is True
    assert [tm.re_query(i)["res"] for i in ids[:2]] == [{"i": 0, "step": 12}, {"i": 1, "step": 12}]
    assert run_task(add_k, tm) is True and tm.re_query(ids[2])["res"] == {"i": 2, "step": 1}
    assert run_task(add_k, tm) is False
    assert tm.task_stat() == {"done": 3}


def test_run_task_error_returns_task(pool: str) -> None:
    tm = TaskManager(pool)
    (a,) = tm.create_task([{"x": 1}])
    with pytest.raises(KeyError):
        run_task(add_k, tm)
    assert raw(tm, a)["status"] == "waiting"


def test_run_task_force_release_runs_in_a_subprocess(pool: str) -> None:
    tm = TaskManager(pool)
    (a,) = tm.create_task([{"a": 1, "b": 2}])
    assert run_task(len, pool, force_release=True) is True
    assert tm.re_query(a)["res"] == 2


# ---- leases ---------------------------------------------------------------------------------------------------------
def test_expired_lease_is_reclaimed_and_stale_commit_refused(pool: str) -> None:
    slow = TaskManager(pool, lease_seconds=0.5)
    (a,) = slow.create_task([{"i": 0}])
    stale = slow.fetch_task()  # no heartbeat: the lease runs out
    other = TaskManager(pool, lease_seconds=30)
    assert other.fetch_task() is None
    time.sleep(0.8)
    assert other.task_stat() == {"waiting": 1}  # reclaimed to the status it came from
    fresh = other.fetch_task()
    assert fresh["_id"] == a and fresh["lease"]["worker"] == other.worker_id
    assert slow.commit_task_res(stale, "stale") is False and slow.return_task(stale) is False
    assert slow.renew_lease(stale) is False
    assert raw(other, a)["status"] == "running"
    assert other.commit_task_res(fresh, "fresh") is True
    assert other.re_query(a)["res"] == "fresh"


def test_expired_part_done_lease_goes_back_to_part_done(pool: str) -> None:
    tm = TaskManager(pool, lease_seconds=0.3)
    (a,) = tm.create_task([{"i": 0}])
    tm.reset_status({}, TaskManager.STATUS_PART_DONE)
    tm.fetch_task(status=TaskManager.STATUS_PART_DONE)
    time.sleep(0.5)
    assert tm.reclaim_expired() == 1 and raw(tm, a)["status"] == "part_done"


def test_heartbeat_keeps_the_lease(pool: str) -> None:
    tm = TaskManager(pool, lease_seconds=0.6)
    (a,) = tm.create_task([{"i": 0}])
    other = TaskManager(pool, lease_seconds=0.6)
    with tm.safe_fetch_task() as task:
        first = raw(tm, a)["lease"]["deadline"]
        time.sleep(1.5)  # 2.5 leases
        assert other.fetch_task() is None  # still held
        assert raw(tm, a)["lease"]["deadline"] > first
        assert tm.commit_task_res(task, "ok") is True
    assert raw(tm, a)["status"] == "done"


def test_no_lease_mode_is_qlibs_behaviour(pool: str) -> None:
    tm = TaskManager(pool, lease_seconds=0)
    (a,) = tm.create_task([{"i": 0}])
    task = tm.fetch_task()
    assert "lease" not in task and raw(tm, a)["status"] == "running"
    assert tm.reclaim_expired() == 0
    assert tm.commit_task_res(task, 1) is True


# ---- allow-list unpickler -------------------------------------------------------------------------------------------
def test_allow_list_round_trips_task_data() -> None:
    idx = pd.MultiIndex.from_product([pd.date_range("2020-01-01", periods=2), ["A", "B"]],
                                     names=["datetime", "instrument"])
    df = pd.DataFrame({"score": np.arange(4.0), "name": ["a", "b", "c", "d"]}, index=idx)
    obj = {
        "df": df, "s": pd.Series([1, 2], index=pd.Index(["x", "y"])), "ts": pd.Timestamp("2020-01-01"),
        "tz": pd.Timestamp("2020-01-01", tz="UTC"), "td": pd.Timedelta("1D"), "nat": pd.NaT,
        "cat": pd.Series(pd.Categorical(["a", "b"])), "rng": pd.RangeIndex(3), "per": pd.Period("2020-01", "M"),
        "np": (np.float64(1.5), np.int64(2), np.bool_(True), np.arange(3), np.dtype("f8"),
               np.array(["2020-01-01"], dtype="datetime64[ns]")),
        "py": (dt.datetime(2020, 1, 1), dt.date(2020, 1, 1), dt.timedelta(1), Path("/x"), PurePosixPath("/y"),
               Decimal("1.5"), uuid.UUID(int=1), OrderedDict(a=1), Counter("ab"), {1, 2}, frozenset([3]),
               bytearray(b"x"), complex(1, 2), b"raw", None, range(3)),
        "seg": ("2020-01-01", "2020-06-30"),
    }
    for proto in (2, 4, 5):
        back = safe_loads(pickle.dumps(obj, protocol=proto))
        pd.testing.assert_frame_equal(back["df"], df)
        assert back["py"] == obj["py"] and back["np"][:3] == obj["np"][:3] and back["ts"] == obj["ts"]
    rec = MLflowRecorder("1", "sqlite:///x.db", "name", config={"a": pd.Timestamp("2020-01-01")})
    rec.id = "abc"
    back = safe_loads(pickle.dumps(rec))
    assert isinstance(back, MLflowRecorder) and back.id == "abc" and back.uri == "sqlite:///x.db"


def test_allow_list_refuses_other_classes(pool: str, tmp_path: Path) -> None:
    marker = Path("/tmp/qlib_prefect_pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(UnsafePickleError, match=r"posix\.system|os\.system"):
        safe_loads(pickle.dumps(Evil()))
    assert not marker.exists()
    for bad in (pickle.dumps(np.memmap), pickle.dumps(getattr), pickle.dumps(Custom)):
        with pytest.raises(UnsafePickleError):
            safe_loads(bad)
    tm = TaskManager(pool)
    (a,) = tm.create_task([{"obj": Custom(1)}])
    with pytest.raises(UnsafePickleError, match=r"test_manage\.Custom.*add_safe_class") as ei:
        tm.query({"_id": a}).__next__()
    assert isinstance(ei.value, LoadObjectError) and pool in str(ei.value)
    assert tm.fetch_task() is None  # the undecodable task is marked failed, not handed out (nor back) again
    doc = raw(tm, a)
    assert doc["status"] == "failed" and "test_manage.Custom" in doc["error"] and "lease" not in doc
    saved = set(unpickler._SAFE_GLOBALS)
    try:
        add_safe_class(Custom)
        tm.reset_status({"_id": a}, "waiting")
        assert tm.fetch_task()["def"] == {"obj": Custom(1)}
    finally:
        unpickler._SAFE_GLOBALS.clear()
        unpickler._SAFE_GLOBALS.update(saved)
    with pytest.raises(ConfigError, match="add_safe_class"):
        add_safe_class("only.module")


# ---- worker processes -----------------------------------------------------------------------------------------------
WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from qlib_prefect.task.manage import TaskManager, run_task

    pool, lease, out, go = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    out.with_suffix(".ready").touch()  # imports done

    def work(task_def, out):
        with open(out, "a") as f:
            f.write(f"{task_def['i']}\\n")
        time.sleep(task_def.get("sleep", 0.0))
        return {"i": task_def["i"], "pid": os.getpid()}

    while not go.exists():
        time.sleep(0.01)
    run_task(work, TaskManager(pool, lease_seconds=lease), out=str(out))
    """
)


def start_worker(tmp_path: Path, pool: str, lease: float, name: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    out = tmp_path / f"{name}.txt"
    proc = subprocess.Popen([sys.executable, str(script), pool, str(lease), str(out), str(tmp_path / "go")],
                            env=dict(os.environ))
    return proc, out


def test_claim_race_four_processes_every_task_done_once(pool: str, tmp_path: Path) -> None:
    tm = TaskManager(pool)
    ids = tm.create_task([{"i": i, "sleep": 0.01} for i in range(100)])
    workers = [start_worker(tmp_path, pool, 30.0, f"w{k}") for k in range(4)]
    deadline = time.monotonic() + 120
    while not all(out.with_suffix(".ready").exists() for _, out in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()  # all four start claiming together
    for proc, _ in workers:
        assert proc.wait(timeout=240) == 0
    runs = Counter(int(line) for _, out in workers if out.exists() for line in out.read_text().split())
    assert runs == Counter(range(100))  # every task executed exactly once
    assert tm.task_stat() == {"done": 100}
    results = [tm.re_query(i)["res"] for i in ids]
    assert [r["i"] for r in results] == list(range(100))
    assert len({r["pid"] for r in results}) >= 2  # the claims really were contended
    assert all("lease" not in d for d in tm.task_pool.find())


def test_killed_worker_task_is_reclaimed_and_finished(pool: str, tmp_path: Path) -> None:
    tm = TaskManager(pool)
    (a,) = tm.create_task([{"i": 7, "sleep": 600}])
    (tmp_path / "go").touch()
    proc, out = start_worker(tmp_path, pool, 1.5, "victim")
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:  # wait until it runs the task
        time.sleep(0.05)
    doc = raw(tm, a)
    assert doc["status"] == "running" and doc["lease"]["worker"].split(":")[1] == str(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rescuer = TaskManager(pool, lease_seconds=30)
    assert rescuer.fetch_task() is None  # the lease still runs
    finished = False
    while not finished and time.monotonic() < deadline:
        finished = run_task(add_k, rescuer)
        time.sleep(0.2)
    assert finished
    done = rescuer.re_query(a)
    assert done["status"] == "done" and done["res"] == {"i": 7, "step": 1} and "lease" not in done


# ---- interoperability with the real qlib (opt-in) -------------------------------------------------------------------
_ORACLE = os.environ.get("QLIB_ORACLE_PYTHON", "")
_QLIB_SIDE = textwrap.dedent(
    """
    import json, sys
    import qlib
    from qlib.workflow.task.manage import TaskManager
    url, db, ours, theirs = sys.argv[1:5]
    qlib.init(provider_uri="/nonexistent", mongo={"task_url": url, "task_db_name": db})
    tm = TaskManager(ours)
    out = {"stat": tm.task_stat(), "defs": sorted(t["def"]["i"] for t in tm.query())}
    t = tm.fetch_task()  # qlib's fetch on our pool: priority respected
    tm.commit_task_res(t, {"by": "qlib", "i": t["def"]["i"]})
    out["fetched"] = t["def"]["i"]
    q = TaskManager(theirs)
    ids = q.create_task([{"i": i, "seg": ("2020-01-01", "2020-02-01")} for i in range(3)])
    q.prioritize(q.re_query(ids[1]), 5)
    out["ids"] = [str(i) for i in ids]
    print(json.dumps(out))
    """
)


@pytest.mark.qlib
@pytest.mark.skipif(not _ORACLE or not Path(_ORACLE).exists(), reason="set QLIB_ORACLE_PYTHON to the real qlib venv")
def test_pools_are_shared_with_real_qlib(pool: str, mongo_url: str) -> None:
    """Opt-in: ``QLIB_ORACLE_PYTHON=/work/qlib-venv/bin/python pytest -m qlib tests/task/test_manage.py``."""
    import json

    tm = TaskManager(pool)
    ids = tm.create_task([{"i": 0}, {"i": 1}])
    tm.prioritize(tm.re_query(ids[1]), 3)
    theirs = f"{pool}_qlib"
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = subprocess.run([_ORACLE, "-c", _QLIB_SIDE, mongo_url, DB, pool, theirs], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    q = json.loads(r.stdout.strip().splitlines()[-1])
    assert q["stat"] == {"waiting": 2} and q["defs"] == [0, 1] and q["fetched"] == 1
    assert tm.re_query(ids[1])["res"] == {"by": "qlib", "i": 1} and tm.task_stat() == {"waiting": 1, "done": 1}
    other = TaskManager(theirs)
    try:
        # same filter encoding: our create_task dedupes against qlib's documents
        again = other.create_task([{"i": i, "seg": ("2020-01-01", "2020-02-01")} for i in range(3)])
        assert [str(i) for i in again] == q["ids"]
        order = [other.fetch_task()["def"] for _ in range(3)]
        assert order[0]["i"] == 1 and order[0]["seg"] == ("2020-01-01", "2020-02-01")  # priority; def unpickled
    finally:
        other.task_pool.drop()


class _ExcelBomb:
    """What the issue's hostile task did: its ``def`` calls ``pandas.ExcelWriter(path, 'openpyxl')`` on decode."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (pd.ExcelWriter, (self.path, "openpyxl"))


class _HdfBomb(_ExcelBomb):
    def __reduce__(self):
        return (pd.HDFStore, (self.path, "w"))


@pytest.mark.parametrize("bomb", [_ExcelBomb, _HdfBomb])
def test_file_touching_pandas_classes_are_refused(bomb, tmp_path: Path) -> None:
    victim = tmp_path / "victim.xlsx"
    victim.write_bytes(b"precious")
    with pytest.raises(UnsafePickleError, match=r"pandas.*(ExcelWriter|HDFStore)"):
        safe_loads(pickle.dumps(bomb(str(victim))))
    assert victim.read_bytes() == b"precious"
    for name in ("read_csv", "read_pickle", "eval", "ExcelFile", "HDFStore", "ExcelWriter"):
        with pytest.raises(UnsafePickleError):
            unpickler.AllowListUnpickler(io.BytesIO(b"")).find_class("pandas", name)


def test_poison_task_is_failed_and_the_pool_moves_on(pool: str, tmp_path: Path) -> None:
    """One undecodable task among good ones: run_task marks it failed with the reason and runs every good task."""
    tm = TaskManager(pool)
    victim = tmp_path / "victim.xlsx"
    victim.write_bytes(b"precious")
    good = tm.create_task([{"n": i} for i in range(3)])
    poison = tm.insert_task(
        {"def": Binary(pickle.dumps(_ExcelBomb(str(victim)))), "filter": {"n": "poison"}, "status": "waiting",
         "priority": 10}
    ).inserted_id
    ran = []
    assert run_task(lambda d: ran.append(d["n"]) or d["n"] * 2, pool)
    assert sorted(ran) == [0, 1, 2]
    assert [raw(tm, g)["status"] for g in good] == ["done"] * 3
    doc = raw(tm, poison)
    assert doc["status"] == "failed" and "ExcelWriter" in doc["error"]
    assert victim.read_bytes() == b"precious"
    assert tm.task_stat() == {"done": 3, "failed": 1}
