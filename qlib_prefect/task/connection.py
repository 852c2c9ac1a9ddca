"""The task pool's MongoDB connection: effective settings, one cached client per (URL, timeout, process).

``C["mongo"] = {"task_url", "task_db_name"}`` (``qlib_prefect.init(mongo={...})``), else the
``QLIB_PREFECT_MONGO_URL`` / ``QLIB_PREFECT_MONGO_DB`` settings, else ``mongodb://localhost:27017/`` and
``default_task_db`` (qlib's defaults). Optional keys: ``lease_seconds`` (default 60) and
``server_selection_timeout_ms`` (default 10000). Server-selection timeouts become :class:`TaskPoolError`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from qlib_prefect.config.runtime import C
from qlib_prefect.errors import QlibPrefectError
from qlib_prefect.utils.redaction import redact_uri

__all__ = ["DEFAULT_LEASE_SECONDS", "TaskPoolError", "get_mongodb", "mongo_config", "unreachable", "wrap_errors"]

DEFAULT_LEASE_SECONDS = 60.0
_DEFAULT_URL = "mongodb://localhost:27017/"
_DEFAULT_DB = "default_task_db"


class TaskPoolError(QlibPrefectError, RuntimeError):
    """The task pool cannot be reached or a task is not where it should be (names the pool / id / URL)."""


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def mongo_config() -> dict[str, Any]:
    """The effective MongoDB settings: ``C["mongo"]`` values, the environment where C keeps qlib's defaults."""
    from qlib_prefect.config.settings import get_settings

    cfg = dict(C.get("mongo") or {})
    env = get_settings()
    url = cfg.get("task_url")
    db = cfg.get("task_db_name")
    out = dict(cfg)
    out["task_url"] = env.mongo_url if url in (None, "", _DEFAULT_URL) else url
    out["task_db_name"] = env.mongo_db if db in (None, "", _DEFAULT_DB) else db
    out["lease_seconds"] = float(cfg.get("lease_seconds", DEFAULT_LEASE_SECONDS) or 0.0)
    out["server_selection_timeout_ms"] = int(cfg.get("server_selection_timeout_ms", 10000))
    return out


def _client(url: str, timeout_ms: int) -> Any:
    import pymongo

    key = (url, timeout_ms, os.getpid())  # a MongoClient must not cross a fork
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, connect=False)
            _clients[key] = client
        return client


def get_mongodb() -> Any:
    """The task database (``pymongo.database.Database``) of :func:`mongo_config` (clients are cached)."""
    cfg = mongo_config()
    return _client(cfg["task_url"], cfg["server_selection_timeout_ms"])[cfg["task_db_name"]]


def unreachable(what: str, e: Exception) -> TaskPoolError:
    cfg = mongo_config()
    url, err = redact_uri(cfg["task_url"]), redact_uri(str(e))  # no password in error messages
    return TaskPoolError(f"{what}: cannot reach MongoDB at {url} (database {cfg['task_db_name']!r}): {err}")


def wrap_errors(fn: Callable[[], Any], what: str) -> Any:
    """Call ``fn``; a server-selection timeout becomes a :class:`TaskPoolError` naming ``what`` and the URL."""
    import pymongo.errors

    try:
        return fn()
    except pymongo.errors.ServerSelectionTimeoutError as e:
        raise unreachable(what, e) from None
