"""Cache behaviour across separate processes: ``qlib-prefect run`` twice on the same QLIB_PREFECT_HOME.

The subprocesses talk to the session's Prefect test server (``PREFECT_API_URL``) so no ephemeral server is started
per process; cache hits come from the result files under ``$QLIB_PREFECT_HOME``, as for users.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from orch_helpers import END, copy_data, env_for_subprocess, make_small_data, small_config

pytestmark = [pytest.mark.slow]

STAGES = ["dataset", "train", "record.0.SignalRecord", "record.1.SigAnaRecord", "record.2.PortAnaRecord"]
CLI = [sys.executable, "-m", "qlib_prefect.cli.main"]


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _run(cfg_path: Path, env: dict, tmp: Path, *extra: str) -> dict:
    out = tmp / f"summary-{len(list(tmp.glob('summary-*')))}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, "run", str(cfg_path), "--json", str(out), *extra], env=env, capture_output=True,
                          text=True, timeout=600)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MLflow run id:" in proc.stdout and "mlflow ui --backend-store-uri" in proc.stdout
    summary = json.loads(out.read_text())
    # `elapsed:` is what the user waited: from the command's start (imports, config, server) to the report
    assert summary["flow_elapsed_s"] < summary["elapsed_s"] <= wall
    assert f"elapsed:         {summary['elapsed_s']:.1f} s" in proc.stdout
    return summary


def _states(summary: dict) -> dict[str, str]:
    return {k: v["state"] for k, v in summary["stages"].items()}


def test_rerun_strategy_change_and_refresh_across_processes(prefect_api, small_data, tmp_path) -> None:
    env = env_for_subprocess(prefect_api, tmp_path / "home")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg = _write(tmp_path / "wf.yaml", small_config(small_data, uri))
    first = _run(cfg, env, tmp_path)
    assert _states(first) == dict.fromkeys(STAGES, "Completed")

    plan = subprocess.run([*CLI, "run", str(cfg), "--plan"], env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-2000:]
    rows = [line.split() for line in plan.stdout.splitlines()[1:] if line.strip()]
    assert [(r[0], r[1]) for r in rows] == [(s, "yes") for s in STAGES]

    second = _run(cfg, env, tmp_path)
    assert _states(second) == dict.fromkeys(STAGES, "Cached")
    assert second["metrics"] == first["metrics"] and second["run_id"] != first["run_id"]

    strat = _write(tmp_path / "wf_topk.yaml", small_config(small_data, uri, topk=7))
    third = _run(strat, env, tmp_path)
    assert _states(third) == {**dict.fromkeys(STAGES[:-1], "Cached"), STAGES[-1]: "Completed"}
    assert third["metrics"]["IC"] == first["metrics"]["IC"]

    forced = _run(cfg, env, tmp_path, "--refresh")
    assert _states(forced) == dict.fromkeys(STAGES, "Completed")
    assert forced["metrics"] == pytest.approx(first["metrics"])


def test_appended_data_recomputes_everything(prefect_api, session_tmp, tmp_path) -> None:
    from qlib_prefect.data.importer import import_frame
    from qlib_prefect.data.sample import SAMPLE_BENCHMARK, load_sample_frame

    data = copy_data(make_small_data(session_tmp / "orch_small_data_may", end="2017-05-31"), tmp_path / "data")
    env = env_for_subprocess(prefect_api, tmp_path / "home")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg = _write(tmp_path / "wf.yaml", small_config(data, uri))
    before = _run(cfg, env, tmp_path)
    assert _states(_run(cfg, env, tmp_path)) == dict.fromkeys(STAGES, "Cached")

    df = load_sample_frame()
    codes = sorted(p.name.upper() for p in (data / "features").iterdir())
    june = df[df["symbol"].isin([*codes, SAMPLE_BENCHMARK]) & (df["date"] > "2017-05-31") & (df["date"] <= END)]
    import_frame(june, data, fields=["open", "high", "low", "close", "volume"], append=True, quality=False)
    after = _run(cfg, env, tmp_path)
    assert _states(after) == dict.fromkeys(STAGES, "Completed")
    assert after["metrics"]["IC"] != before["metrics"]["IC"]


def test_run_without_api_url_starts_and_stops_a_temporary_server(small_data, tmp_path) -> None:
    """No PREFECT_API_URL: the CLI starts Prefect's local API server at once (it boots while the data loads), runs
    the flow against it and stops it on exit."""
    import os
    import re
    import socket

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(QLIB_PREFECT_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"))
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg = _write(tmp_path / "wf.yaml", small_config(small_data, uri))
    out = tmp_path / "summary.json"
    proc = subprocess.run([*CLI, "run", str(cfg), "--json", str(out)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = re.search(r"Prefect API: temporary local server at http://127\.0\.0\.1:(\d+)/api", proc.stdout)
    assert m, proc.stdout[-2000:]
    assert _states(json.loads(out.read_text())) == dict.fromkeys(STAGES, "Completed")
    assert (tmp_path / "prefect" / "prefect.db").exists()  # the flow run was recorded by that server
    with socket.socket() as sock:  # and the server is gone with the command
        assert sock.connect_ex(("127.0.0.1", int(m.group(1)))) != 0

    bad = {**env, "QLIB_PREFECT_EARLY_SERVER": "0"}  # opt-out: Prefect starts its own server; no line printed
    proc = subprocess.run([*CLI, "run", str(cfg), "--json", str(out)], env=bad, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "temporary local server" not in proc.stdout
    assert _states(json.loads(out.read_text())) == dict.fromkeys(STAGES, "Cached")


def test_no_early_server_when_a_prefect_settings_file_may_set_the_api_url(tmp_path) -> None:
    """A profile (or prefect.toml / .env in the working directory) naming an API URL wins: the CLI does not start a
    temporary server and leaves the choice to Prefect."""
    import os

    code = ("from qlib_prefect.tweaks import prefect_server as s\n"
            "started = s.start_api_server(); s.stop_api_server(); print(started)")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_PROFILES_PATH")}

    def started(home: Path, cwd: Path) -> str:
        env["PREFECT_HOME"] = str(home)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    plain = tmp_path / "plain"
    plain.mkdir()
    assert started(tmp_path / "home0", plain) == "True"
    home = tmp_path / "home1"
    home.mkdir()
    (home / "profiles.toml").write_text('active = "srv"\n[profiles.srv]\nPREFECT_API_URL = "http://x:4200/api"\n')
    assert started(home, plain) == "False"
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "prefect.toml").write_text('[api]\nurl = "http://x:4200/api"\n')
    assert started(tmp_path / "home0", proj) == "False"


def test_temporary_server_dies_with_a_killed_command(tmp_path) -> None:
    """SIGKILL skips atexit: the server still goes (parent-death signal), no orphan keeps the port."""
    import os
    import signal
    import socket
    import time

    code = ("from qlib_prefect.tweaks import prefect_server as s\n"
            "s.start_api_server(); s.wait_api_server(); print(s.server_url(), flush=True)\n"
            "import time; time.sleep(600)")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) == 0  # the server answers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the server on port {port} outlived its killed parent")


def test_damaged_cache_entry_and_edited_data_recompute(prefect_api, small_data, tmp_path) -> None:
    """A cached entry that lost ``pred.pkl`` (``_COMPLETE`` still there) is recomputed, not published incomplete;
    a .bin edited in place with its size and mtime restored invalidates every stage."""
    import os

    from mlflow.tracking import MlflowClient

    data = copy_data(small_data, tmp_path / "data")
    env = env_for_subprocess(prefect_api, tmp_path / "home")
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cfg = _write(tmp_path / "wf.yaml", small_config(data, uri))
    first = _run(cfg, env, tmp_path)
    (pred,) = (tmp_path / "home" / "store").rglob("pred.pkl")
    pred.unlink()
    assert (pred.parent.parent / "_COMPLETE").exists()
    second = _run(cfg, env, tmp_path)
    assert _states(second)["record.0.SignalRecord"] == "Completed"
    assert _states(second)["train"] == "Cached"
    assert second["metrics"] == pytest.approx(first["metrics"])
    names = {a.path for a in MlflowClient(uri).list_artifacts(second["run_id"])}
    assert "pred.pkl" in names

    close = data / "features" / sorted(os.listdir(data / "features"))[0] / "close.day.bin"
    st = close.stat()
    raw = bytearray(close.read_bytes())
    raw[-4:] = bytes(b ^ 0x01 for b in raw[-4:])
    close.write_bytes(bytes(raw))
    os.utime(close, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = _run(cfg, env, tmp_path)
    assert _states(third) == dict.fromkeys(STAGES, "Completed")
