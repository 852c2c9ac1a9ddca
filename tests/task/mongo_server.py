"""A real MongoDB wire-protocol server for the task-pool tests: SecantusDB (``secantusd-py``, in memory).

SecantusDB is GPL-2.0: it is never vendored nor a dependency of the package; it is pip-installed into the test
interpreter on first use. :func:`mongo_server` starts one on a free port, waits until pymongo pings it and stops it
by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["mongo_server", "server_executable"]


def server_executable() -> str:
    """Path of ``secantusd-py`` next to the test interpreter (installed with pip if missing)."""
    bindir = Path(sys.executable).parent
    exe = shutil.which("secantusd-py", path=str(bindir)) or shutil.which("secantusd-py")
    if exe is None:
        import fcntl

        # xdist workers may get here together: one pip install at a time
        with open(Path(tempfile.gettempdir()) / "qlib-prefect-secantusdb-install.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            exe = shutil.which("secantusd-py", path=str(bindir))
            if exe is None:
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "secantusdb"], check=True,
                               stdout=subprocess.DEVNULL)
                exe = shutil.which("secantusd-py", path=str(bindir)) or shutil.which("secantusd-py")
    if exe is None:
        raise RuntimeError("secantusdb installed but its secantusd-py executable was not found")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mongo_server(timeout: float = 90.0) -> Iterator[str]:
    """Run an in-memory server; yields its ``mongodb://`` URL."""
    import pymongo

    exe = server_executable()
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="secantusd-", suffix=".log", delete=False)
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"mongodb://127.0.0.1:{port}/"
    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=500)
    try:
        start = time.monotonic()
        while True:
            try:
                client.admin.command("ping")
                break
            except pymongo.errors.PyMongoError:
                if proc.poll() is not None or time.monotonic() - start > timeout:
                    raise RuntimeError(f"secantusd-py did not start on port {port}: "
                                       f"{Path(log.name).read_text(errors='replace')[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        client.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        os.unlink(log.name)
