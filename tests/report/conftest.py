"""A real run on a small slice of the bundled sample (trainer path: the report is built by the run's hook)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "orchestration"))
from orch_helpers import make_small_data, small_config


@pytest.fixture(scope="session")
def report_data(session_tmp: Path) -> Path:
    return make_small_data(session_tmp / "report_small_data")


@pytest.fixture(scope="session")
def _session_run(report_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The run behind :func:`real_run`, trained once per session."""
    import qlib_prefect
    from qlib_prefect.config.runtime import C
    from qlib_prefect.task.trainer import task_train
    from qlib_prefect.workflow import MLflowRecorder, R

    uri = f"sqlite:///{tmp_path_factory.mktemp('report_runs') / 'mlflow.db'}"
    cfg = small_config(report_data, uri)
    qlib_prefect.init(**cfg["qlib_init"])
    rec = task_train(cfg["task"], "report-test")
    yield {"recorder": MLflowRecorder.from_run_id(rec.id, uri, async_logging=False), "uri": uri, "config": cfg,
           "data": report_data}
    R.reset()
    C.reset()


@pytest.fixture
def real_run(_session_run: dict[str, Any]) -> dict[str, Any]:
    """``{"recorder", "uri", "config", "data"}`` of a finished LightGBM/Alpha158 run made by ``task_train``, with
    its data provider initialised again (tests of other modules in the same worker initialise their own data
    between two uses; the report's IC decay reads labels from the provider)."""
    import qlib_prefect

    qlib_prefect.init(**_session_run["config"]["qlib_init"])
    return _session_run
