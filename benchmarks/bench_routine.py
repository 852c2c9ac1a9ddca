"""Benchmark: one online routine day without a retrain (append the day's CSV drop, extend the predictions, signal,
tomorrow's TopkDropout portfolio, promote, record) against a running ``prefect server``. Goal (issue 12): < 5 s.

The bundled S&P 500 sample is materialised as it was on 2017-06-30 (the walk-through's template: Alpha158 +
LightGBM, test window 2017-06-01 .. 2017-06-30, step 20), first-trained (not timed), then the next ``--days``
trading days are dropped one CSV per day and ``online_routine`` runs for each (timed, in one process as a served
deployment's flow run would: imports and the first Prefect client connection are paid on day 1). Then the last day
is re-run (every step Cached), and one more day is run through the CLI (``qlib-prefect online routine``: a new
process, imports included).

    python benchmarks/bench_routine.py [--days 3] [--out benchmarks/out/routine]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, sys, time
from pathlib import Path
import pandas as pd
sys.path.insert(0, str(Path(sys.argv[1]) / "examples"))
from online_walkthrough import CUT, FIELDS, template
from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.sample import load_sample_frame
from qlib_prefect.orchestration import online_routine

work, days = Path(sys.argv[2]), int(sys.argv[3])
data, drops = work / "data", work / "drops"
frame = load_sample_frame()
import_frame(frame[frame["date"] <= CUT], data, fields=FIELDS, markets={"sp500": "all-but:SPX"})
drops.mkdir(parents=True)
(work / "mlruns").mkdir()
config = {"qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
              "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
              "kwargs": {"uri": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"}}},
          "online": {"name": "bench_online", "source": str(drops), "step": 20, "rtype": "sliding", "trunc_days": 2,
                     "fields": FIELDS, "account": 1e8,
                     "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                  "kwargs": {"topk": 50, "n_drop": 5}}},
          "task": template()}
(work / "online.json").write_text(json.dumps(config))
t0 = time.perf_counter(); online_routine(config); init_s = time.perf_counter() - t0
later = sorted(frame.loc[frame["date"] > CUT, "date"].unique())[: days + 1]

def drop(day):
    rows = frame[frame["date"] == day].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
    rows.to_csv(drops / f"{pd.Timestamp(day).date()}.csv", index=False)

res = {"init_s": init_s, "days": []}
for day in later[:days]:
    drop(day)
    t0 = time.perf_counter(); out = online_routine(config); dt = time.perf_counter() - t0
    assert not out["new"], f"unexpected retrain on {out['date']}"
    res["days"].append({"date": out["date"], "wall_s": dt, "orders": out["orders"]})
t0 = time.perf_counter(); again = online_routine(config); res["rerun_cached_s"] = time.perf_counter() - t0
assert again == out
drop(later[days])
res["cli_day"] = str(pd.Timestamp(later[days]).date())
print("RESULT " + json.dumps(res), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    t0 = time.time()
    while time.time() - t0 < 180:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("prefect server did not become healthy in 180 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3, help="routine days timed (no retrain within 19 days)")
    ap.add_argument("--out", default=str(HERE / "out" / "routine"))
    a = ap.parse_args()
    work = Path(a.out).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server, url = _start_server(work / "server_home")
    env = {**os.environ, "PREFECT_API_URL": url, "QLIB_PREFECT_HOME": str(work / "home"),
           "PREFECT_HOME": str(work / "prefect"), "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    try:
        load0 = os.getloadavg()
        p = subprocess.run([sys.executable, "-c", _CHILD, str(HERE.parent), str(work), str(a.days)], env=env,
                           capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            raise SystemExit(f"routine benchmark failed:\n{p.stderr[-4000:]}")
        res = json.loads(line[len("RESULT "):])
        cfg = work / "online.yaml"
        import yaml

        cfg.write_text(yaml.safe_dump(json.loads((work / "online.json").read_text())))
        t0 = time.perf_counter()
        c = subprocess.run([str(Path(sys.executable).with_name("qlib-prefect")), "online", "routine", str(cfg)],
                           env=env, capture_output=True, text=True)
        res["cli_day_wall_s"] = time.perf_counter() - t0
        if c.returncode != 0:
            raise SystemExit(f"CLI routine failed:\n{c.stderr[-4000:]}")
        res["loadavg_before"], res["loadavg_after"] = load0, os.getloadavg()
        res["cpus"] = os.cpu_count()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    days = [d["wall_s"] for d in res["days"]]
    print(json.dumps(res, indent=1))
    print(f"routine day (in-process, against the server): {', '.join(f'{x:.2f}' for x in days)} s "
          f"(median {sorted(days)[len(days) // 2]:.2f} s); cached re-run {res['rerun_cached_s']:.2f} s; "
          f"CLI day {res['cli_day_wall_s']:.2f} s; first train {res['init_s']:.1f} s; load {res['loadavg_before']}")


if __name__ == "__main__":
    main()
