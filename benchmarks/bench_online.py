"""``qlib-prefect online simulate`` vs qlib's own ``OnlineManager.simulate`` (RollingStrategy + RollingGen(step=20,
ROLL_SD) + TrainerR), 2017-09-01 .. 2017-11-30, on the bundled S&P 500 sample in qlib format.

Template: qlib's LightGBM/Alpha158 example (train 2013-02-08..2015-12-31, valid 2016, Alpha158 fitted on
2013-02-08..2015-12-31, ``num_threads: 2``); both tools roll it with step 20 (sliding) from 2017-09-01, 4 windows.
qlib: one process, ``OnlineManager(RollingStrategy(...), TrainerR(), begin_time).simulate(end_time)`` with a
``SignalRecord`` per window, MLflow file store (its run is long: run once, its figures cached in
``benchmarks/out/online/qlib.json``; ``--rerun-qlib`` to measure again). Ours: ``online_simulate`` in a fresh
process (``refit_processors: false``, the same processors as qlib), which also runs SigAnaRecord + a PortAnaRecord
backtest on the signals and builds report.html (qlib's run does neither):

* cold: empty ``QLIB_PREFECT_HOME`` (no window, handler or raw-feature cache);
* warm: the identical re-run;
* extend: 2017-09-01 .. 2017-10-31 first (not timed), then 2017-09-01 .. 2017-11-30 (timed): the month added.

Signals are compared with qlib's (de-duplicated by date and instrument, D3). The section between the
``bench_online`` markers of BENCHMARKS.md is rewritten.

    .venv/bin/python benchmarks/bench_online.py [--rerun-qlib] [--no-qlib] [--no-write]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from _measure import machine_info, measure, utc_now, write_section  # benchmarks/ (the script's folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "online"
DEFAULT_ORACLE = "/work/qlib-venv/bin/python"
EXAMPLE = ROOT / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
START, END = "<!-- bench_online:start -->", "<!-- bench_online:end -->"
SIM_START, SIM_END, SIM_MID, STEP = "2017-09-01", "2017-11-30", "2017-10-31", 20

_QLIB_SCRIPT = r'''
import json, os, sys, time
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
t0 = time.perf_counter()
import qlib
from qlib.model.trainer import TrainerR
from qlib.workflow.online.manager import OnlineManager
from qlib.workflow.online.strategy import RollingStrategy
from qlib.workflow.task.gen import RollingGen
cfg = json.load(open(sys.argv[1]))
start, end, step, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
qlib.init(provider_uri=cfg["qlib_init"]["provider_uri"], region="us",
          exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                       "kwargs": {"uri": "file:" + os.path.abspath("mlruns"), "default_exp_name": "Experiment"}})
strategy = RollingStrategy("bench_online", cfg["task"], RollingGen(step=step, rtype=RollingGen.ROLL_SD))
manager = OnlineManager(strategy, trainer=TrainerR(), begin_time=start)
t1 = time.perf_counter()
signals = manager.simulate(end_time=end)
t2 = time.perf_counter()
signals = signals[~signals.index.duplicated(keep="last")].sort_index()
signals.to_pickle(out)
hist = [[str(k.date()), [r.info["id"] for r in v[strategy]]] for k, v in manager.history.items()]
print(json.dumps({"simulate_s": t2 - t1, "total_s": t2 - t0, "signal_rows": len(signals), "history": len(hist)}))
'''

_OURS_SCRIPT = r'''
import json, sys, time
t0 = time.perf_counter()
from qlib_prefect.orchestration import online_simulate
s = online_simulate(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"total_s": time.perf_counter() - t0, "trained": s["trained"], "cached": s["cached"],
                  "windows": len(s["windows"]), "run_id": s["run_id"], "tracking_uri": s["tracking_uri"],
                  "signal_rows": s["signal_rows"], "metrics": s["metrics"]}))
'''


def make_configs(data: Path, mlflow_uri: str) -> tuple[dict, dict]:
    """(qlib's config: the template with the first window as test segment; ours: the online config)."""
    from qlib_prefect.config.loader import load_config
    from qlib_prefect.data.provider import LocalProvider

    os.environ["QLIB_PREFECT_SAMPLE_DIR"] = str(data)
    raw = load_config(EXAMPLE).raw
    cal = LocalProvider(data).calendar()
    i0 = int(cal.searchsorted(pd.Timestamp(SIM_START)))
    first_end = str(cal[i0 + STEP - 1].date())
    task = copy.deepcopy(raw["task"])
    seg = task["dataset"]["kwargs"]["segments"]
    seg["train"] = [str(pd.Timestamp(x).date()) for x in seg["train"]]
    seg["valid"] = [str(pd.Timestamp(x).date()) for x in seg["valid"]]
    seg["test"] = [SIM_START, first_end]
    h = task["dataset"]["kwargs"]["handler"]["kwargs"]
    for k in ("start_time", "fit_start_time", "fit_end_time"):
        h[k] = str(pd.Timestamp(h[k]).date())
    h["end_time"] = first_end
    qinit = {"provider_uri": str(data), "region": "us"}
    qcfg = {"qlib_init": qinit, "task": {**copy.deepcopy(task), "record": [r for r in task["record"]
                                                                         if r["class"] == "SignalRecord"]}}
    # the backtest goes to online.port_analysis: simulate sets its span (a task PortAnaRecord's dates are validated
    # against the template's test segment)
    task["record"] = [r for r in task["record"] if r["class"] != "PortAnaRecord"]
    port = copy.deepcopy(raw.get("port_analysis_config") or {})
    for k in ("start_time", "end_time"):
        port.get("backtest", {}).pop(k, None)
    ours = {"qlib_init": {**qinit, "exp_manager": {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                                   "kwargs": {"uri": mlflow_uri, "default_exp_name": "Experiment"}}},
            "online": {"name": "bench_online", "source": str(data), "step": STEP, "rtype": "sliding",
                       "refit_processors": False, "port_analysis": port},
            "task": task}
    return qcfg, ours


def _prefect_home() -> Path:
    """A Prefect home whose database exists (created once, outside any measurement)."""
    home = OUT / "prefect_home"
    if not (home / "prefect.db").exists():
        code = ("from qlib_prefect.orchestration import apply_env_defaults\n"
                "from qlib_prefect.tweaks import prefect_server as s\n"
                "apply_env_defaults(); s.start_api_server(); s.wait_api_server(); s.stop_api_server()")
        env = {**os.environ, "PREFECT_HOME": str(home)}
        env.pop("PREFECT_API_URL", None)
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return home


def run_qlib(oracle: str, cfg: dict, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps(cfg, indent=1))
    script = work / "qlib_online.py"
    script.write_text(_QLIB_SCRIPT)
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = measure([oracle, str(script), str(work / "config.json"), SIM_START, SIM_END, str(STEP),
                 str(work / "signals.pkl")], env=env, cwd=str(work))
    if r["returncode"] != 0:
        raise SystemExit(f"qlib simulate failed:\n{r['stderr_tail']}")
    print(f"qlib: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, load {r.get('loadavg_1min_start')}", flush=True)
    return r


def run_ours(cfg_yaml: Path, end: str, work: Path, home: Path, label: str) -> dict:
    script = work / "ours_online.py"
    script.write_text(_OURS_SCRIPT)
    env = {**os.environ, "QLIB_PREFECT_HOME": str(home), "PREFECT_HOME": str(_prefect_home()),
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    r = measure([sys.executable, str(script), str(cfg_yaml), SIM_START, end], env=env, cwd=str(work))
    if r["returncode"] != 0:
        raise SystemExit(f"online simulate {label} failed:\n{r['stderr_tail']}")
    print(f"ours {label}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, trained {r['result']['trained']}/"
          f"{r['result']['windows']}, load {r.get('loadavg_1min_start')}", flush=True)
    return r


def compare(ours: dict, qlib_signals: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ours["tracking_uri"])
    a = pd.read_pickle(client.download_artifacts(ours["run_id"], "pred.pkl"))
    a = a.iloc[:, 0] if isinstance(a, pd.DataFrame) else a
    b = pd.read_pickle(qlib_signals)
    b = b.iloc[:, 0] if isinstance(b, pd.DataFrame) else b
    b = b[b.index.get_level_values("datetime") <= pd.Timestamp(SIM_END)]
    for s in (a, b):
        s.index = s.index.set_levels(s.index.levels[0].as_unit("ns"), level=0)
    x, y = a.align(b, join="outer")
    both = x.notna() & y.notna()
    return {"rows_ours": len(a), "rows_qlib": len(b), "rows_common": int(both.sum()),
            "max_abs_diff": float((x[both] - y[both]).abs().max()), "corr": float(x[both].corr(y[both]))}


def render(res: dict, mach: dict) -> str:
    q = res.get("qlib")
    lines = [START, "## Online simulate: `online_simulate` vs qlib's `OnlineManager.simulate` "
             "(`benchmarks/bench_online.py`)", "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM, load "
             f"average at the end {mach['loadavg']} (the 1-min load at each run's start is in the table; the runs "
             "follow each other, so a run's own predecessor shows in it: more than ~1 means other work shared the "
             "machine and its wall time is inflated, CPU seconds are steadier).",
             "* Command: `.venv/bin/python benchmarks/bench_online.py`; simulate 2017-09-01 .. 2017-11-30, "
             "RollingGen(step=20, sliding), TrainerR, qlib's LightGBM/Alpha158 example on the bundled S&P 500 "
             "sample (4 windows). qlib 0.9.7 (`/work/qlib-venv`): `OnlineManager.simulate`, SignalRecord per "
             "window, MLflow file store. Ours: `online_simulate` (ephemeral Prefect, SQLite MLflow), which also "
             "runs SigAnaRecord + PortAnaRecord (TopkDropout backtest) on the signals and builds report.html.",
             "", "| run | tool | wall (s) | CPU (s) | windows trained / cached | load (1 min) | speed-up vs qlib |",
             "|---|---|---:|---:|---:|---:|---:|"]
    rows = [("simulate (cold)", "qlib 0.9.7", q),
            ("simulate (cold: empty cache)", "qlib-prefect", res.get("cold")),
            ("simulate (warm: identical re-run)", "qlib-prefect", res.get("warm")),
            ("extend 2017-10-31 -> 2017-11-30", "qlib-prefect", res.get("extend"))]
    for name, tool, x in rows:
        if x is None:
            continue
        r = x.get("result") or {}
        tc = f"{r['trained']} / {r['cached']}" if "trained" in r else "4 / 0"
        sp = (f"{q['wall_s'] / x['wall_s']:.1f}x (CPU {q['cpu_s'] / x['cpu_s']:.1f}x)" if q and x is not q else "")
        lines.append(f"| {name} | {tool} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {tc} | "
                     f"{x.get('loadavg_1min_start', '-')} | {sp} |")
    p = res.get("parity")
    if p:
        lines += ["", f"* Signals vs qlib's (de-duplicated): {p['rows_common']} common rows of {p['rows_ours']} "
                  f"(ours) / {p['rows_qlib']} (qlib), max abs diff {p['max_abs_diff']:.2e}, correlation "
                  f"{p['corr']:.6f}."]
    if q and res.get("cold"):
        lines.append(f"* Goal >= 10x faster than qlib (cold): {q['wall_s'] / res['cold']['wall_s']:.1f}x wall, "
                     f"{q['cpu_s'] / res['cold']['cpu_s']:.1f}x CPU.")
    lines += ["* Where the time goes: qlib rebuilds Alpha158 over the whole handler span for every window it "
              "trains; ours computes the raw features once for the windows to train, slices them per window, "
              "fits the windows as parallel Prefect tasks and keeps each window in the content store, so a "
              "re-run or an extension trains only the windows it has not seen.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rerun-qlib", action="store_true", help="measure qlib again (default: its cached figures)")
    p.add_argument("--no-qlib", action="store_true", help="do not run qlib (ours only)")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true", help="rewrite the section from out/online/last.json")
    p.add_argument("--tag", default="", help="run ours in out/online/ours-TAG and save last-TAG.json")
    a = p.parse_args(argv)
    if a.render_only:
        last = json.loads((OUT / "last.json").read_text())
        text = render(last["results"], last["machine"])
        print(text)
        if not a.no_write:
            write_section(ROOT / "BENCHMARKS.md", text, START, END)
        return 0

    from qlib_prefect.data.sample import sample_data_dir

    OUT.mkdir(parents=True, exist_ok=True)
    data = Path(sample_data_dir(HERE / "out" / "sp500_qlib"))
    res: dict = {}
    ours_dir = OUT / (f"ours-{a.tag}" if a.tag else "ours")
    shutil.rmtree(ours_dir, ignore_errors=True)
    ours_dir.mkdir(parents=True)
    qcfg, ocfg = make_configs(data, f"sqlite:///{ours_dir / 'mlflow.db'}")
    cfg_yaml = ours_dir / "online.yaml"
    cfg_yaml.write_text(yaml.safe_dump(ocfg, sort_keys=False))
    qcache = OUT / "qlib.json"
    oracle = os.environ.get("QLIB_ORACLE_PYTHON", DEFAULT_ORACLE)
    if qcache.exists() and not a.rerun_qlib:
        res["qlib"] = json.loads(qcache.read_text())
    elif not a.no_qlib and Path(oracle).exists():
        res["qlib"] = run_qlib(oracle, qcfg, OUT / "qlib")
        qcache.write_text(json.dumps(res["qlib"], default=str))
    res["cold"] = run_ours(cfg_yaml, SIM_END, ours_dir, ours_dir / "home", "cold")
    res["warm"] = run_ours(cfg_yaml, SIM_END, ours_dir, ours_dir / "home", "warm")
    run_ours(cfg_yaml, SIM_MID, ours_dir, ours_dir / "home_ext", "extend (first part)")
    res["extend"] = run_ours(cfg_yaml, SIM_END, ours_dir, ours_dir / "home_ext", "extend")
    if (OUT / "qlib" / "signals.pkl").exists():
        res["parity"] = compare(res["cold"]["result"], OUT / "qlib" / "signals.pkl")
        print(f"parity: {res['parity']}", flush=True)
    mach = machine_info()
    last = OUT / (f"last-{a.tag}.json" if a.tag else "last.json")
    last.write_text(json.dumps({"machine": mach, "results": res}, indent=1, default=str))
    text = render(res, mach)
    print(text)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
