"""Prefect settings for lean local runs (see docs: heartbeats off, server services off for the ephemeral API)."""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError

__all__ = [
    "EARLY_SERVER_ENV",
    "EPHEMERAL_ENV_DEFAULTS",
    "apply_env_defaults",
    "lean_prefect_settings",
    "print_early_server",
    "start_api_server_early",
    "wait_api_server",
]

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


#: set to ``0`` to leave the temporary API server to Prefect (started at the first API call)
EARLY_SERVER_ENV = "QLIB_PREFECT_EARLY_SERVER"

_EARLY: dict[str, Any] = {}


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api_server_early() -> bool:
    """Start Prefect's temporary local API server now, in the background (CLI commands, before Prefect is imported).

    Without ``PREFECT_API_URL`` Prefect starts the same server (``uvicorn prefect.server.api.server:create_app``
    with the ephemeral flags, the UI off) at the first API call and waits for it; started here it boots while
    this process imports its libraries and loads the data. ``PREFECT_API_URL`` is set for this process and its
    children; the server stops when the process exits. Returns whether a server was started: not when an API
    URL is set (in the environment or possibly in a Prefect settings file), ephemeral mode is disallowed, Prefect
    is already imported, or ``QLIB_PREFECT_EARLY_SERVER=0``.
    """
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules or _EARLY:
        return False
    if os.environ.get(EARLY_SERVER_ENV, "1").strip().lower() in ("0", "false", "no"):
        return False
    if os.environ.get("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true").strip().lower() in ("0", "false", "no"):
        return False
    if _api_configured_in_files():
        return False
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.origin:
        return False
    port = _free_port()
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent), "--factory",
           "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "error", "--lifespan", "on"]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}/api"
    _EARLY.update(proc=proc, url=url, ready=False)
    os.environ["PREFECT_API_URL"] = url
    atexit.register(_stop_early_server)
    return True


def _api_configured_in_files() -> bool:
    """Whether a Prefect settings file may set the API URL (then Prefect decides, not us).

    Checked without importing Prefect, conservatively (any mention counts): the profiles file
    (``$PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml``, else ``~/.prefect/profiles.toml``), and in
    the working directory ``.env``, ``prefect.toml`` and ``pyproject.toml``'s ``[tool.prefect]`` tables.
    """
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    checks = [(profiles, ("PREFECT_API_URL",)), (Path(".env"), ("PREFECT_API_URL",)),
              (Path("prefect.toml"), ("url", "PREFECT_API_URL")), (Path("pyproject.toml"), ("tool.prefect",))]
    for path, needles in checks:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(n in text for n in needles):
            return True
    return False


def print_early_server() -> None:
    """One line naming the temporary server of :func:`start_api_server_early` (for CLI output)."""
    if _EARLY:
        print(f"Prefect API: temporary local server at {_EARLY['url']} (stops with this command; set "
              "PREFECT_API_URL to use a running `prefect server` and keep the runs in its UI)", flush=True)


def _die_with_parent() -> None:
    """In the server's child process (Linux): get SIGTERM when the command dies, also when it is killed and its
    ``atexit`` handlers never run, so no orphaned server keeps its port."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the atexit handler still stops the server on a normal exit
        pass


def wait_api_server() -> None:
    """Block until the server of :func:`start_api_server_early` answers ``/health`` (no-op without one)."""
    if not _EARLY or _EARLY.get("ready"):
        return
    proc, url = _EARLY["proc"], _EARLY["url"]
    try:
        timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    except ValueError:
        timeout = 120.0
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    _EARLY["ready"] = True
                    return
        except (urllib.error.URLError, OSError):
            pass
        code = proc.poll()
        if code is not None:
            raise ConfigError(
                f"the local Prefect API server ({url}) exited with code {code} while starting; "
                f"set PREFECT_API_URL to a running server, or {EARLY_SERVER_ENV}=0 to let Prefect start its own"
            )
        if time.monotonic() > deadline:
            raise ConfigError(f"the local Prefect API server ({url}) did not answer within {timeout:.0f} s "
                              "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)")
        time.sleep(0.05)


def _stop_early_server() -> None:
    proc = _EARLY.get("proc")
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def lean_prefect_settings() -> Iterator[None]:
    """Flow heartbeats off for the duration (only settable in Python: ``None`` does not parse from env); waits for
    the server of :func:`start_api_server_early` first."""
    wait_api_server()
    try:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    except ImportError:  # pragma: no cover - older prefect without heartbeats
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
