"""MLflow tweak: reach the tracking store behind ``MlflowClient`` (``client._tracking_client.store``).

``MlflowClient`` has no public accessor for its store. We use it for three things, each with a public fallback:

* :func:`open_store`: build the store (create/migrate the SQLite schema) at once, under our file lock; fallback:
  a public ``search_experiments`` call, which builds it too.
* :func:`tune_sqlite`: WAL journal, ``synchronous=NORMAL`` and a 30 s busy timeout on the store's SQLAlchemy
  ``engine`` (concurrent runs stop failing with "database is locked"); fallback: MLflow's defaults (more lock
  retries).
* :func:`sql_store`: the ``SqlAlchemyStore`` for lean run listings (``workflow.exp.lean_list``: no params/metrics/
  tags loaded); fallback ``None``: callers use ``search_runs``.

Switch: ``QLIB_PREFECT_MLFLOW_STORE_TWEAKS=0`` takes the public path everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from qlib_prefect.config.settings import get_settings

__all__ = ["PRIVATE_ATTRS", "enabled", "open_store", "sql_store", "tracking_store", "tune_sqlite"]

logger = logging.getLogger(__name__)

#: the private attribute path used (``tests/tweaks`` asserts it on the installed MLflow)
PRIVATE_ATTRS = ("_tracking_client", "store")

_WARNED: set[str] = set()


def _once(key: str, msg: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.debug(msg, *args)


def enabled() -> bool:
    return get_settings().mlflow_store_tweaks


def tracking_store(client: Any) -> Any | None:
    """The client's store object, or ``None`` (switch off, or MLflow moved it: logged once at debug)."""
    if not enabled():
        return None
    tracking = getattr(client, PRIVATE_ATTRS[0], None)
    if tracking is None:
        _once("store", "MlflowClient has no %s: using the public client API only", PRIVATE_ATTRS[0])
        return None
    try:
        return getattr(tracking, PRIVATE_ATTRS[1])
    except AttributeError as e:
        _once("store", "MlflowClient store unavailable (%s): using the public client API only", e)
        return None


def open_store(client: Any) -> None:
    """Create/migrate the store now (the caller holds the schema lock)."""
    if tracking_store(client) is None:
        client.search_experiments(max_results=1)  # public: builds the store as well


def sql_store(client: Any) -> Any | None:
    """MLflow's ``SqlAlchemyStore`` of the client (``None`` for other stores, switch off or API drift)."""
    store = tracking_store(client)
    if store is None:
        return None
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError as e:  # pragma: no cover - MLflow moved it
        _once("sqla", "mlflow SqlAlchemyStore not importable (%s)", e)
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


def tune_sqlite(client: Any) -> bool:
    """WAL journal (readers do not block the writer; persists in the DB file) + ``synchronous=NORMAL`` (safe
    against a crashed process; the last commits may be lost on power failure) + a 30 s busy timeout on the
    store's engine. Returns whether it was applied."""
    store = sql_store(client)
    engine = getattr(store, "engine", None)
    if engine is None:
        if store is not None:
            _once("engine", "MLflow's SqlAlchemyStore has no engine: SQLite pragmas not set")
        return False
    try:
        import sqlalchemy as sa

        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        sa.event.listen(engine, "connect", _on_connect)
        engine.dispose()  # pooled connections made during migration do not have the pragmas
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    except Exception as e:  # pragma: no cover - tuning is optional
        _once("pragma", "SQLite pragmas not applied: %s", e)
        return False
    return True
