"""A MongoDB task pool (qlib's ``qlib/workflow/task/manage.py``) with worker leases.

Each task is one document of a collection (the *task pool*)::

    {"_id": ObjectId, "def": <pickled task dict>, "filter": <task dict as BSON, for dedupe / queries>,
     "status": "waiting" | "running" | "done" | "part_done", "res": <pickled result>, "priority": int,
     "lease": {"worker": "host:pid:xxxx", "token": "...", "deadline": datetime, "from": "waiting"}}

Everything but ``lease`` is qlib's document encoding, so a pool can be shared with qlib's ``TaskManager``.

Beyond qlib:

* **Leases.** :meth:`TaskManager.fetch_task` sets ``status=running`` and a lease (worker id, deadline, the status
  it came from) in the same atomic ``find_one_and_update``. :meth:`TaskManager.safe_fetch_task` (and so
  :func:`run_task`) renews the deadline from a heartbeat thread every ``lease_seconds / 3``. Every fetch (and
  ``task_stat`` / ``wait``) first returns running tasks whose lease has expired to the status they came from, so a
  killed worker never strands work (qlib leaves it ``running`` forever). Commit / return only touch a task while
  the caller still holds its lease: a worker that lost its lease cannot overwrite the new owner's result.
  Deadlines come from the workers' clocks (keep them NTP-synchronised); ``lease_seconds=0`` disables leases.
* **Safe decoding.** ``def*`` / ``res*`` fields are unpickled with the allow-list unpickler of
  :mod:`qlib_prefect.task.unpickler` (the exact classes a task needs, nothing touching files or processes).
  A task that cannot be decoded (a *poison* task) is marked ``failed`` with the reason in ``error`` and the
  fetch goes on to the next task (qlib would hand it back and fetch it again forever).

Modules: :mod:`~qlib_prefect.task.unpickler` (allow-list), :mod:`~qlib_prefect.task.connection` (settings,
client cache), :mod:`~qlib_prefect.task.lease` (heartbeat thread), this one (:class:`TaskManager`, :func:`run_task`).

Connection: see :mod:`qlib_prefect.task.connection`.

Example:
    >>> tm = TaskManager("rolling_pool")  # doctest: +SKIP
    >>> ids = tm.create_task(tasks)  # doctest: +SKIP
    >>> run_task(task_train, "rolling_pool", experiment_name="rolling")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import hashlib
import logging
import os
import pickle
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from qlib_prefect.config.runtime import C
from qlib_prefect.errors import ConfigError
from qlib_prefect.task.connection import (
    DEFAULT_LEASE_SECONDS,
    TaskPoolError,
    get_mongodb,
    mongo_config,
    unreachable,
    wrap_errors,
)
from qlib_prefect.task.lease import Heartbeat
from qlib_prefect.task.unpickler import UnsafePickleError, add_safe_class, safe_loads

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "TaskManager",
    "TaskPoolError",
    "UnsafePickleError",
    "add_safe_class",
    "get_mongodb",
    "mongo_config",
    "run_task",
    "safe_loads",
]

logger = logging.getLogger(__name__)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _oid(value: Any, where: str) -> Any:
    from bson.objectid import ObjectId

    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(value)
    except Exception as e:  # InvalidId / TypeError
        raise ConfigError(f"{where}: {value!r} is not a task _id (24 hex digits)") from e


def _short(obj: Any, limit: int = 300) -> str:
    s = repr(obj)
    return s if len(s) <= limit else s[:limit] + "..."


def _reachable(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn pymongo's server-selection timeout into a :class:`TaskPoolError` naming the pool and the URL."""

    @functools.wraps(method)
    def wrapper(self: TaskManager, *args: Any, **kwargs: Any) -> Any:
        import pymongo.errors

        try:
            return method(self, *args, **kwargs)
        except pymongo.errors.ServerSelectionTimeoutError as e:
            raise unreachable(f"task pool {self.pool_name!r} {method.__name__}", e) from None

    return wrapper


