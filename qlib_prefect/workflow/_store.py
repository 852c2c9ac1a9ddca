"""Tracking-store plumbing: default URI, URI validation, cached ``MlflowClient`` per URI, SQLite locking/retry.

* Default store (no configuration): ``sqlite:///<abs cwd>/mlruns/mlflow.db`` with artifacts in
  ``<abs cwd>/mlruns/artifacts``; ``QLIB_PREFECT_MLFLOW_URI`` overrides the URI.
* ``file:`` URIs (MLflow's FileStore, refused by MLflow >= 3.13) raise a :class:`ConfigError` that says what to use.
* First-time schema creation of a SQLite store happens under an OS file lock next to the DB, so several processes
  can start at the same moment; "database is locked" errors are retried with backoff (:func:`retry_locked`).
* Creation is atomic: the schema is built in ``<db>.tmp-<pid>`` and renamed into place, so a Ctrl-C or kill during
  MLflow's migrations never leaves a half-migrated store. A store that a crash of an older version left half-created
  (some of MLflow's tables missing, no run and no experiment but ``Default``) is moved aside to
  ``<db>.incomplete-<time>`` and created again; a store with data is never touched.

Example:
    >>> resolve_uri("sqlite:////tmp/x/mlflow.db")  # doctest: +SKIP
    'sqlite:////tmp/x/mlflow.db'
"""

from __future__ import annotations

import contextlib
import logging
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
    "ensure_sqlite_store",
    "file_lock",
    "get_client",
    "is_locked_error",
    "resolve_uri",
    "retry_locked",
    "sqlite_path",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

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
            ensure_sqlite_store(db, uri)
            client = retry_locked(lambda: _build_client(MlflowClient, uri))
    else:
        client = _build_client(MlflowClient, uri)
    with _clients_lock:
        return _clients.setdefault(uri, client)


def ensure_sqlite_store(db: Path, uri: str) -> None:
    """Create the SQLite store ``db`` atomically if it does not exist (call under the store's file lock).

    MLflow's schema creation runs ~40 non-transactional migrations; here they run on ``<db>.tmp-<pid>``, which is
    renamed to ``db`` only when complete. Temp files of killed creators (we hold the lock) are removed first.
    """
    for stale in db.parent.glob(db.name + ".tmp-*"):
        with contextlib.suppress(OSError):
            stale.unlink()
    if db.exists() and db.stat().st_size > 0 and not _move_aside_if_incomplete(db):
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = db.with_name(f"{db.name}.tmp-{os.getpid()}")
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", artifact_root_for(uri))
        store.engine.dispose()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, db)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _move_aside_if_incomplete(db: Path) -> bool:
    """True (and ``db`` renamed to ``<db>.incomplete-<time>``) if ``db`` lacks some of MLflow's tables and holds
    no run and no experiment but ``Default``: an interrupted creation, which MLflow would re-migrate and fail on
    (``index ... already exists``). A store with data is left for MLflow to report."""
    import sqlite3

    from mlflow.store.tracking.dbmodels.models import Base

    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if set(Base.metadata.tables) <= tables:
                return False
            runs = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
            exps = (
                con.execute("SELECT COUNT(*) FROM experiments WHERE experiment_id != 0").fetchone()[0]
                if "experiments" in tables
                else 0
            )
        finally:
            con.close()
    except sqlite3.Error:
        return False
    if runs or exps:
        return False
    aside = db.with_name(f"{db.name}.incomplete-{time.strftime('%Y%m%dT%H%M%S')}")
    log.warning("MLflow store %s is incomplete (an interrupted creation); moved to %s and created again", db, aside)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.replace(str(db) + suffix, str(aside) + suffix)
    os.replace(db, aside)
    return True


def _build_client(cls: Any, uri: str) -> Any:
    from qlib_prefect.tweaks.mlflow_store import open_store, tune_sqlite

    client = cls(tracking_uri=uri)
    open_store(client)  # build the store now (creates/migrates the schema)
    if sqlite_path(uri) is not None:
        tune_sqlite(client)
    return client
