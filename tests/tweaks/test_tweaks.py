"""Each platform tweak: the private internal it uses is still there in the installed release (these tests fail
loudly after an upgrade that moves it), the switch turns it off, and the fallback works without it."""

from __future__ import annotations

import inspect
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ENV = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def _py(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env or ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------- interpreter
def test_interpreter_private_functions_exist() -> None:
    from qlib_prefect.tweaks.interpreter import PRIVATE_FUNCTIONS, available

    for module, name in PRIVATE_FUNCTIONS:
        assert callable(getattr(module, name, None)), f"{module.__name__}.{name} is gone: update tweaks.interpreter"
    assert available()


@pytest.mark.parametrize("fast", ["1", "0"])
def test_exit_process_joins_threads_and_runs_atexit(fast: str) -> None:
    code = """
        import atexit, threading, time
        from qlib_prefect.tweaks.interpreter import exit_process
        atexit.register(lambda: print("atexit ran", flush=True))
        def work():
            time.sleep(0.3)
            print("thread done", flush=True)
        threading.Thread(target=work).start()
        exit_process(3)
    """
    out = _py(code, {**ENV, "QLIB_PREFECT_FAST_EXIT": fast})
    assert out.returncode == 3, out.stderr
    assert out.stdout.splitlines() == ["thread done", "atexit ran"]


def test_exit_process_after_an_interrupt_does_not_wait_for_workers() -> None:
    code = """
        import atexit, threading, time
        from qlib_prefect.tweaks.interpreter import exit_process
        atexit.register(lambda: print("atexit ran", flush=True))
        threading.Thread(target=time.sleep, args=(60,)).start()
        exit_process(130, interrupted=True)
    """
    out = _py(code)
    assert out.returncode == 130, out.stderr
    assert out.stdout.splitlines() == ["atexit ran"]


def test_exit_process_falls_back_to_sys_exit_without_the_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from qlib_prefect.tweaks import interpreter

    monkeypatch.delattr(threading, "_shutdown")
    assert not interpreter.available()
    with pytest.raises(SystemExit) as info:
        interpreter.exit_process(4)
    assert info.value.code == 4


# -------------------------------------------------------------------------------------------------- heap
def test_numpy_hugepage_switch_exists() -> None:
    from qlib_prefect.tweaks.heap import hugepage_switch

    assert hasattr(np._core.multiarray, "_set_madvise_hugepage"), f"numpy {np.__version__} moved it"
    assert hugepage_switch() is np._core.multiarray._set_madvise_hugepage


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_glibc_mallopt_exists() -> None:
    from qlib_prefect.tweaks.heap import libc_malloc

    lib = libc_malloc()
    assert lib is not None and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim")


def _hugepage_inside(monkeypatch: pytest.MonkeyPatch, value: str) -> bool:
    from qlib_prefect.tweaks.heap import heap_reuse

    hp = np._core.multiarray._set_madvise_hugepage
    monkeypatch.setenv("QLIB_PREFECT_HEAP_TWEAKS", value)
    before = hp(True)
    try:
        with heap_reuse():
            inside = hp(True)  # returns the state set by the block (and turns it on)
            hp(inside)
        assert hp(True) is True  # restored after the block
    finally:
        hp(before)
    return bool(inside)


def test_heap_reuse_turns_hugepage_advice_off_and_the_switch_leaves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _hugepage_inside(monkeypatch, "1") is False
    assert _hugepage_inside(monkeypatch, "0") is True


def test_heap_reuse_works_without_the_numpy_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    from qlib_prefect.tweaks import heap

    monkeypatch.setattr(heap, "_HP", [None])
    monkeypatch.setattr(heap, "_LIBC", [None])
    with heap.heap_reuse():
        total = float(np.ones(1 << 20).sum())
    assert total == float(1 << 20)


# ---------------------------------------------------------------------------------------- prefect server
def test_prefect_server_internals_match_what_we_start() -> None:
    """Our early server runs the command Prefect's own temporary server runs: same app factory, same flags."""
    from prefect.server.api import server

    from qlib_prefect.tweaks.prefect_server import APP_FACTORY, PRIVATE_FLAGS

    module, factory = APP_FACTORY.split(":")
    assert module == server.__name__ and callable(getattr(server, factory))
    factory_src = inspect.getsource(server.create_app)
    assert "PREFECT__SERVER_EPHEMERAL" in factory_src and "PREFECT__SERVER_FINAL" in factory_src
    run_src = inspect.getsource(server.SubprocessASGIServer._run_uvicorn_command)
    for needle in (APP_FACTORY, "--factory", "--app-dir", "--lifespan", *PRIVATE_FLAGS):
        assert needle in run_src, f"Prefect's temporary server command changed ({needle!r} missing)"
    for key, value in PRIVATE_FLAGS.items():
        assert f'"{key}": "{value}"' in run_src


def test_prefect_settings_files_we_read_by_hand_are_still_prefects() -> None:
    import prefect.settings as ps
    from prefect.server.api import task_runs

    for name in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE",
                 "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "PREFECT_UI_URL", "PREFECT_HOME"):
        assert hasattr(ps, name), name
    sources = inspect.getsource(sys.modules["prefect.settings.sources"])
    for needle in ("prefect.toml", "pyproject.toml", ".env"):
        assert needle in sources, f"Prefect no longer reads {needle}: update api_configured_in_files"
    assert any(getattr(r, "path", "").endswith("/task_runs/count") for r in task_runs.router.routes)


def test_early_server_falls_back_to_prefect_when_its_server_module_is_missing(tmp_path: Path) -> None:
    code = """
        from qlib_prefect.tweaks import prefect_server as s
        s.APP_FACTORY = "prefect.no_such_server_module:create_app"
        print(s.start_api_server(), s.server_url())
    """
    out = _py(code, {**ENV, "PREFECT_HOME": str(tmp_path / "p")}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "None"]


def test_early_server_switch(tmp_path: Path) -> None:
    code = "from qlib_prefect.tweaks import prefect_server as s\nprint(s.start_api_server())"
    out = _py(code, {**ENV, "PREFECT_HOME": str(tmp_path / "p"), "QLIB_PREFECT_EARLY_SERVER": "0"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------ mlflow store
def test_mlflow_client_store_is_where_we_reach_for_it(tmp_path: Path) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    from qlib_prefect.tweaks.mlflow_store import PRIVATE_ATTRS, sql_store, tune_sqlite

    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    tracking = getattr(client, PRIVATE_ATTRS[0])
    assert isinstance(getattr(tracking, PRIVATE_ATTRS[1]), SqlAlchemyStore), "MlflowClient's store moved"
    store = sql_store(client)
    assert store is not None and hasattr(store, "engine") and hasattr(store, "ManagedSessionMaker")
    assert tune_sqlite(client)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_mlflow_store_switch_uses_the_public_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from qlib_prefect.tweaks.mlflow_store import open_store, sql_store, tune_sqlite
    from qlib_prefect.workflow.exp import lean_list

    monkeypatch.setenv("QLIB_PREFECT_MLFLOW_STORE_TWEAKS", "0")
    db = tmp_path / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    open_store(client)
    assert db.exists()  # the public call created the schema
    assert sql_store(client) is None and not tune_sqlite(client)
    exp = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    assert lean_list(client, exp) is None  # callers then use search_runs
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


def test_mlflow_store_fallback_when_the_client_lacks_the_attribute(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from qlib_prefect.tweaks.mlflow_store import sql_store

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    del client._tracking_client
    assert sql_store(client) is None


def test_tweaks_package_imports_nothing_heavy() -> None:
    code = """
        import sys
        import qlib_prefect.tweaks, qlib_prefect.tweaks.interpreter, qlib_prefect.tweaks.prefect_server
        heavy = [m for m in ("prefect", "mlflow", "numpy", "pandas") if m in sys.modules]
        import qlib_prefect.tweaks.heap
        print(heavy, "mlflow" in sys.modules or "prefect" in sys.modules)
    """
    out = _py(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] False"


def test_abort_soon_ends_an_interrupted_process_only_when_armed() -> None:
    code = """
        import atexit, sys, threading, time
        from qlib_prefect.tweaks import interpreter
        atexit.register(lambda: print("atexit ran", flush=True))
        threading.Thread(target=time.sleep, args=(60,)).start()  # a stage thread that cannot be stopped
        print(interpreter.abort_soon(130, grace=0.1), flush=True)  # not armed: library users keep Python's exit
        interpreter.arm_abort_exit()
        print(interpreter.abort_soon(130, lambda: print("clean-up", flush=True), grace=0.2), flush=True)
        time.sleep(60)
    """
    out = _py(code)
    assert out.returncode == 130, out.stderr
    assert out.stdout.splitlines() == ["False", "True", "clean-up", "atexit ran"]
