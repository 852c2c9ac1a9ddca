"""Benchmark: the PortAnaRecord stage (backtest, risk/indicator analyses, artifacts, and our plots) vs qlib's
``PortAnaRecord.generate()`` on the same predictions.

    .venv/bin/python benchmarks/bench_portana.py [--repeat 3] [--rerun-qlib] [--no-write]

Ours: ``run_workflow`` of qlib's LightGBM/Alpha158 example on the bundled sample (ephemeral Prefect, SQLite
MLflow, empty ``QLIB_PREFECT_HOME``), then ``--repeat`` re-runs with only ``topk``/``n_drop`` changed (40/4, 45/4,
...), in which PortAnaRecord is the one stage computed. The figure is the stage's own wall time from the run
summary (``stages[...]["seconds"]``: the record's ``generate()`` with the backtest, the analyses, the artifacts,
and the plots the stage draws: cumulative return and drawdown PNGs).

qlib 0.9.7 (its own venv): the cold run's ``pred.pkl`` and ``label.pkl`` (written to parquet, read back in qlib's
venv) saved into a new recorder (MLflow file store), then ``PortAnaRecord(recorder, config=...).generate()`` with
the same ``port_analysis_config`` (topk 40 / n_drop 4) timed in the same process, best of ``min(--repeat, 2)``
calls on fresh recorders (the first call also loads qlib's exchange quotes). Parity: the risk-analysis metrics of
the two stages. The section of BENCHMARKS.md between the markers is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _measure import machine_info, measure, utc_now, write_section  # benchmarks/ (the script's folder)
from bench_workflow import EXAMPLE, example_variant

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "portana"
DEFAULT_ORACLE = "/work/qlib-venv/bin/python"
START, END = "<!-- bench_portana:start -->", "<!-- bench_portana:end -->"
VARIANTS = [(40, 4), (45, 4), (35, 3), (30, 3), (55, 6)]


def child_ours(repeat: int) -> None:
    from qlib_prefect.orchestration import run_workflow
    from qlib_prefect.workflow import R

    cold = run_workflow(str(example_variant(OUT / "wf.yaml")), experiment_name="bench_portana")
    rec = R.get_recorder(recorder_id=cold["run_id"], experiment_name="bench_portana")
    rec.load_object("pred.pkl").to_parquet(OUT / "pred.parquet")
    rec.load_object("label.pkl").to_parquet(OUT / "label.parquet")
    stage = next(n for n, s in cold["stages"].items() if s["label"] == "PortAnaRecord")
    runs = []
    for topk, n_drop in VARIANTS[:repeat]:
        t0 = time.perf_counter()
        s = run_workflow(str(example_variant(OUT / f"wf_{topk}.yaml", topk, n_drop)), experiment_name="bench_portana")
        computed = [n for n, v in s["stages"].items() if v["state"] == "Completed"]
        runs.append({"topk": topk, "n_drop": n_drop, "stage_s": s["stages"][stage]["seconds"], "computed": computed,
                     "run_s": round(time.perf_counter() - t0, 3),
                     "metrics": {k: v for k, v in s["all_metrics"].items() if k.startswith("1day.")}})
    print(json.dumps({"cold_stage_s": cold["stages"][stage]["seconds"], "runs": runs}), flush=True)


def child_qlib(repeat: int) -> None:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import pandas as pd
    import qlib
    import yaml
    from qlib.workflow import R
    from qlib.workflow.record_temp import PortAnaRecord

    cfg = yaml.safe_load(EXAMPLE.read_text().replace("{{ QLIB_PREFECT_SAMPLE_DIR }}", os.environ["SAMPLE"]))
    qlib.init(provider_uri=cfg["qlib_init"]["provider_uri"], region=cfg["qlib_init"]["region"],
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": "file:" + str(OUT / "qlib_mlruns"), "default_exp_name": "bench"}})
    pa = cfg["port_analysis_config"]
    pa["strategy"]["kwargs"].update(topk=VARIANTS[0][0], n_drop=VARIANTS[0][1])
    pred, label = pd.read_parquet(OUT / "pred.parquet"), pd.read_parquet(OUT / "label.parquet")
    times = []
    for i in range(repeat):
        with R.start(experiment_name="bench", recorder_name=f"portana{i}"):
            rec = R.get_recorder()
            rec.save_objects(**{"pred.pkl": pred, "label.pkl": label})  # SignalRecord's artifacts
            t0 = time.perf_counter()
            PortAnaRecord(recorder=rec, config=pa).generate()
            times.append(time.perf_counter() - t0)
            metrics = {k: v for k, v in rec.list_metrics().items() if k.startswith("1day.")}
            if not metrics:
                raise SystemExit("qlib's PortAnaRecord logged no metrics (generation skipped?)")
    print(json.dumps({"first_s": round(times[0], 3), "best_s": round(min(times), 3), "repeat": repeat,
                      "metrics": metrics}), flush=True)


def render(ours: dict, qlib: dict | None, mach: dict) -> str:
    runs = ours["runs"]
    best = min(r["stage_s"] for r in runs)
    lines = [START, "## PortAnaRecord stage with its plots (`benchmarks/bench_portana.py`)", "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM, "
             f"load average {mach['loadavg']}; Python {mach['python']}.",
             "* Command: `.venv/bin/python benchmarks/bench_portana.py` (qlib: `/work/qlib-venv/bin/python`, qlib "
             "0.9.7, MLflow file store; ours: ephemeral Prefect, SQLite MLflow).",
             "* Workload: qlib's LightGBM/Alpha158 example on the bundled sample; the PortAnaRecord of the "
             "`port_analysis_config` (TopkDropout, backtest 2017-01-03..2018-02-06, SPX, account 1e8) on the cold "
             "run's `pred.pkl`, with `topk`/`n_drop` changed so that only this stage computes. Ours: the stage's "
             "wall time from the run summary (`generate()` + the stage's plots: cumulative return and "
             "drawdown PNGs); qlib: `PortAnaRecord(recorder, config).generate()` (qlib draws no plots).", "",
             "| side | run | PortAnaRecord stage (s) |", "|---|---|---:|"]
    lines.append(f"| qlib-prefect | cold run (concurrent with SigAnaRecord) | {ours['cold_stage_s']:.3f} |")
    for r in runs:
        lines.append(f"| qlib-prefect | topk {r['topk']} / n_drop {r['n_drop']} (computed: "
                     f"{', '.join(r['computed'])}; whole run {r['run_s']:.1f} s) | {r['stage_s']:.3f} |")
    if qlib:
        lines.append(f"| qlib 0.9.7 | topk {VARIANTS[0][0]} / n_drop {VARIANTS[0][1]}, first call | "
                     f"{qlib['first_s']:.3f} |")
        lines.append(f"| qlib 0.9.7 | same, best of {qlib['repeat']} | {qlib['best_s']:.3f} |")
        lines += ["", f"* Speed-up: {qlib['best_s'] / best:.1f}x (qlib's best call / our best stage), "
                  f"{qlib['first_s'] / best:.1f}x against qlib's first call. Goal (issue 13): >= 30x."]
        mine = runs[0]["metrics"]
        common = sorted(set(mine) & set(qlib["metrics"]))
        if common:
            diff = max(abs(mine[k] - qlib["metrics"][k]) for k in common)
            lines.append(f"* Parity (topk {VARIANTS[0][0]}): {len(common)} risk/indicator metrics, max |diff| "
                         f"{diff:.1e}.")
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=["ours", "qlib"], help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rerun-qlib", action="store_true")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.child == "ours":
        child_ours(a.repeat)
        return 0
    if a.child == "qlib":
        child_qlib(a.repeat)
        return 0
    from qlib_prefect.data.sample import sample_data_dir

    sample = str(sample_data_dir(HERE / "out" / "sp500_qlib"))
    OUT.mkdir(parents=True, exist_ok=True)
    home = OUT / "home"
    shutil.rmtree(home, ignore_errors=True)
    me = str(Path(__file__).resolve())
    env = {**os.environ, "QLIB_PREFECT_HOME": str(home), "QLIB_PREFECT_SAMPLE_DIR": sample,
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("PREFECT_API_URL", None)
    r = measure([sys.executable, me, "--child", "ours", "--repeat", str(a.repeat)], env=env, cwd=str(OUT))
    if r["returncode"] != 0 or not r.get("result"):
        raise SystemExit(f"qlib-prefect run failed:\n{r['stderr_tail']}")
    ours = r["result"]
    qcache = OUT / "qlib_portana.json"
    qres = json.loads(qcache.read_text()) if qcache.exists() and not a.rerun_qlib else None
    oracle = os.environ.get("QLIB_ORACLE_PYTHON", DEFAULT_ORACLE)
    if qres is None and Path(oracle).exists():
        shutil.rmtree(OUT / "qlib_mlruns", ignore_errors=True)
        q = measure([oracle, me, "--child", "qlib", "--repeat", str(min(a.repeat, 2))],
                    env={**os.environ, "SAMPLE": sample, "PYTHONPATH": str(HERE)}, cwd=str(OUT))
        if q["returncode"] != 0 or not q.get("result"):
            print(f"qlib run failed:\n{q['stderr_tail']}", file=sys.stderr)
        else:
            qres = q["result"]
            qcache.write_text(json.dumps(qres, indent=1))
    text = render(ours, qres, machine_info())
    print(text)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