class TaskManager:
    """One task pool (a MongoDB collection) with qlib's API, plus worker leases.

    Args:
        task_pool: collection name.
        lease_seconds: lease length of fetched tasks (``None``: ``C["mongo"]["lease_seconds"]``, default 60;
            ``0`` disables leases: a fetched task stays running until committed or returned, as in qlib).
        worker_id: name written into the leases (default ``host:pid:random``).
    """

    STATUS_WAITING = "waiting"
    STATUS_RUNNING = "running"
    STATUS_DONE = "done"
    STATUS_PART_DONE = "part_done"
    STATUS_FAILED = "failed"  # ours: a task that cannot be decoded (never fetched again; ``error`` says why)

    ENCODE_FIELDS_PREFIX = ["def", "res"]

    def __init__(self, task_pool: str, *, lease_seconds: float | None = None, worker_id: str | None = None) -> None:
        if not isinstance(task_pool, str) or not task_pool:
            raise ConfigError(f"TaskManager: task_pool must be a non-empty collection name, got {task_pool!r}")
        self.pool_name = task_pool
        self.lease_seconds = float(mongo_config()["lease_seconds"] if lease_seconds is None else lease_seconds)
        if self.lease_seconds < 0:
            raise ConfigError(f"TaskManager({task_pool!r}): lease_seconds must be >= 0, got {lease_seconds}")
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._collection: Any = None
        self._indexed = False

    @property
    def task_pool(self) -> Any:
        """The ``pymongo`` collection (connected lazily)."""
        if self._collection is None:
            self._collection = get_mongodb()[self.pool_name]
        return self._collection

    @staticmethod
    def list() -> list:
        """Names of every task pool (collection) of the database."""
        return wrap_errors(lambda: get_mongodb().list_collection_names(), "list")

    def __str__(self) -> str:
        return f"TaskManager({self.pool_name})"

    __repr__ = __str__

    # ---- encoding ----------------------------------------------------------------------------------------------
    def _dumps(self, obj: Any) -> Any:
        from bson.binary import Binary

        return Binary(pickle.dumps(obj, protocol=C.get("dump_protocol_version", 4)))

    def _encode_task(self, task: dict) -> dict:
        for k in list(task):
            if any(k.startswith(p) for p in self.ENCODE_FIELDS_PREFIX):
                task[k] = self._dumps(task[k])
        return task

    def _decode_task(self, task: dict) -> dict:
        for k in list(task):
            if any(k.startswith(p) for p in self.ENCODE_FIELDS_PREFIX) and isinstance(task[k], (bytes, bytearray)):
                task[k] = safe_loads(task[k], where=f"task pool {self.pool_name!r}, task {task.get('_id')}, {k!r}")
        return task

    @staticmethod
    def _dict_to_str(flt: dict) -> dict:
        return {k: str(v) for k, v in flt.items()}

    def _decode_query(self, query: dict | None) -> dict:
        """A copy of ``query`` with ``_id`` strings (also under ``$in``/``$nin``/``$eq``/``$ne``) as ObjectIds."""
        query = copy.deepcopy(dict(query or {}))
        if "_id" in query:
            where = f"task pool {self.pool_name!r} query _id"
            v = query["_id"]
            if isinstance(v, dict):
                query["_id"] = {op: ([_oid(i, where) for i in x] if isinstance(x, (list, tuple)) else _oid(x, where))
                                for op, x in v.items()}
            else:
                query["_id"] = _oid(v, where)
        return query

    # ---- creation ----------------------------------------------------------------------------------------------
    def _with_key(self, task: dict) -> dict:
        """Stringify a non-BSON filter (qlib) and add ``filter_key``, the hash of the filter's BSON bytes."""
        import bson
        from bson.errors import InvalidDocument

        if "filter" in task:
            try:
                encoded = bson.encode({"f": task["filter"]})
            except InvalidDocument:
                task["filter"] = self._dict_to_str(task["filter"])
                encoded = bson.encode({"f": task["filter"]})
            task["filter_key"] = hashlib.sha256(encoded).hexdigest()
        return task

    def _ensure_index(self) -> None:
        """A unique index on ``filter_key`` (documents written by qlib have none): concurrent ``create_task`` calls
        cannot insert the same task twice."""
        if not self._indexed:
            self.task_pool.create_index("filter_key", unique=True,
                                        partialFilterExpression={"filter_key": {"$exists": True}})
            self._indexed = True

    @_reachable
    def insert_task(self, task: dict) -> Any:
        """Insert an encoded task document (the filter is stringified if it is not BSON-encodable)."""
        return self.task_pool.insert_one(self._with_key(task))

    @_reachable
    def insert_task_def(self, task_def: dict) -> Any:
        """Insert ``task_def`` as a new waiting task."""
        task = self._encode_task({"def": task_def, "filter": task_def, "status": self.STATUS_WAITING})
        return self.insert_task(task)

    @_reachable
    def replace_task(self, task: dict, new_task: dict) -> None:
        """Replace the document of ``task`` by ``new_task`` (encoded)."""
        new_task = self._with_key(self._encode_task(dict(new_task)))
        self.task_pool.replace_one({"_id": _oid(task["_id"], "replace_task")}, new_task)

    def _find_by_filter(self, t: dict) -> Any:
        from bson.errors import InvalidDocument

        try:
            return self.task_pool.find_one({"filter": t}, {"_id": 1})
        except InvalidDocument:
            return self.task_pool.find_one({"filter": self._dict_to_str(t)}, {"_id": 1})

    @_reachable
    def create_task(self, task_def_l: list, dry_run: bool = False, print_nt: bool = False) -> list:
        """Insert the tasks not yet in the pool; return every task's ``_id`` in order (``[]`` if ``dry_run``).

        A task is already there when a document's ``filter`` equals the task as BSON (qlib's dedupe: key order and
        types matter; tasks with non-BSON values are compared on their stringified top level). Unlike qlib, two
        processes creating the same task at the same time get one document (unique ``filter_key`` index).
        """
        from pymongo.errors import DuplicateKeyError

        if not dry_run:
            self._ensure_index()
        new_tasks, ids = [], []
        for t in task_def_l:
            r = self._find_by_filter(t)
            if r is None and not dry_run:
                try:
                    ids.append(self.insert_task_def(t).inserted_id)
                    new_tasks.append(t)
                    continue
                except DuplicateKeyError:  # inserted by another process since the lookup
                    r = self._find_by_filter(t)
            if r is None:
                new_tasks.append(t)
                ids.append(None)
            else:
                ids.append(r["_id"])
        logger.info("task pool %s: Total Tasks: %d, New Tasks: %d", self.pool_name, len(task_def_l), len(new_tasks))
        if print_nt:
            for t in new_tasks:
                print(t)
        return [] if dry_run else ids

    # ---- leases ------------------------------------------------------------------------------------------------
    def _expired_query(self) -> dict:
        return {"status": self.STATUS_RUNNING, "lease.deadline": {"$lt": _now()}}

    @_reachable
    def reclaim_expired(self) -> int:
        """Return running tasks whose lease expired to the status they were fetched from; the number returned."""
        n = 0
        for doc in self.task_pool.find(self._expired_query(), {"lease": 1}):
            lease = doc.get("lease") or {}
            r = self.task_pool.update_one(
                {"_id": doc["_id"], "status": self.STATUS_RUNNING, "lease.token": lease.get("token"),
                 "lease.deadline": {"$lt": _now()}},
                {"$set": {"status": lease.get("from") or self.STATUS_WAITING}, "$unset": {"lease": ""}},
            )
            if r.modified_count:
                n += 1
                logger.warning("task pool %s: task %s reclaimed (lease of %s expired at %s)", self.pool_name,
                               doc["_id"], lease.get("worker"), lease.get("deadline"))
        return n

    def renew_lease(self, task: dict) -> bool:
        """Push the lease deadline of a task fetched by this manager; ``False`` if the lease was lost."""
        lease = task.get("lease")
        if not lease:
            return True
        deadline = _now() + _dt.timedelta(seconds=self.lease_seconds)
        r = self.task_pool.update_one(
            {"_id": task["_id"], "status": self.STATUS_RUNNING, "lease.token": lease["token"]},
            {"$set": {"lease.deadline": deadline}},
        )
        if r.matched_count:
            lease["deadline"] = deadline
        return bool(r.matched_count)

    def _owned(self, task: dict) -> dict:
        """The filter selecting ``task`` only while we hold its lease (if it has one)."""
        flt: dict = {"_id": _oid(task["_id"], f"task pool {self.pool_name!r}")}
        lease = task.get("lease")
        if isinstance(lease, dict) and lease.get("token"):
            flt["lease.token"] = lease["token"]
        return flt

    # ---- fetching ----------------------------------------------------------------------------------------------
    @_reachable
    def fetch_task(self, query: dict | None = None, status: str = STATUS_WAITING) -> dict | None:
        """Atomically claim the highest-priority task in ``status`` matching ``query`` (``None`` if there is none).

        The claimed task is ``running`` with a lease of ``lease_seconds``; keep it alive with
        :meth:`renew_lease` (``safe_fetch_task`` and ``run_task`` do it for you).
        """
        import pymongo

        self.reclaim_expired()
        query = self._decode_query(query)
        query["status"] = status
        update: dict = {"$set": {"status": self.STATUS_RUNNING}}
        if self.lease_seconds > 0:
            update["$set"]["lease"] = {
                "worker": self.worker_id, "token": uuid.uuid4().hex, "from": status,
                "deadline": _now() + _dt.timedelta(seconds=self.lease_seconds),
            }
        while True:
            # descending: documents without a priority come after those with one
            task = self.task_pool.find_one_and_update(query, update, sort=[("priority", pymongo.DESCENDING)],
                                                      return_document=pymongo.ReturnDocument.AFTER)
            if task is None:
                return None
            try:
                return self._decode_task(task)
            except Exception as e:  # a poison task: mark it failed and go on with the next one
                self._mark_failed(task, e)

    def _mark_failed(self, task: dict, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"
        logger.error("task pool %s: task %s cannot be decoded, marked %s: %s", self.pool_name, task["_id"],
                     self.STATUS_FAILED, reason)
        self.task_pool.update_one(self._owned(task), {"$set": {"status": self.STATUS_FAILED, "error": reason},
                                                      "$unset": {"lease": ""}})

    @contextmanager
    def safe_fetch_task(self, query: dict | None = None, status: str = STATUS_WAITING) -> Iterator[dict | None]:
        """Fetch a task and hold its lease (heartbeat) inside the block; on an error (or Ctrl-C) inside the block
        the task goes back to ``status`` and the error is re-raised."""
        task = self.fetch_task(query=query, status=status)
        beat = Heartbeat(self, task) if task is not None and task.get("lease") else None
        try:
            yield task
        except (Exception, KeyboardInterrupt):
            if beat is not None:
                beat.stop()
            if task is not None:
                logger.info("Returning task %s before raising error", task["_id"])
                self.return_task(task, status=status)
            raise
        finally:
            if beat is not None:
                beat.stop()

    def task_fetcher_iter(self, query: dict | None = None) -> Iterator[dict]:
        """Yield waiting tasks (each claimed while the consumer works on it) until none is left."""
        while True:
            with self.safe_fetch_task(query=query) as task:
                if task is None:
                    break
                yield task

    # ---- queries -----------------------------------------------------------------------------------------------
    def query(self, query: dict | None = None, decode: bool = True) -> Iterator[dict]:
        """Documents matching ``query`` (``_id`` strings accepted); ``decode=False`` leaves ``def``/``res`` pickled."""
        for t in self.task_pool.find(self._decode_query(query)):
            yield self._decode_task(t) if decode else t

    @_reachable
    def re_query(self, _id: Any) -> dict:
        """The decoded document with this ``_id``."""
        t = self.task_pool.find_one({"_id": _oid(_id, f"task pool {self.pool_name!r} re_query")})
        if t is None:
            raise TaskPoolError(f"task pool {self.pool_name!r}: no task with _id {_id}")
        return self._decode_task(t)

    @_reachable
    def task_stat(self, query: dict | None = None) -> dict:
        """``{status: count}`` of the matching tasks (expired leases are reclaimed first)."""
        self.reclaim_expired()
        stat: dict[str, int] = {}
        for t in self.task_pool.find(self._decode_query(query), {"status": 1}):
            stat[t["status"]] = stat.get(t["status"], 0) + 1
        return stat

    # ---- updates -----------------------------------------------------------------------------------------------
    @_reachable
    def commit_task_res(self, task: dict, res: Any, status: str = STATUS_DONE) -> bool:
        """Store ``res`` and set ``status`` (default done); ``False`` (nothing written) if the lease was lost."""
        status = self.STATUS_DONE if status is None else status
        r = self.task_pool.update_one(
            self._owned(task), {"$set": {"status": status, "res": self._dumps(res)}, "$unset": {"lease": ""}}
        )
        if not r.matched_count:
            logger.warning("task pool %s: result of task %s discarded: its lease was lost to another worker",
                           self.pool_name, task["_id"])
        return bool(r.matched_count)

    @_reachable
    def return_task(self, task: dict, status: str = STATUS_WAITING) -> bool:
        """Set the task back to ``status`` (default waiting) and drop its lease; ``False`` if the lease was lost."""
        status = self.STATUS_WAITING if status is None else status
        r = self.task_pool.update_one(self._owned(task), {"$set": {"status": status}, "$unset": {"lease": ""}})
        return bool(r.matched_count)

    @_reachable
    def remove(self, query: dict | None = None) -> int:
        """Delete the matching tasks (an empty query empties the pool); the number deleted."""
        return self.task_pool.delete_many(self._decode_query(query)).deleted_count

    @_reachable
    def reset_status(self, query: dict | None, status: str) -> int:
        """Set ``status`` on every matching task (leases dropped); the number changed."""
        r = self.task_pool.update_many(self._decode_query(query), {"$set": {"status": status}, "$unset": {"lease": ""}})
        logger.info("task pool %s: %d task(s) set to %s", self.pool_name, r.modified_count, status)
        return r.modified_count

    def reset_waiting(self, query: dict | None = None) -> int:
        """Set running tasks (or those matching ``query``) back to waiting (qlib's manual recovery)."""
        query = dict(query or {})
        query.setdefault("status", self.STATUS_RUNNING)
        return self.reset_status(query=query, status=self.STATUS_WAITING)

    @_reachable
    def prioritize(self, task: dict, priority: int) -> None:
        """Set the task's priority (higher is fetched first)."""
        self.task_pool.update_one({"_id": _oid(task["_id"], "prioritize")}, {"$set": {"priority": int(priority)}})

    # ---- waiting -----------------------------------------------------------------------------------------------
    def _get_undone_n(self, task_stat: dict) -> int:
        return sum(task_stat.get(s, 0) for s in (self.STATUS_WAITING, self.STATUS_RUNNING, self.STATUS_PART_DONE))

    def _get_total(self, task_stat: dict) -> int:
        return sum(task_stat.values())

    def wait(self, query: dict | None = None, *, poll_interval: float = 10.0, timeout: float | None = None) -> None:
        """Block until no matching task is waiting, running or part_done, showing progress on stderr.

        Args:
            query: which tasks to wait for.
            poll_interval: seconds between checks (qlib: 10).
            timeout: give up after this many seconds with :class:`TimeoutError` (``None``: wait forever, as qlib).
        """
        stat = self.task_stat(query)
        total, undone = self._get_total(stat), self._get_undone_n(stat)
        if undone == 0:
            return
        logger.warning("Waiting for %d undone tasks of pool %s. Please make sure they are running.", undone,
                       self.pool_name)
        start = time.monotonic()
        self._progress(total - undone, total)
        while undone:
            if timeout is not None and time.monotonic() - start >= timeout:
                raise TimeoutError(f"task pool {self.pool_name!r}: {undone} task(s) still undone after {timeout} s")
            time.sleep(poll_interval)
            stat = self.task_stat(query)
            total, undone = self._get_total(stat), self._get_undone_n(stat)
            self._progress(total - undone, total)
        print(file=sys.stderr)

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        print(f"\r{self.pool_name}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total} done", end="",
              file=sys.stderr, flush=True)


def run_task(
    task_func: Callable[..., Any],
    task_pool: str | TaskManager,
    query: dict | None = None,
    force_release: bool = False,
    before_status: str = TaskManager.STATUS_WAITING,
    after_status: str = TaskManager.STATUS_DONE,
    **kwargs: Any,
) -> bool:
    """Fetch and run tasks of ``task_pool`` (a name or a :class:`TaskManager`) until none is left in
    ``before_status``; whether any task ran.

    ``task_func(param, **kwargs)`` gets ``task["def"]`` for waiting tasks and ``task["res"]`` for part_done tasks;
    its return value is committed with ``after_status``. The task's lease is renewed while it runs; with
    ``force_release`` it runs in a fresh subprocess (memory is released; needs picklable ``task_func``).
    """
    if before_status == TaskManager.STATUS_WAITING:
        field = "def"
    elif before_status == TaskManager.STATUS_PART_DONE:
        field = "res"
    else:
        raise ValueError("The fetched task must be `STATUS_WAITING` or `STATUS_PART_DONE`!")
    tm = task_pool if isinstance(task_pool, TaskManager) else TaskManager(task_pool)
    func = task_func
    if force_release:
        from qlib_prefect.task.isolation import call_in_subproc

        func = call_in_subproc(task_func, dict(C))
    ever_run = False
    while True:
        with tm.safe_fetch_task(query=query, status=before_status) as task:
            if task is None:
                break
            logger.info("task pool %s: running task %s: %s", tm.pool_name, task["_id"], _short(task.get("def")))
            res = func(task[field], **kwargs)
            tm.commit_task_res(task, res, status=after_status)
            ever_run = True
    return ever_run
