"""Deployments for real: a `prefect server start` subprocess, `prefect deploy --all`, process workers, CLI runs.

One Prefect server per module (127.0.0.1, a free port, its own PREFECT_HOME; the event services off, the
scheduler on). Everything runs in subprocesses so the session's in-process test harness is untouched; every
process is started in its own process group and stopped by PID in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from orch_helpers import small_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
POOL = "qlib-local"  # the pool deployments/prefect.yaml targets
ROLLING_CRON = "30 18 * * 1-5"
SERVICES_OFF = ("TASK_RUN_RECORDER", "EVENT_PERSISTER", "TRIGGERS", "ACTIONS", "EVENT_LOGGER")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# ------------------------------------------------------------------------------------------ process helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (stopped with :func:`_stop`), output to ``log``."""
    f = open(log, "ab")
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    p._log_file = f  # type: ignore[attr-defined]
    return p


def _stop(p: subprocess.Popen | None, timeout: float = 15.0, first: signal.Signals = signal.SIGINT) -> None:
    """``first`` (SIGINT), then SIGTERM, then SIGKILL to the process group of ``p`` (by its PID)."""
    if p is None:
        return
    t0 = time.monotonic()
    for sig in (first, signal.SIGTERM, signal.SIGKILL):
        if p.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=timeout if sig != signal.SIGKILL else 10)
    with contextlib.suppress(ProcessLookupError):  # leftovers of the group (flow-run children)
        os.killpg(p.pid, signal.SIGKILL)
    p._log_file.close()  # type: ignore[attr-defined]
    print(f"stopped {' '.join(map(str, p.args[:4]))} in {time.monotonic() - t0:.1f}s")


def _tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 150.0) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:3]} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout:.0f}s:\n{_tail(log)}")


