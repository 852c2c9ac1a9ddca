"""Prefect settings for lean local runs (see docs: heartbeats off, server services off for the ephemeral API)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["EPHEMERAL_ENV_DEFAULTS", "apply_env_defaults", "lean_prefect_settings"]

#: environment defaults for the ephemeral API server (it is started lazily, inheriting the environment);
#: these services write events to SQLite and race the API (SQLITE_BUSY -> 503 -> client retries).
EPHEMERAL_ENV_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_ACTIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_LOGGER_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def apply_env_defaults() -> None:
    """Set :data:`EPHEMERAL_ENV_DEFAULTS` (only where unset, and only without a ``PREFECT_API_URL``)."""
    for k, v in EPHEMERAL_ENV_DEFAULTS.items():
        if k.startswith("PREFECT_SERVER") and os.environ.get("PREFECT_API_URL"):
            continue
        os.environ.setdefault(k, v)


@contextlib.contextmanager
def lean_prefect_settings() -> Iterator[None]:
    """Flow heartbeats off for the duration (only settable in Python: ``None`` does not parse from env)."""
    try:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    except ImportError:  # pragma: no cover - older prefect without heartbeats
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
