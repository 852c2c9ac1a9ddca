"""Tracking-store plumbing: default URI, URI validation, cached ``MlflowClient`` per URI, SQLite locking/retry.

* Default store (no configuration): ``sqlite:///<abs cwd>/mlruns/mlflow.db`` with artifacts in
  ``<abs cwd>/mlruns/artifacts``; ``QLIB_PREFECT_MLFLOW_URI`` overrides the URI.
* ``file:`` URIs (MLflow's FileStore, refused by MLflow >= 3.13) raise a :class:`ConfigError` that says what to use.
* First-time schema creation of a SQLite store happens under an OS file lock next to the DB, so several processes
  can start at the same moment; "database is locked" errors are retried with backoff (:func:`retry_locked`).

Example:
    >>> resolve_uri("sqlite:////tmp/x/mlflow.db")  # doctest: +SKIP
    'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from qlib_prefect.config.settings import get_settings
from qlib_prefect.errors import ConfigError
from qlib_prefect.utils.filelock import file_lock

__all__ = [
    "artifact_root_for",
    "default_uri",
    "file_lock",
    "get_client",
    "is_locked_error",
    "resolve_uri",
    "retry_locked",
    "sqlite_path",
]

T = TypeVar("T")

_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def default_uri() -> str:
    """``$QLIB_PREFECT_MLFLOW_URI`` or ``sqlite:///<abs cwd>/mlruns/mlflow.db``."""
    env = get_settings().mlflow_uri
    if env:
        return env
    return f"sqlite:///{Path.cwd().resolve() / 'mlruns' / 'mlflow.db'}"


def _scheme(uri: str) -> str:
    return urlparse(uri).scheme.split("+", 1)[0].lower()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for in-memory or other schemes)."""
    if _scheme(uri) != "sqlite":
        return None
    rest = uri.split(":///", 1)[1] if ":///" in uri else ""
    rest = rest.split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def resolve_uri(uri: str | os.PathLike | None, *, create: bool = True) -> str:
    """Validate a tracking URI (``None`` -> :func:`default_uri`); creates the parent folder of a SQLite DB
    unless ``create=False``."""
    uri = default_uri() if uri is None or str(uri) == "" else str(uri)
    scheme = _scheme(uri)
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        if get_settings().mlflow_allow_file_store:
            return uri
        path = urlparse(uri).path if scheme == "file" else uri
        folder = Path(path or "mlruns").expanduser().resolve()
        raise ConfigError(
            f"exp_manager.kwargs.uri={uri!r}: MLflow's file store is refused by MLflow >= 3.13. "
            f"Use a SQLite store instead, e.g. uri='sqlite:///{folder / 'mlflow.db'}' "
            f"(artifacts go to '{folder / 'artifacts'}'), or an http(s):// tracking server "
            "(or set MLFLOW_ALLOW_FILE_STORE=true to force the deprecated file store)."
        )
    if scheme in _SQL_SCHEMES or scheme in ("http", "https", "databricks"):
        db = sqlite_path(uri)
        if db is not None and create:
            db.parent.mkdir(parents=True, exist_ok=True)
        return uri
    return uri  # plugin schemes: let MLflow decide


def artifact_root_for(uri: str, artifact_location: str | os.PathLike | None = None) -> str | None:
    """Where new experiments put their artifacts.

    Explicit ``artifact_location`` wins. SQLite: ``<db folder>/artifacts``. Other databases:
    ``<abs cwd>/mlruns/artifacts``. Tracking servers: ``None`` (the server decides).
    """
    if artifact_location:
        loc = str(artifact_location)
        if "://" in loc or loc.startswith(("mlflow-artifacts:", "file:")):
            return loc
        return Path(loc).expanduser().resolve().as_uri()
    db = sqlite_path(uri)
    if db is not None:
        return (db.resolve().parent / "artifacts").as_uri()
    if _scheme(uri) in _SQL_SCHEMES:
        return (Path.cwd().resolve() / "mlruns" / "artifacts").as_uri()
    return None


def is_locked_error(exc: BaseException) -> bool:
    """True for SQLite's transient 'database is locked' / 'database table is locked' errors."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def retry_locked(fn: Callable[[], T], *, attempts: int = 12, first_delay: float = 0.05) -> T:
    """Call ``fn``; on a SQLite lock error retry with jittered exponential backoff (about 30 s in total)."""
    delay = first_delay
    for i in range(attempts):
        try:
            return fn()
        except Exception as e:
            if i == attempts - 1 or not is_locked_error(e):
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")  # pragma: no cover


def get_client(uri: str) -> Any:
    """A process-wide ``MlflowClient`` for ``uri``; the store (and SQLite schema) is created once, under a lock."""
    client = _clients.get(uri)
    if client is not None:
        return client
    from mlflow.tracking import MlflowClient

    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(db.with_name(db.name + ".lock")):
            client = retry_locked(lambda: _build_client(MlflowClient, uri))
    else:
        client = _build_client(MlflowClient, uri)
    with _clients_lock:
        return _clients.setdefault(uri, client)


def _build_client(cls: Any, uri: str) -> Any:
    from qlib_prefect.tweaks.mlflow_store import open_store, tune_sqlite

    client = cls(tracking_uri=uri)
    open_store(client)  # build the store now (creates/migrates the schema)
    if sqlite_path(uri) is not None:
        tune_sqlite(client)
    return client
