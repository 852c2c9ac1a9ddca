"""``qlib-prefect rolling`` vs qlib's own rolling (RollingGen + TrainerR + RecorderCollector + RollingGroup).

Same data (the bundled S&P 500 sample in qlib format), same template (qlib's LightGBM/Alpha158 example: train
2013-02-08..2015-12-31, valid 2016-01..06, test from 2016-07-01, handler to 2018-02-07), same windows:

* ``3x120``: 3 expanding windows of 120 trading days;
* ``10x30``: 10 expanding windows of 30 trading days (``--windows10``).

Records per window: ``SignalRecord`` (+ ``SigAnaRecord`` on the merged predictions in both tools; the
portfolio backtest is left out of both, so the figures are the retraining itself). qlib: one process running
``RollingGen(step).generate`` -> ``TrainerR(...)(tasks)`` -> ``RecorderCollector(process_list=RollingGroup())``
(as in qlib's ``examples/model_rolling``); ours: ``qlib-prefect rolling CONFIG --step N`` in a fresh process,
cold (empty ``QLIB_PREFECT_HOME``) and warm (identical re-run). Merged predictions are compared row by row.
The section between the ``bench_rolling`` markers of BENCHMARKS.md is rewritten.

    .venv/bin/python benchmarks/bench_rolling.py [--windows10] [--skip-qlib] [--no-write]
"""

from __future__ import annotations

import argparse
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
OUT = HERE / "out" / "rolling"
DEFAULT_ORACLE = "/work/qlib-venv/bin/python"
EXAMPLE = ROOT / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
START, END = "<!-- bench_rolling:start -->", "<!-- bench_rolling:end -->"
TEST_START = "2016-07-01"

_QLIB_SCRIPT = r'''
import json, os, sys, time
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
t0 = time.perf_counter()
import qlib
from qlib.model.ens.group import RollingGroup
from qlib.model.trainer import TrainerR
from qlib.workflow import R
from qlib.workflow.record_temp import SigAnaRecord
from qlib.workflow.task.collect import RecorderCollector
from qlib.workflow.task.gen import RollingGen
cfg = json.load(open(sys.argv[1]))
step, out = int(sys.argv[2]), sys.argv[3]
qlib.init(provider_uri=cfg["qlib_init"]["provider_uri"], region="us",
          exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                       "kwargs": {"uri": "file:" + os.path.abspath("mlruns"), "default_exp_name": "Experiment"}})
task = cfg["task"]
tasks = RollingGen(step=step, rtype=RollingGen.ROLL_EX).generate(task)
t1 = time.perf_counter()
TrainerR(experiment_name="rolling")(tasks)
t2 = time.perf_counter()
def rec_key(rec):
    t = rec.load_object("task")
    return t["model"]["class"], t["dataset"]["kwargs"]["segments"]["test"]
res = RecorderCollector(experiment="rolling", rec_key_func=rec_key, process_list=RollingGroup(),
                        artifacts_path={"pred": "pred.pkl", "label": "label.pkl"})()
pred, label = res["pred"][("LGBModel",)], res["label"][("LGBModel",)]
with R.start(experiment_name="rolling_summary"):
    R.save_objects(**{"pred.pkl": pred, "label.pkl": label})
    SigAnaRecord(R.get_recorder(), ana_long_short=False, ann_scaler=252).generate()
    metrics = R.get_recorder().list_metrics()
t3 = time.perf_counter()
pred.to_pickle(out)
print(json.dumps({"windows": len(tasks), "train_s": t2 - t1, "collect_s": t3 - t2, "total_s": t3 - t0,
                  "metrics": metrics}))
'''



def make_config(data: Path, step: int, n: int, mlflow_uri: str) -> dict:
    from qlib_prefect.data.provider import LocalProvider

    os.environ["QLIB_PREFECT_SAMPLE_DIR"] = str(data)
    from qlib_prefect.config.loader import load_config

    cfg = load_config(EXAMPLE).raw
    cal = LocalProvider(data).calendar()
    i0 = int(cal.searchsorted(pd.Timestamp(TEST_START)))
    end = str(cal[i0 + step * n - 1].date())
    task = cfg["task"]
    task["dataset"]["kwargs"]["segments"] = {"train": ["2013-02-08", "2015-12-31"],
                                            "valid": ["2016-01-01", "2016-06-30"], "test": [TEST_START, end]}
    h = task["dataset"]["kwargs"]["handler"]["kwargs"]
    for k in ("start_time", "end_time", "fit_start_time", "fit_end_time"):
        h[k] = str(pd.Timestamp(h[k]).date())
    task["record"] = [r for r in task["record"] if r["class"] in ("SignalRecord", "SigAnaRecord")]
    return {"qlib_init": {"provider_uri": str(data), "region": "us",
                          "exp_manager": {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                          "kwargs": {"uri": mlflow_uri, "default_exp_name": "Experiment"}}},
            "task": task}


