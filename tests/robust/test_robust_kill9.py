"""kill -9 of a ``qlib-prefect run`` during a stage (issue 15 items 7 and proof): the next run sets the killed
Prefect flow run Crashed (read back from the Prefect API), marks the killed MLflow run KILLED, recomputes the
killed stage (nothing partial is taken for done) and ends with the metrics of a clean run. Real processes, a real
SIGKILL, a real Prefect API server and MLflow store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from orch_helpers import env_for_subprocess, small_config

pytestmark = [pytest.mark.slow]

CLI = [sys.executable, "-m", "qlib_prefect.cli.main"]
PAUSE = {"class": "PauseRecord", "module_path": "robust_helpers", "kwargs": {}}


@pytest.fixture(scope="module")
def api_url(session_tmp: Path):
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


def _config(tmp: Path, data: Path, name: str) -> Path:
    cfg = small_config(data, f"sqlite:///{tmp / name / 'mlflow.db'}", extra_records=[PAUSE])
    cfg["sys"]["path"].append(str(Path(__file__).resolve().parent))
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _run(cfg: Path, env: dict[str, str], out: Path) -> dict:
    proc = subprocess.run([*CLI, "run", str(cfg), "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def _flow_run(api: str, flow_run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def test_kill_9_during_a_stage_then_rerun_recovers(robust_data, tmp_path, api_url) -> None:
    home = tmp_path / "home"
    cfg = _config(tmp_path, robust_data, "mlruns")
    env = env_for_subprocess(api_url, home, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    victim = subprocess.Popen([*CLI, "run", str(cfg)], env={**env, "QP_TEST_PAUSE": "1"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in victim.stdout:
            lines.append(line)
            if "PauseRecord working" in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert seen.wait(300), "".join(lines)[-3000:]
        os.kill(victim.pid, signal.SIGKILL)  # the command only: no handler runs, nothing is ended
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
    db = tmp_path / "mlruns" / "mlflow.db"
    with sqlite3.connect(db) as conn:
        (killed_run, fr_id), = conn.execute(
            "SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'prefect.flow_run_id' AND r.status = 'RUNNING'").fetchall()
    assert _flow_run(api_url, fr_id).state.type.value == "RUNNING"  # what kill -9 leaves

    rerun = _run(cfg, env, tmp_path / "rerun.json")
    flow_run = _flow_run(api_url, fr_id)
    assert flow_run.state.type.value == "CRASHED", flow_run.state
    assert "gone" in (flow_run.state.message or "")
    with sqlite3.connect(db) as conn:
        status = dict(conn.execute("SELECT run_uuid, status FROM runs").fetchall())
    assert status[killed_run] in {"KILLED", "FAILED"} and status[rerun["run_id"]] == "FINISHED", status
    assert "RUNNING" not in status.values()
    states = {name: s["state"] for name, s in rerun["stages"].items()}
    pause = next(n for n in states if n.endswith("PauseRecord"))
    assert states[pause] == "Completed", states
    assert rerun["all_metrics"].get("pause_done") == 1.0  # recomputed: logged only after the pause
    from mlflow.tracking import MlflowClient

    arts = {a.path for a in MlflowClient(f"sqlite:///{db}").list_artifacts(rerun["run_id"], "pause")}
    assert {"pause/partial.pkl", "pause/done.pkl"} <= arts, arts  # the killed stage's partial output not "done"
    leftovers = [p for p in home.rglob("*") if p.name.startswith(".tmp")]
    assert not leftovers, leftovers

    clean_cfg = _config(tmp_path, robust_data, "clean_mlruns")
    clean = _run(clean_cfg, env_for_subprocess(api_url, tmp_path / "clean_home",
                                               PYTHONPATH=str(Path(__file__).resolve().parents[2])),
                 tmp_path / "clean.json")
    assert set(clean["all_metrics"]) == set(rerun["all_metrics"])
    for k, v in clean["all_metrics"].items():
        assert rerun["all_metrics"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
