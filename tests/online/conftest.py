"""Fixtures of the online tests: a fresh MLflow SQLite store per test module (helpers in online_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from online_helpers import init_store, store_uri

from qlib_prefect.config.runtime import C
from qlib_prefect.workflow import R


@pytest.fixture(scope="module")
def store(session_tmp: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """R on a fresh SQLite store with the golden data as provider."""
    uri = store_uri(session_tmp, tmp_path_factory.mktemp("online_store"))
    init_store(uri)
    yield uri
    if R.is_built() and R.exp_manager.active_experiment is not None:
        R.end_exp("FAILED")
    R.reset()
    C.reset()
