"""Prefect settings for lean local runs (see docs: heartbeats off, noisy server services off for the ephemeral API).

The temporary API server the CLI starts early is a platform tweak: :mod:`qlib_prefect.tweaks.prefect_server`.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

from qlib_prefect.config.settings import get_settings
from qlib_prefect.errors import ConfigError
from qlib_prefect.tweaks.prefect_server import wait_api_server

__all__ = ["EPHEMERAL_ENV_DEFAULTS", "abort_after_interrupt", "apply_env_defaults", "lean_prefect_settings"]

#: environment defaults for the ephemeral API server (it is started lazily, inheriting the environment);
#: these services write events to SQLite and race the API (SQLITE_BUSY -> 503 -> client retries). The task-run
#: recorder stays on: Prefect records task runs from their events, so without it the UI shows no stages.
EPHEMERAL_ENV_DEFAULTS: dict[str, str] = {
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
    remote = bool(get_settings().prefect_api_url)
    for k, v in EPHEMERAL_ENV_DEFAULTS.items():
        if k.startswith("PREFECT_SERVER") and remote:
            continue
        os.environ.setdefault(k, v)


#: the message of Prefect's ``SubprocessASGIServer`` when its temporary server does not answer in time
SERVER_TIMEOUT_TEXT = "Timed out while attempting to connect to ephemeral Prefect API server"


@contextlib.contextmanager
def lean_prefect_settings() -> Iterator[None]:
    """Flow heartbeats off for the duration (only settable in Python: ``None`` does not parse from env) and
    Prefect's temporary-server start-up timeout raised to ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    (default 120 s, also for the Python API, whose Prefect settings were read at import); waits for the server of
    :func:`~qlib_prefect.tweaks.prefect_server.start_api_server` first. A start-up timeout becomes a
    :class:`ConfigError` saying what to do."""
    wait_api_server()
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    timeout = get_settings().prefect_startup_timeout
    updates = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(1, math.ceil(timeout))}  # whole seconds
    try:
        with temporary_settings(updates=updates):
            yield
    except RuntimeError as e:
        if SERVER_TIMEOUT_TEXT not in str(e):
            raise
        raise ConfigError(
            f"Prefect's temporary API server did not start within {timeout:.0f} s (machine busy?): raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start `prefect server start` once and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        ) from e


def abort_after_interrupt(exc: BaseException, flow_run_id: str) -> None:
    """Ctrl-C/SIGTERM inside a flow run (CLI only, see :func:`~qlib_prefect.tweaks.interpreter.abort_soon`): if the
    command has not ended a few seconds later (Prefect waits for the running stage threads), mark the flow run
    Crashed, delete this process' unfinished temporary folders and exit (rc 130 for Ctrl-C, 143 otherwise)."""
    if isinstance(exc, (Exception, GeneratorExit)):
        return
    from qlib_prefect.tweaks.interpreter import abort_soon

    rc = 130 if type(exc) is KeyboardInterrupt else 143

    def before_exit() -> None:
        from qlib_prefect.utils.tempdirs import remove_unfinished

        remove_unfinished()
        if flow_run_id:
            from qlib_prefect.tweaks.prefect_server import crash_flow_run

            crash_flow_run(flow_run_id, f"interrupted ({type(exc).__name__})")

    abort_soon(rc, before_exit)
