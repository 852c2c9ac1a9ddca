"""Test-session setup: isolate HOME/PREFECT_HOME/TMPDIR and silence telemetry *before* prefect/mlflow import."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="qlib-prefect-tests-"))
for _k, _v in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_HOME": str(_ROOT / "prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_ACTIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_LOGGER_ENABLED": "false",
    "QLIB_PREFECT_HOME": str(_ROOT / "qlib_prefect_home"),
}.items():
    os.environ[_k] = _v
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    """A per-session scratch folder (same root as PREFECT_HOME etc.)."""
    return _ROOT


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite DB (schema creation takes seconds; tests copy this file)."""
    from mlflow.tracking import MlflowClient

    from qlib_prefect.workflow._store import file_lock

    # shared by pytest-xdist workers (their base temps have a common parent): migrate once per test session
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "qlib_prefect_template_db"
    db = shared / "mlflow.db"
    with file_lock(shared / "create.lock"):
        if not db.exists():
            tmp = shared / "building" / "mlflow.db"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()
            os.replace(tmp, db)
    return db
