"""The malformed-config corpus through real ``qlib-prefect run BAD.yaml`` processes (issue 15, proof): for each
case a non-zero exit (2), the key path in the one-paragraph message, no Python traceback on stderr, no MLflow run
and nothing in the cache -- quickly (child CPU time, the machine being shared). The full corpus runs in-process
in tests/config/test_malformed_corpus.py; here a representative subset, one process each."""

from __future__ import annotations

import copy
import os
import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_malformed_corpus import CORPUS
from test_semantics import BASE, _set

pytestmark = [pytest.mark.slow]

CLI = [sys.executable, "-m", "qlib_prefect.cli.main"]

#: one or two cases of each kind: item 9's nonsense, schema types, unknown names, placeholders, dates, URIs
SUBSET = (
    "n_drop > topk", "account zero", "deal_price midpoint", "scalar train", "segment reversed",
    "backtest outside predictions", "unknown uri scheme", "MODLE", "lgb string lr", "model unknown class",
    "handler unknown kwarg", "segment bad date", "record unknown class", "strategy unknown kwarg",
    "exchange unknown kwarg", "sys path int",
)


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def test_subset_is_in_the_corpus():
    assert set(SUBSET) <= set(CORPUS) and len(SUBSET) >= 15


@pytest.mark.parametrize("case", SUBSET)
def test_cli_refuses_a_malformed_config(case, tmp_path):
    path, value, key = CORPUS[case]
    raw = copy.deepcopy(BASE)
    db = tmp_path / "mlruns" / "mlflow.db"
    raw["qlib_init"]["exp_manager"] = {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                       "kwargs": {"uri": f"sqlite:///{db}", "default_exp_name": "Experiment"}}
    _set(raw, path, value) if path != ("task",) else raw.__setitem__("task", value)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    home = tmp_path / "home"
    env = {**os.environ, "QLIB_PREFECT_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PREFECT_API_URL", None)
    cpu = _child_cpu()
    proc = subprocess.run([*CLI, "run", str(cfg)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    cpu = _child_cpu() - cpu
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert key in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    assert "--traceback" in proc.stderr
    assert cpu < 3, f"{cpu:.2f} s CPU"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert not conn.execute("SELECT run_uuid FROM runs").fetchall()
    cached = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert not cached, cached
    assert not (tmp_path / "mlruns").exists() or db.exists()  # no file store appeared beside the config


def test_traceback_flag_shows_the_traceback(tmp_path):
    raw = copy.deepcopy(BASE)
    _set(raw, ("task", "model", "kwargs", "learning_rate"), "fast")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "QLIB_PREFECT_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([*CLI, "--traceback", "run", str(cfg)], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr and "ConfigError" in proc.stderr
    assert "task.model.kwargs.learning_rate" in proc.stderr.splitlines()[-1]
