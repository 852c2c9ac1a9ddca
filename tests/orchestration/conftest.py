"""Fixtures: one Prefect test harness per session, a small qlib-format data set cut from the bundled sample."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from orch_helpers import make_small_data


@pytest.fixture(scope="session")
def small_data(session_tmp: Path) -> Path:
    return make_small_data(session_tmp / "orch_small_data")


@pytest.fixture(scope="session")
def prefect_api(session_tmp: Path) -> Iterator[str]:
    """One Prefect test harness (a real API server) per session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh QLIB_PREFECT_HOME (content store, results, handler cache) per test."""
    home = tmp_path / "qp_home"
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(home))
    return home


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _end_runs() -> Iterator[None]:
    yield
    from qlib_prefect.workflow import R

    if R.is_built() and R.exp_manager.active_experiment is not None:
        R.end_exp("FAILED")