def _cli(args: list[str], env: dict[str, str], timeout: float = 180.0) -> str:
    r = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"prefect {' '.join(args)}: rc {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def _wait_flow_run(api_url: str, flow_run_id: str, timeout: float = 300.0) -> Any:
    """Poll the flow run through the Prefect client until it is final."""
    t_end = time.monotonic() + timeout
    with _client(api_url) as client:
        while True:
            fr = client.read_flow_run(flow_run_id)
            if fr.state is not None and fr.state.is_final():
                return fr
            if time.monotonic() > t_end:
                raise AssertionError(f"flow run {flow_run_id} still {fr.state_name} after {timeout:.0f}s")
            time.sleep(1.0)


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`prefect server start` on 127.0.0.1:<free port> and an `mlflow server` (started together).

    Yields the API URL, the tracking URI, a child-process env (PREFECT_API_URL, a shared QLIB_PREFECT_HOME) and
    the log folder.
    """
    root = tmp_path_factory.mktemp("prefect_server")
    port, mport = _free_port(), _free_port()
    api_url, mlflow_uri = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{mport}"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)
    env.update({"PREFECT_HOME": str(root / "prefect_home"), "PREFECT_UI_ENABLED": "false",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                **{f"PREFECT_SERVER_SERVICES_{s}_ENABLED": "false" for s in SERVICES_OFF},
                "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true"})
    log, mlog = root / "server.log", root / "mlflow.log"
    procs = []
    t0 = time.monotonic()
    try:
        procs.append(_start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log))
        procs.append(_start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mport),
                             "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "mlflow_artifacts")], env, mlog))
        _wait_http(f"{api_url}/health", procs[0], log)
        _wait_http(f"{mlflow_uri}/health", procs[1], mlog)
        print(f"prefect + mlflow servers healthy in {time.monotonic() - t0:.1f}s")
        child = {**env, "PREFECT_API_URL": api_url, "QLIB_PREFECT_HOME": str(root / "qp_home"),
                 "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
        child.pop("PREFECT_UI_ENABLED")
        yield {"api_url": api_url, "mlflow_uri": mlflow_uri, "env": child, "root": root}
    finally:
        for p in reversed(procs):
            _stop(p, timeout=5.0, first=signal.SIGTERM)


@pytest.fixture(scope="module")
def deployed(server: dict[str, Any]) -> dict[str, Any]:
    """`prefect work-pool create` + `prefect deploy --all` from deployments/prefect.yaml (run in the repo root).

    Records the rolling-retrain deployment's schedules and waits for the scheduler to create its runs; then
    pauses it (and deletes those runs) so that no scheduled retrain starts on the test workers.
    """
    env = server["env"]
    t0 = time.monotonic()
    _cli(["work-pool", "create", POOL, "--type", "process"], env)
    out = _cli(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], env)
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    info: dict[str, Any] = {"deploy_output": out, "deploy_s": time.monotonic() - t0}
    t0 = time.monotonic()
    with _client(server["api_url"]) as client:
        info["deployments"] = {f"{client.read_flow(d.flow_id).name}/{d.name}": d
                               for d in client.read_deployments()}
        rolling = info["deployments"]["qlib-rolling/rolling-retrain"]
        dfilter = DeploymentFilter(id=DeploymentFilterId(any_=[rolling.id]))
        t_end = time.monotonic() + 90
        runs: list[Any] = []
        while time.monotonic() < t_end:
            runs = [r for r in client.read_flow_runs(deployment_filter=dfilter) if r.state_name == "Scheduled"]
            if runs:
                break
            time.sleep(1.0)
        info["scheduled_runs"] = runs
        info["schedule_wait_s"] = time.monotonic() - t0
        print(f"deploy {info['deploy_s']:.1f}s, scheduler {info['schedule_wait_s']:.1f}s")
        client.pause_deployment(rolling.id)
        for r in client.read_flow_runs(deployment_filter=dfilter):
            if r.state is not None and r.state.is_scheduled():
                client.delete_flow_run(r.id)
    return info


@pytest.fixture(scope="module")
def workers(server: dict[str, Any], deployed: dict[str, Any]) -> Iterator[list[subprocess.Popen]]:
    """Two process workers on the pool (one flow run at a time each), sharing QLIB_PREFECT_HOME."""
    procs = []
    try:
        for name in ("a", "b"):
            procs.append(_start(["env", "--default-signal=INT", PREFECT, "worker", "start", "--pool", POOL,
                                 "--type", "process", "--limit", "1", "--name", f"worker-{name}"], server["env"],
                                server["root"] / f"worker-{name}.log"))
        yield procs
    finally:
        for p in procs:
            _stop(p)


def _worker_logs(server: dict[str, Any]) -> str:
    return "\n".join(f"--- worker-{n}\n{_tail(server['root'] / f'worker-{n}.log')}" for n in ("a", "b"))


def _write_yaml(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def _artifacts(client: Any, run_id: str) -> set[str]:
    out: set[str] = set()
    stack: list[str | None] = [None]
    while stack:
        for a in client.list_artifacts(run_id, stack.pop()):
            (stack.append(a.path) if a.is_dir else out.add(a.path))
    return out


# ------------------------------------------------------------------------------------------ tests
def test_deploy_all_registers_deployments_and_cron_schedule(deployed: dict[str, Any]) -> None:
    deps = deployed["deployments"]
    assert {"qlib-workflow/qlib-workflow", "qlib-rolling/rolling-retrain",
            "qlib-rolling-window/rolling-window"} <= set(deps)
    for d in deps.values():
        assert d.work_pool_name == POOL
    wf = deps["qlib-workflow/qlib-workflow"]
    assert wf.entrypoint == "flows/qlib_workflow.py:qlib_workflow"
    assert "config" in wf.parameter_openapi_schema["properties"]
    assert not wf.schedules
    rolling = deps["qlib-rolling/rolling-retrain"]
    assert {"config", "step", "rtype"} <= set(rolling.parameter_openapi_schema["properties"])
    assert rolling.parameters["rtype"] == "expanding"
    [sched] = rolling.schedules
    assert sched.active
    assert sched.schedule.cron == ROLLING_CRON
    assert sched.schedule.timezone == "America/New_York"
    # the server's scheduler created the upcoming retrain runs from the cron (weekdays 18:30 New York)
    assert deployed["scheduled_runs"], "the scheduler created no run for rolling-retrain"
    from zoneinfo import ZoneInfo

    for r in deployed["scheduled_runs"]:
        t = r.expected_start_time.astimezone(ZoneInfo("America/New_York"))
        assert (t.hour, t.minute, t.weekday() < 5) == (18, 30, True)


def test_deployment_run_from_cli_on_a_process_worker(server: dict[str, Any], workers: list, small_data: Path,
                                                     tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    env = server["env"]
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # a local store path, as a one-machine user has
    cfg_path = _write_yaml(tmp_path / "workflow.yaml", small_config(small_data, uri))
    out = _cli(["deployment", "run", "qlib-workflow/qlib-workflow", "--param", f"config={cfg_path}"], env)
    m = UUID_RE.search(out)
    assert m, out
    fr = _wait_flow_run(server["api_url"], m.group(0))
    assert fr.state.is_completed(), f"{fr.state_name}: {fr.state.message}\n{_worker_logs(server)}"
    assert fr.parameters == {"config": str(cfg_path)}
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("workflow")
    [run] = client.search_runs([exp.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{fr.id}'")
    assert run.info.status == "FINISHED"
    arts = _artifacts(client, run.info.run_id)
    assert "pred.pkl" in arts
    assert {"portfolio_analysis/report_normal_1day.pkl", "portfolio_analysis/port_analysis_1day.pkl"} <= arts
    assert "IC" in run.data.metrics


def _rolling_cfg(data_dir: Path, uri: str, n_windows: int = 3, step: int = 40) -> dict[str, Any]:
    """3 rolling test windows of ``step`` days from 2016-07-01 on the small data (10 boosting rounds)."""
    import pandas as pd

    from qlib_prefect.data.provider import LocalProvider

    cfg = small_config(data_dir, uri)
    task = cfg["task"]
    task["model"]["kwargs"]["num_boost_round"] = 10
    task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] = "2016-06-30"
    cal = LocalProvider(data_dir).calendar()
    i0 = int(cal.searchsorted(pd.Timestamp("2016-07-01")))
    end = str(cal[i0 + step * n_windows - 1].date())
    task["dataset"]["kwargs"]["segments"]["test"] = ["2016-07-01", end]
    bt = task["record"][2]["kwargs"]["config"]["backtest"]
    bt["start_time"], bt["end_time"] = "2016-07-01", end
    return cfg


def test_rolling_windows_on_two_workers_with_mlflow_server(server: dict[str, Any], workers: list,
                                                           small_data: Path, tmp_path: Path) -> None:
    """A 3-window rolling job: one flow run per window over 2 worker processes, MLflow on a tracking server."""
    from mlflow.tracking import MlflowClient

    env = server["env"]  # QLIB_PREFECT_HOME shared with the workers: the content store and task results
    mlflow_uri = server["mlflow_uri"]
    cfg_path = _write_yaml(tmp_path / "rolling.yaml", _rolling_cfg(small_data, mlflow_uri))
    out_json = tmp_path / "summary.json"
    # the documented switch: `qlib-prefect rolling --on-workers` (one flow run per window on the workers)
    r = subprocess.run([sys.executable, "-m", "qlib_prefect.cli.main", "rolling", str(cfg_path), "--step", "40",
                        "--rtype", "expanding", "--experiment-name", "rolling", "--on-workers",
                        "--json", str(out_json)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{r.stderr[-4000:]}\n{_worker_logs(server)}"
    summary = json.loads(out_json.read_text())
    disp = summary["dispatched"]
    assert sorted(d["window"] for d in disp) == [0, 1, 2]
    assert all(d["state"] == "Completed" for d in disp)
    # each window ran in a flow-run process started by one of the two workers, and both took part
    assert {d["worker_pid"] for d in disp} == {w.pid for w in workers}
    assert len({d["pid"] for d in disp}) == 3
    # the parent found every window done (Cached) in the shared store: nothing retrained here
    assert (summary["trained"], summary["cached"]) == (0, 3)
    client = MlflowClient(mlflow_uri)
    parent = client.get_run(summary["run_id"])
    assert parent.info.status == "FINISHED"
    assert {"pred.pkl", "label.pkl"} <= _artifacts(client, parent.info.run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3
    assert all("pred.pkl" in _artifacts(client, c.info.run_id) for c in children)
    assert summary["metrics"].get("IC") is not None
    # the rolling-retrain deployment from the CLI (its schedule is paused; manual runs still go) on a worker:
    # the data did not change, so every window is Cached and only a new summary run is written
    out = _cli(["deployment", "run", "qlib-rolling/rolling-retrain", "--param", f"config={cfg_path}",
                "--param", "step=40", "--param", "rtype=expanding", "--param", "experiment_name=rolling"], env)
    fr = _wait_flow_run(server["api_url"], UUID_RE.search(out).group(0))
    assert fr.state.is_completed(), f"{fr.state_name}: {fr.state.message}\n{_worker_logs(server)}"
    [retrain] = client.search_runs([parent.info.experiment_id],
                                   filter_string="tags.`qlib_prefect.rolling.kind` = 'rolling' and "
                                                 f"attributes.run_id != '{parent.info.run_id}'")
    assert retrain.info.status == "FINISHED"
    assert retrain.data.tags["qlib_prefect.rolling.trained"] == "0"
    assert retrain.data.metrics["IC"] == pytest.approx(summary["metrics"]["IC"], abs=1e-12)


def test_prefect_yaml_and_code_deployments_agree() -> None:
    """`qlib-prefect serve` builds from code what deployments/prefect.yaml declares (names, parameters, cron)."""
    from prefect.flows import load_flow_from_entrypoint

    from qlib_prefect.orchestration._deploy import build_deployments

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    declared = {d["name"]: d for d in spec["deployments"]}
    built = {d.name: d for d in build_deployments()}
    assert set(declared) == set(built) == {"qlib-workflow", "rolling-retrain", "rolling-window",
                                                                 "online-routine"}
    for name, d in built.items():
        y = declared[name]
        assert d.parameters == y["parameters"], name
        assert [s.schedule.cron for s in d.schedules] == [s["cron"] for s in y["schedules"]], name
        assert [s.schedule.timezone for s in d.schedules] == [s["timezone"] for s in y["schedules"]], name
        # both entrypoints load the same flow object
        yflow = load_flow_from_entrypoint(str(REPO / y["entrypoint"]) if ".py:" in y["entrypoint"]
                                          else y["entrypoint"])
        assert load_flow_from_entrypoint(d.entrypoint).name == yflow.name == d.flow_name
    # serve's options override the defaults; no cron -> no schedule
    [r] = build_deployments(config="/data/cfg.yaml", step=10, rtype="sliding", cron=None, names=["rolling-retrain"])
    assert r.parameters == {"config": "/data/cfg.yaml", "step": 10, "rtype": "sliding"} and not r.schedules


def test_jsonable_config_for_deployment_parameters() -> None:
    import numpy as np
    import pandas as pd

    from qlib_prefect.orchestration._deploy import jsonable_config

    cfg = {"segments": {"test": (pd.Timestamp("2020-01-02"), None)}, "n": np.int64(3),
           "t": pd.Timestamp("2020-01-02 10:30"), "p": Path("/x")}
    out = jsonable_config(cfg)
    assert out == {"segments": {"test": ["2020-01-02", None]}, "n": 3, "t": "2020-01-02T10:30:00", "p": "/x"}
    assert json.loads(json.dumps(out)) == out


def test_qlib_prefect_serve_runs_a_deployment(server: dict[str, Any], deployed: dict[str, Any], small_data: Path,
                                             tmp_path: Path) -> None:
    """`qlib-prefect serve` registers the deployments from code and runs a CLI-triggered flow run itself.

    Last in the module: the deployed (work-pool) versions are deleted first, so that no worker takes the run.
    """
    from mlflow.tracking import MlflowClient

    env = server["env"]
    with _client(server["api_url"]) as client:
        for name in ("qlib-workflow/qlib-workflow", "qlib-rolling/rolling-retrain"):
            client.delete_deployment(client.read_deployment_by_name(name).id)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg_path = _write_yaml(tmp_path / "workflow.yaml", small_config(small_data, uri, topk=5))
    log = tmp_path / "serve.log"
    proc = _start(["env", "--default-signal=INT", str(BIN / "qlib-prefect"), "serve", "--config", str(cfg_path),
                   "--only", "qlib-workflow", "--only", "rolling-retrain", "--no-schedule"], env, log, cwd=tmp_path)
    try:
        t_end = time.monotonic() + 120
        while "being served" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < t_end, _tail(log)
            time.sleep(0.5)
        with _client(server["api_url"]) as client:
            wf = client.read_deployment_by_name("qlib-workflow/qlib-workflow")
            rolling = client.read_deployment_by_name("qlib-rolling/rolling-retrain")
        assert wf.work_pool_name is None and wf.parameters == {"config": str(cfg_path)}
        assert wf.entrypoint == "qlib_prefect.orchestration._flow.qlib_workflow"
        assert not rolling.schedules  # --no-schedule
        out = _cli(["deployment", "run", "qlib-workflow/qlib-workflow"], env)  # the served default config
        fr = _wait_flow_run(server["api_url"], UUID_RE.search(out).group(0))
        assert fr.state.is_completed(), f"{fr.state_name}: {fr.state.message}\n{_tail(log)}"
    finally:
        _stop(proc)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("workflow").experiment_id],
                               filter_string=f"tags.`prefect.flow_run_id` = '{fr.id}'")
    assert "pred.pkl" in _artifacts(client, run.info.run_id)
