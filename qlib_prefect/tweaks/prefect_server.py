"""Prefect tweak: start Prefect's temporary local API server ourselves, first thing in a CLI command.

Without ``PREFECT_API_URL`` Prefect starts a temporary server (``uvicorn prefect.server.api.server:create_app``
with the private flags ``PREFECT__SERVER_EPHEMERAL=1``, ``PREFECT__SERVER_FINAL=1``, the UI off) at the flow's first
API call and waits for it (~3 s, ~7-14 s with a new database). Started here, before Prefect is imported, it boots
while the command imports its libraries and loads the data (commit 669719d). To decide without importing Prefect,
its settings files are read by hand (profiles, ``.env``, ``prefect.toml``, ``pyproject.toml``'s ``[tool.prefect]``):
any mention of an API URL leaves the choice to Prefect.

What we add over Prefect's own server:

* the server runs in its own session (``start_new_session``): Ctrl-C in the terminal reaches the command, not the
  server, so the command can still mark its runs failed/crashed; a parent-death signal (Linux ``PR_SET_PDEATHSIG``)
  still stops it when the command is killed;
* a new Prefect database is created under a file lock (``$PREFECT_HOME/prefect.db.lock``): concurrent first runs
  on a new home no longer race Prefect's migrations (issue 15 item 8);
* before it stops, the server is given time to record the task runs of the flow runs this process announced
  (:func:`expect_task_runs`; Prefect records task runs from events, asynchronously), so a later
  ``prefect server start`` on the same home shows every stage; links point at that server (``PREFECT_UI_URL``).

Switch: ``QLIB_PREFECT_EARLY_SERVER=0``. Fallback: when Prefect's server module is missing (an upgrade moved it)
nothing is started (logged once at debug) and Prefect starts its own server as usual. Imports no Prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.metadata
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from qlib_prefect.config.settings import get_settings
from qlib_prefect.errors import ConfigError
from qlib_prefect.utils.filelock import file_lock

__all__ = [
    "APP_FACTORY",
    "PRIVATE_FLAGS",
    "UI_URL",
    "api_configured_in_files",
    "crash_flow_run",
    "expect_task_runs",
    "print_server_line",
    "server_url",
    "start_api_server",
    "stop_api_server",
    "wait_api_server",
]

logger = logging.getLogger(__name__)

#: the uvicorn app factory Prefect's own temporary server runs
APP_FACTORY = "prefect.server.api.server:create_app"
#: the private environment flags Prefect sets for its temporary server (``tests/tweaks`` checks them)
PRIVATE_FLAGS = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
#: where ``prefect server start`` serves the UI by default: links printed during a run point there
UI_URL = "http://127.0.0.1:4200"
#: seconds the stopping server is given to record the announced task runs
TASK_RUN_WAIT = 15.0

_SERVER: dict[str, Any] = {}
_EXPECTED: dict[str, int] = {}


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_url() -> str | None:
    """API URL of the server started by :func:`start_api_server` (``None`` without one)."""
    return _SERVER.get("url")


def start_api_server() -> bool:
    """Start Prefect's temporary local API server now, in the background; returns whether one was started.

    Not when an API URL is set (in the environment or possibly in a Prefect settings file), ephemeral mode is
    disallowed, Prefect is already imported, ``QLIB_PREFECT_EARLY_SERVER=0``, or Prefect's server module is
    missing. ``PREFECT_API_URL`` (and ``PREFECT_UI_URL`` unless set) is set for this process and its children;
    the server stops when the process exits. A new database is created under a file lock: then this call waits
    for the server to answer.
    """
    s = get_settings()
    if s.prefect_api_url or "prefect" in sys.modules or _SERVER:
        return False
    if not s.early_server or not s.prefect_allow_ephemeral or api_configured_in_files():
        return False
    try:
        spec = importlib.util.find_spec("prefect")
        server_spec = importlib.util.find_spec(APP_FACTORY.split(":")[0]) if spec is not None else None
    except (ImportError, ValueError):
        spec = server_spec = None
    if spec is None or not spec.origin or server_spec is None:
        logger.debug("Prefect's server module %s not found: leaving the temporary server to Prefect", APP_FACTORY)
        return False
    home = s.prefect_home_dir
    marker = home / "prefect.db.qlib-prefect-migrated"
    version = _prefect_version()
    if _marker_ok(marker, version):
        _spawn(Path(spec.origin).parent.parent)
        return True
    with file_lock(home / "prefect.db.lock", timeout=max(s.prefect_startup_timeout, 120.0)):
        _spawn(Path(spec.origin).parent.parent)
        if not _marker_ok(marker, version):  # first server on this home (or a new Prefect): migrate alone
            wait_api_server()
            marker.write_text(version, encoding="utf-8")
    return True


def _prefect_version() -> str:
    try:
        return importlib.metadata.version("prefect")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - spec found but no metadata
        return "unknown"


def _marker_ok(marker: Path, version: str) -> bool:
    try:
        return marker.read_text(encoding="utf-8").strip() == version
    except OSError:
        return False


def _spawn(app_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, **PRIVATE_FLAGS}
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory", APP_FACTORY,
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}/api"
    _SERVER.update(proc=proc, url=url, ready=False)
    os.environ["PREFECT_API_URL"] = url
    os.environ.setdefault("PREFECT_UI_URL", UI_URL)
    atexit.register(stop_api_server)


def api_configured_in_files() -> bool:
    """Whether a Prefect settings file may set the API URL (then Prefect decides, not us).

    Checked without importing Prefect, conservatively (any mention counts): the profiles file
    (``$PREFECT_PROFILES_PATH``, else ``$PREFECT_HOME/profiles.toml``, else ``~/.prefect/profiles.toml``), and in
    the working directory ``.env``, ``prefect.toml`` and ``pyproject.toml``'s ``[tool.prefect]`` tables.
    """
    s = get_settings()
    profiles = (s.prefect_profiles_path or s.prefect_home_dir / "profiles.toml").expanduser()
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


def print_server_line() -> None:
    """The lines naming the temporary server and how to see its runs afterwards (CLI output)."""
    if _SERVER:
        home = get_settings().prefect_home_dir
        print(f"Prefect API: temporary local server at {_SERVER['url']} (stops with this command; runs are kept "
              f"in {home}; to open them later run `prefect server start` and use the {UI_URL} links; or set "
              "PREFECT_API_URL to a running server)", flush=True)


def _die_with_parent() -> None:
    """In the server's child process (Linux): get SIGTERM when the command dies, also when it is killed and its
    ``atexit`` handlers never run, so no orphaned server keeps its port."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: the atexit handler still stops the server on a normal exit
        pass


