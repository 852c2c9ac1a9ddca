"""Fixtures for the recording layer: a SQLite store per test, one real ``mlflow server`` per session."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import qlib_prefect
from qlib_prefect.config.runtime import C
from qlib_prefect.workflow import R

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")


def configure_r(uri: str, **kwargs: object) -> None:
    """Point R at ``uri`` the way a qlib config does (qlib's class path)."""
    qlib_prefect.init(
        exp_manager={
            "class": "MLflowExpManager",
            "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": uri, "default_exp_name": "Experiment", **kwargs},
        }
    )


def _cleanup_r() -> None:
    if R.is_built() and R.exp_manager.active_experiment is not None:
        R.end_exp("FAILED")
    R.reset()
    C.reset()


@pytest.fixture
def configure():
    """The :func:`configure_r` helper, as a fixture (test modules do not import conftest)."""
    return configure_r


@pytest.fixture
def new_store(template_db: Path):
    """``new_store(folder) -> uri``: a fresh store at ``folder/mlflow.db`` (copied from the template)."""

    def make(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template_db, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture
def sqlite_uri(tmp_path: Path, new_store) -> str:
    return new_store(tmp_path / "mlruns")


@pytest.fixture
def r_sqlite(sqlite_uri: str) -> Iterator[object]:
    """``R`` configured on a fresh SQLite store in tmp_path."""
    configure_r(sqlite_uri)
    yield R
    _cleanup_r()


@pytest.fixture(autouse=True)
def _reset_r_after() -> Iterator[None]:
    yield
    _cleanup_r()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite backend, proxied artifacts); yields its http URI."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    log = (root / "server.log").open("wb")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    proc = subprocess.Popen(
        [
            str(MLFLOW_BIN), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early: {(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield uri
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this fixture started (start_new_session)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()
