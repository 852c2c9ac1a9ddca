"""Errors of our own kind end a ``qlib-prefect run`` with a one-paragraph message and exit code 2, no Python
traceback (Prefect's engine log lines included) unless ``--traceback``; a library error raised inside a stage
(pandas here) is wrapped naming the stage and the config file, the original in the cause chain (issue 15 item 11).
Real processes, a real temporary Prefect server, a real MLflow store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from orch_helpers import small_config

pytestmark = [pytest.mark.slow]

CLI = [sys.executable, "-m", "qlib_prefect.cli.main"]


def test_library_error_in_a_stage_is_wrapped_without_traceback(robust_data, tmp_path) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    cfg = small_config(robust_data, f"sqlite:///{db}",
                       extra_records=[{"class": "PandasFailRecord", "module_path": "robust_helpers", "kwargs": {}}])
    cfg["sys"]["path"].append(str(Path(__file__).resolve().parent))
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(QLIB_PREFECT_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))

    quiet = subprocess.run([*CLI, "run", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 2, quiet.stdout[-2000:] + quiet.stderr[-3000:]
    out = quiet.stdout + quiet.stderr
    assert "Traceback" not in out, out[-4000:]
    last = quiet.stderr.strip().split("\nerror: ")[-1]
    assert "stage record.3.PandasFailRecord failed: KeyError" in last and "no_such_column" in last, last
    assert str(path) in last and "--traceback" in last, last
    with sqlite3.connect(db) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM runs")]
    assert statuses == ["FAILED"], statuses

    loud = subprocess.run([*CLI, "--traceback", "run", str(path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert "The above exception was the direct cause of the following exception" in loud.stderr  # the original
    assert "KeyError: 'no_such_column'" in loud.stderr and "StageError" in loud.stderr
