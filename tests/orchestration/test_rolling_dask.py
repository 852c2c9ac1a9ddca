"""Smoke test of the Dask switch (``run_rolling(..., dask=True)`` / ``qlib-prefect rolling --dask``).

Windows run as tasks on a local Dask cluster (worker *processes*: they start without ``qlib_prefect.init``
and get the data location from the run context) and give the same merged predictions as the thread pool.
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from test_rolling import STEP, rolling_config

from qlib_prefect.orchestration._rolling import run_rolling

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


def test_rolling_on_dask_equals_threads(small_data, isolated_home, mlflow_uri) -> None:
    cfg = rolling_config(small_data, mlflow_uri, 2)
    on_dask = run_rolling(cfg, step=STEP, dask=True, max_workers=2)
    assert on_dask["trained"] == 2
    assert [w["state"] for w in on_dask["windows"]] == ["Completed", "Completed"]
    on_threads = run_rolling(cfg, step=STEP, refresh=True)
    assert on_threads["trained"] == 2
    client = MlflowClient(mlflow_uri)
    a = pd.read_pickle(client.download_artifacts(on_dask["run_id"], "pred.pkl"))
    b = pd.read_pickle(client.download_artifacts(on_threads["run_id"], "pred.pkl"))
    assert len(a) > 0
    pd.testing.assert_frame_equal(a, b)
