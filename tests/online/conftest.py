"""Fixtures of the online tests: a fresh MLflow SQLite store per test module and the qlib-format golden data."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import qlib_prefect
from qlib_prefect.config.runtime import C
from qlib_prefect.workflow import R

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "golden" / "handlers" / "data"  # 24 instruments, 2019-01-02 .. 2020-09-09, qlib format
GOLD = ROOT / "golden" / "online"


def golden() -> dict:
    return json.loads((GOLD / "goldens.json").read_text())


def store_uri(session_tmp: Path, folder: Path) -> str:
    """A fresh MLflow SQLite store in ``folder``, copied from a per-process template (schema creation is slow)."""
    tpl = session_tmp / "online-mlflow-template" / "mlflow.db"
    if not tpl.exists():
        from mlflow.tracking import MlflowClient

        tpl.parent.mkdir(parents=True, exist_ok=True)
        build = tpl.with_name(f"build-{os.getpid()}.db")
        MlflowClient(tracking_uri=f"sqlite:///{build}").search_experiments()
        build.replace(tpl)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tpl, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def init_store(uri: str, data: Path = DATA) -> None:
    qlib_prefect.init(provider_uri=str(data), region="us", exp_manager={
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": "Experiment"}})


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