def run_qlib(measure, oracle: str, cfg_json: Path, step: int, work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    script = work / "qlib_rolling.py"
    script.write_text(_QLIB_SCRIPT)
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    r = measure([oracle, str(script), str(cfg_json), str(step), str(work / "pred.pkl")], env=env, cwd=str(work))
    if r["returncode"] != 0:
        raise SystemExit(f"qlib rolling failed:\n{r['stderr_tail']}")
    print(f"qlib step {step}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, load {r.get('loadavg_1min_start')}",
          flush=True)
    return r


def _prefect_home() -> Path:
    """A Prefect home whose database exists (created once, outside any measurement), as after a user's first run:
    creating and migrating a new Prefect database takes ~7 s on this machine, once per installation."""
    home = OUT / "prefect_home"
    if not (home / "prefect.db").exists():
        code = ("from qlib_prefect.orchestration import apply_env_defaults\n"
                "from qlib_prefect.tweaks import prefect_server as s\n"
                "apply_env_defaults(); s.start_api_server(); s.wait_api_server(); s.stop_api_server()")
        env = {**os.environ, "PREFECT_HOME": str(home)}
        env.pop("PREFECT_API_URL", None)
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return home


def run_ours(measure, cfg_yaml: Path, step: int, work: Path, home: Path, label: str) -> dict:
    out = work / f"{label}.json"
    cli = Path(sys.executable).with_name("qlib-prefect")
    env = {**os.environ, "QLIB_PREFECT_HOME": str(home), "PREFECT_HOME": str(_prefect_home()),
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("PREFECT_API_URL", None)
    r = measure([str(cli), "rolling", str(cfg_yaml), "--step", str(step), "--rtype", "expanding", "--json",
                 str(out)], env=env, cwd=str(work))
    if r["returncode"] != 0:
        raise SystemExit(f"qlib-prefect rolling {label} failed:\n{r['stderr_tail']}")
    r["summary"] = json.loads(out.read_text())
    print(f"ours {label} step {step}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, trained "
          f"{r['summary']['trained']}, load {r.get('loadavg_1min_start')}", flush=True)
    return r


def compare(ours_summary: dict, qlib_pred: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(ours_summary["tracking_uri"])
    ours = pd.read_pickle(client.download_artifacts(ours_summary["run_id"], "pred.pkl"))
    ref = pd.read_pickle(qlib_pred)
    ours.index = ours.index.set_levels(ours.index.levels[0].as_unit("ns"), level=0)
    ref.index = ref.index.set_levels(ref.index.levels[0].as_unit("ns"), level=0)
    a, b = ours["score"].align(ref["score"], join="outer")
    both = a.notna() & b.notna()
    diff = (a[both] - b[both]).abs()
    return {"rows_ours": len(ours), "rows_qlib": len(ref), "rows_common": int(both.sum()),
            "max_abs_diff": float(diff.max()), "corr": float(a[both].corr(b[both]))}


def scenario(measure, data: Path, step: int, n: int, oracle: str | None, skip_qlib: bool) -> dict:
    name = f"{n}x{step}"
    work = OUT / name
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"windows": n, "step": step}
    cfg = make_config(data, step, n, f"sqlite:///{work / 'ours' / 'mlflow.db'}")
    cfg_json = work / "config.json"
    cfg_json.write_text(json.dumps(cfg, indent=1))
    qcache = work / "qlib.json"
    if skip_qlib and qcache.exists():
        res["qlib"] = json.loads(qcache.read_text())
    elif oracle and Path(oracle).exists():
        res["qlib"] = run_qlib(measure, oracle, cfg_json, step, work / "qlib")
        qcache.write_text(json.dumps(res["qlib"], default=str))
    ours_dir = work / "ours"
    shutil.rmtree(ours_dir, ignore_errors=True)
    ours_dir.mkdir(parents=True)
    cfg_yaml = work / "config.yaml"
    cfg_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))
    home = ours_dir / "home"
    res["cold"] = run_ours(measure, cfg_yaml, step, ours_dir, home, "cold")
    res["warm"] = run_ours(measure, cfg_yaml, step, ours_dir, home, "warm")
    if (work / "qlib" / "pred.pkl").exists():
        res["parity"] = compare(res["cold"]["summary"], work / "qlib" / "pred.pkl")
        print(f"{name} parity: {res['parity']}", flush=True)
    saved = {k: ({kk: vv for kk, vv in v.items() if kk != "summary"} if isinstance(v, dict) else v)
             for k, v in res.items()}
    (work / "result.json").write_text(json.dumps(saved, indent=1, default=str))
    return res