def wait_api_server() -> None:
    """Block until the server of :func:`start_api_server` answers ``/health`` (no-op without one)."""
    if not _SERVER or _SERVER.get("ready"):
        return
    proc, url = _SERVER["proc"], _SERVER["url"]
    timeout = get_settings().prefect_startup_timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    _SERVER["ready"] = True
                    return
        except (urllib.error.URLError, OSError):
            pass
        code = proc.poll()
        if code is not None:
            raise ConfigError(
                f"the local Prefect API server ({url}) exited with code {code} while starting; "
                "set PREFECT_API_URL to a running server, or QLIB_PREFECT_EARLY_SERVER=0 to let Prefect start its own"
            )
        if time.monotonic() > deadline:
            raise ConfigError(f"the local Prefect API server ({url}) did not answer within {timeout:.0f} s: "
                              "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start `prefect server "
                              "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
        time.sleep(0.05)


def expect_task_runs(flow_run_id: str, count: int) -> None:
    """Announce that flow run ``flow_run_id`` ran ``count`` task runs: the server is not stopped before it has
    recorded them (or :data:`TASK_RUN_WAIT` seconds passed). No-op without a server of ours."""
    if _SERVER and flow_run_id:
        _EXPECTED[str(flow_run_id)] = int(count)


def _final_task_runs(url: str, flow_run_ids: list[str]) -> int:
    body = {"flow_runs": {"id": {"any_": flow_run_ids}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]}}}}
    req = urllib.request.Request(f"{url}/task_runs/count", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(json.loads(resp.read()))


def _await_task_runs() -> None:
    if not _EXPECTED or not _SERVER.get("ready"):
        return
    want = sum(_EXPECTED.values())
    deadline = time.monotonic() + TASK_RUN_WAIT
    got = -1
    while time.monotonic() < deadline:
        try:
            got = _final_task_runs(_SERVER["url"], list(_EXPECTED))
        except (urllib.error.URLError, OSError, ValueError):
            got = -1
        if got >= want:
            _EXPECTED.clear()
            return
        time.sleep(0.1)
    logger.warning("the Prefect server recorded %s of %s task runs before it stopped", max(got, 0), want)


def stop_api_server() -> None:
    """Stop the server (after it recorded the announced task runs); registered with ``atexit``."""
    proc = _SERVER.get("proc")
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(Exception):
        _await_task_runs()
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def crash_flow_run(flow_run_id: str, message: str) -> None:
    """Set a flow run Crashed through the REST API (``POST /flow_runs/{id}/set_state``, forced) of
    ``PREFECT_API_URL``: used by an interrupted command that exits without waiting for Prefect's engine."""
    url = get_settings().prefect_api_url
    if not url:
        return
    body = {"state": {"type": "CRASHED", "name": "Crashed", "message": message}, "force": True}
    req = urllib.request.Request(f"{url.rstrip('/')}/flow_runs/{flow_run_id}/set_state", method="POST",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
