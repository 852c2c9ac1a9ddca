"""A qlib example YAML copied verbatim from qlib's repository runs unchanged (only data-related values replaced)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from qlib_prefect.orchestration import qlib_workflow

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

FIXTURE = Path(__file__).resolve().parents[1] / "config" / "fixtures" / "workflow_config_lightgbm_Alpha158.yaml"
#: provider_uri, region, market, benchmark and dates: the only edits (qlib's data is not available here).
EDITS = [
    ('provider_uri: "~/.qlib/qlib_data/cn_data"', 'provider_uri: "{{ SMALL_DATA }}"'),
    ("region: cn", "region: us"),
    ("&market csi300", "&market sp500"),
    ("&benchmark SH000300", "&benchmark SPX"),
    ("    start_time: 2008-01-01\n    end_time: 2020-08-01\n    fit_start_time: 2008-01-01\n"
     "    fit_end_time: 2014-12-31",
     "    start_time: 2015-01-02\n    end_time: 2017-06-29\n    fit_start_time: 2015-01-02\n"
     "    fit_end_time: 2015-12-31"),
    ("start_time: 2017-01-01\n        end_time: 2020-08-01", "start_time: 2016-07-01\n        end_time: 2017-06-28"),
    ("train: [2008-01-01, 2014-12-31]", "train: [2015-01-02, 2015-12-31]"),
    ("valid: [2015-01-01, 2016-12-31]", "valid: [2016-01-01, 2016-06-30]"),
    ("test: [2017-01-01, 2020-08-01]", "test: [2016-07-01, 2017-06-29]"),
]


def test_verbatim_qlib_example_runs(small_data, isolated_home, tmp_path, monkeypatch) -> None:
    text = FIXTURE.read_text()
    for old, new in EDITS:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    cfg = tmp_path / "workflow_config_lightgbm_Alpha158.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("SMALL_DATA", str(small_data))
    monkeypatch.chdir(tmp_path)  # no exp_manager in the YAML: runs go to ./mlruns (SQLite), like qrun's ./mlruns
    summary = qlib_workflow(str(cfg))
    assert summary["experiment_name"] == "workflow"
    assert summary["tracking_uri"] == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.kwargs.num_leaves"] == "210"
    assert {"IC", "Rank IC", "1day.excess_return_with_cost.annualized_return"} <= set(run.data.metrics)