def render(results: dict, mach: dict) -> str:
    lines = [START, "## Rolling retraining: `qlib-prefect rolling` vs qlib's rolling (`benchmarks/bench_rolling.py`)",
             "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM; "
             "load average "
             f"at the end {mach['loadavg']} (the 1-min load average at each run's start is in the table; above ~2 the "
             "2 CPUs were shared with other work and wall times are inflated, CPU seconds are the steadier figure).",
             "* Command: `.venv/bin/python benchmarks/bench_rolling.py [--windows10]`; qlib 0.9.7 in "
             "`/work/qlib-venv` (RollingGen + TrainerR + RecorderCollector + RollingGroup, MLflow file store, one "
             "process); ours: `qlib-prefect rolling CONFIG --step N --rtype expanding` (ephemeral Prefect, SQLite "
             "MLflow, 2 windows concurrently), cold = empty QLIB_PREFECT_HOME (no stage, handler or raw-feature "
             "cache; the Prefect database exists, the MLflow store is new), warm = identical re-run.",
             "* Template: qlib's LightGBM/Alpha158 example on the bundled sample (train 2013-02-08..2015-12-31, valid "
             "2016-01..06, test from 2016-07-01, handler 2013-02-08..2018-02-07, `num_threads: 2`); records: "
             "SignalRecord per window, SigAnaRecord on the merged predictions (no backtest in either tool).", "",
             "| windows | tool | wall (s) | CPU (s) | peak RSS (MB) | load (1 min) | speed-up vs qlib |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        q = r.get("qlib")
        for tool, key in (("qlib 0.9.7", "qlib"), ("qlib-prefect, cold", "cold"), ("qlib-prefect, warm", "warm")):
            x = r.get(key)
            if x is None:
                continue
            sp = (f"{q['wall_s'] / x['wall_s']:.1f}x (CPU {q['cpu_s'] / x['cpu_s']:.1f}x)"
                  if q and key != "qlib" else "")
            rss = "-" if x.get("max_rss_mb") is None else f"{x['max_rss_mb']:.0f}"
            lines.append(f"| {name} | {tool} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {rss} | "
                         f"{x.get('loadavg_1min_start', '')} | {sp} |")
    lines.append("")
    for name, r in results.items():
        p = r.get("parity")
        if p:
            lines.append(f"* {name} merged predictions: {p['rows_ours']} rows (qlib {p['rows_qlib']}, common "
                         f"{p['rows_common']}), max |diff| {p['max_abs_diff']:.3g}, correlation {p['corr']:.12f}.")
    ref = next((r for r in results.values() if r.get("qlib")), None)
    for name, r in results.items():
        if r.get("qlib") is None and ref is not None and r.get("cold"):
            per = ref["qlib"]["cpu_s"] / ref["windows"]
            est = per * r["windows"]
            lines.append(f"* {name}: qlib was not run to the end here (at this load it needs well over an hour); "
                         f"**extrapolated**, not measured: qlib's CPU per window in the {ref['windows']}-window run "
                         f"({per:.0f} s: Alpha158 over the whole handler span + one fit) x {r['windows']} = "
                         f"~{est:.0f} CPU s, i.e. ~{est / r['cold']['cpu_s']:.1f}x ours cold "
                         f"({r['cold']['cpu_s']:.0f} CPU s).")
    lines += ["* Read the wall speed-ups with the load column: runs started at different load levels, so the wall "
              "ratio is skewed by the contention; the CPU ratio (user+system of the process tree, qlib's joblib "
              "feature workers included) is the steadier comparison. `-` = not recorded.",
              "* Where the time goes: qlib recomputes Alpha158 over the whole handler span for every window; "
              "qlib-prefect computes the raw features once (for the union of the windows to train), slices them "
              "per window and runs the processors and LightGBM fits as parallel Prefect tasks.", END]
    return "\n".join(lines)



def _saved() -> dict:
    """The saved per-scenario results (``out/rolling/<scenario>/result.json``), fewest windows first."""
    found = [json.loads((d / "result.json").read_text()) | {"_name": d.name} for d in OUT.iterdir()
             if (d / "result.json").is_file()]
    return {r.pop("_name"): r for r in sorted(found, key=lambda r: r["windows"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows10", action="store_true", help="also run 10 windows of 30 days")
    p.add_argument("--only10", action="store_true", help="run only the 10-window scenario")
    p.add_argument("--skip-qlib", action="store_true", help="reuse the last qlib figures")
    p.add_argument("--no-qlib", action="store_true", help="do not run qlib (ours only)")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--render-only", action="store_true",
                   help="rewrite the BENCHMARKS.md section from the saved out/rolling/*/result.json")
    a = p.parse_args(argv)

    from qlib_prefect.data.sample import sample_data_dir

    OUT.mkdir(parents=True, exist_ok=True)
    if a.render_only:
        saved = _saved()
        text = render(saved, machine_info())
        print(text)
        if not a.no_write:
            write_section(ROOT / "BENCHMARKS.md", text, START, END)
        return 0
    data = Path(sample_data_dir(HERE / "out" / "sp500_qlib"))
    oracle = None if a.no_qlib else os.environ.get("QLIB_ORACLE_PYTHON", DEFAULT_ORACLE)
    results = {} if a.only10 else {"3x120": scenario(measure, data, 120, 3, oracle, a.skip_qlib)}
    if a.windows10 or a.only10:
        results["10x30"] = scenario(measure, data, 30, 10, oracle, a.skip_qlib)
    mach = machine_info()
    for r in results.values():
        for k in ("cold", "warm"):
            r[k].pop("summary", None)
    results = dict(sorted((_saved() | results).items(), key=lambda kv: kv[1]["windows"]))
    (OUT / "last.json").write_text(json.dumps({"machine": mach, "results": results}, indent=1, default=str))
    text = render(results, mach)
    print(text)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
