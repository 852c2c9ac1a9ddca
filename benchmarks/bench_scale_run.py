"""Benchmark: `qlib-prefect run` of the LightGBM/Alpha158 example on a synthetic market (issue 13's proof).

    .venv/bin/python benchmarks/bench_scale_run.py [--size 2000x3000] [--max-memory 6G] [--no-write]

Writes (or reuses) the synthetic market of ``bench_scale.py`` (``benchmarks/out/scale/m<N>x<T>``), turns
``examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml`` into a config on it (provider_uri the
synthetic directory, market ``all``, benchmark the first stock, the handler span / fit window / segments 60/20/20 %
of the days, the backtest over the test segment; model, strategy and costs as in the example) and measures one cold
``qlib-prefect run`` in a fresh process (empty ``QLIB_PREFECT_HOME``, MLflow on a new SQLite file) with
``benchmarks/_measure.py``: wall, CPU, peak RSS (largest process) and peak PSS of the process tree (the temporary
Prefect server included). ``QLIB_PREFECT_MAX_MEMORY`` is the setting's default (half the RAM) unless
``--max-memory`` is given; the run's summary (stage states, metrics) comes from ``run --json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml
from _measure import machine_info, measure, utc_now, write_section  # benchmarks/ (the script's folder)
from bench_scale import OUT, market

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLE = ROOT / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
START, END = "<!-- bench_scale_run:start -->", "<!-- bench_scale_run:end -->"


def run_config(data: Path) -> dict:
    """The example config re-pointed at the synthetic market ``data``."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cal = (data / "calendars" / "day.txt").read_text().split()
    first = (data / "instruments" / "all.txt").read_text().split()[0]
    n = len(cal)
    a, b = int(n * 0.6), int(n * 0.8)
    cfg["qlib_init"] = {"provider_uri": str(data), "region": "cn"}
    cfg["market"], cfg["benchmark"] = "all", first
    h = cfg["task"]["dataset"]["kwargs"]["handler"]["kwargs"]
    h.update(start_time=cal[0], end_time=cal[-1], fit_start_time=cal[0], fit_end_time=cal[a], instruments="all")
    cfg["task"]["dataset"]["kwargs"]["segments"] = {"train": [cal[0], cal[a]], "valid": [cal[a + 1], cal[b]],
                                                    "test": [cal[b + 1], cal[-1]]}
    for rec in cfg["task"]["record"]:
        if rec["class"] == "PortAnaRecord":
            bt = rec["kwargs"]["config"]["backtest"]
            bt.update(start_time=cal[b + 1], end_time=cal[-2], benchmark=first)
    cfg.pop("data_handler_config", None)
    cfg.pop("port_analysis_config", None)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2000x3000", help="NxT (stocks x days)")
    p.add_argument("--max-memory", help="QLIB_PREFECT_MAX_MEMORY (default: the setting's default)")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--keep-data", action="store_true", help="keep the synthetic market")
    a = p.parse_args(argv)
    n, t = (int(x) for x in a.size.lower().split("x"))
    OUT.mkdir(parents=True, exist_ok=True)
    data = market(n, t)
    work = OUT / f"run{n}x{t}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = work / "workflow.yaml"
    cfg.write_text(yaml.safe_dump(run_config(data), sort_keys=False))
    env = {**os.environ, "QLIB_PREFECT_HOME": str(work / "home"), "PREFECT_HOME": str(work / "prefect"),
           "QLIB_PREFECT_MLFLOW_URI": f"sqlite:///{work / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("QLIB_PREFECT_HANDLER_CACHE", None)
    env.pop("PREFECT_API_URL", None)
    if a.max_memory:
        env["QLIB_PREFECT_MAX_MEMORY"] = a.max_memory
    summary = work / "summary.json"
    r = measure([sys.executable, "-m", "qlib_prefect.cli.main", "run", str(cfg), "--json", str(summary)],
                env=env, cwd=str(work))
    res = json.loads(summary.read_text()) if summary.exists() else {}
    print(f"{a.size}: rc {r['returncode']} wall {r['wall_s']:.0f} s cpu {r['cpu_s']:.0f} s "
          f"rss {r['max_rss_mb']:.0f} MB tree {r.get('peak_tree_mb', 0):.0f} MB", flush=True)
    if r["returncode"] != 0:
        print(r["stderr_tail"], file=sys.stderr)
    mach = machine_info()
    text = render(a, n, t, r, res, mach)
    print(text)
    (OUT / "bench_scale_run.last.json").write_text(json.dumps({"machine": mach, "measure": r, "summary": res},
                                                              indent=1, default=str))
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    if not a.keep_data:
        shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(work / "home", ignore_errors=True)
    return 0 if r["returncode"] == 0 else 1


def render(a: argparse.Namespace, n: int, t: int, r: dict, res: dict, mach: dict) -> str:
    cap = a.max_memory or f"default, half the RAM ({mach['ram_gb'] / 2:.1f} GB)"
    stages = res.get("stages") or {}
    states = ", ".join(f"{k} {v.get('state', v) if isinstance(v, dict) else v}" for k, v in stages.items()) or "?"
    metrics = res.get("metrics") or {}
    keep = [k for k in metrics if k in ("IC", "ICIR", "Rank IC",
                                        "1day.excess_return_with_cost.annualized_return",
                                        "1day.excess_return_with_cost.max_drawdown")]
    lines = [START, "## `qlib-prefect run` at market scale (`benchmarks/bench_scale_run.py`)", "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM; "
             f"load average at the start {r.get('loadavg_1min_start', '?')}, at the end {mach['loadavg']}.",
             f"* Command: `.venv/bin/python benchmarks/bench_scale_run.py --size {a.size}"
             f"{f' --max-memory {a.max_memory}' if a.max_memory else ''}`; `QLIB_PREFECT_MAX_MEMORY`: {cap}.",
             f"* The LightGBM/Alpha158 example (qlib's model parameters, TopkDropout 50/5, costs) on a synthetic "
             f"market of {n:,} stocks x {t:,} days (`bench_scale.py`'s writer), segments 60/20/20 % of the days, "
             "one cold run in a fresh process (empty caches, new MLflow SQLite store, temporary Prefect server).", "",
             "| stocks x days | rc | wall (s) | CPU (s) | peak RSS, one process (MB) | peak PSS, tree (MB) |",
             "|---|---:|---:|---:|---:|---:|",
             f"| {n:,} x {t:,} | {r['returncode']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['max_rss_mb']:.0f} | "
             f"{r.get('peak_tree_mb', 0):.0f} |", "",
             f"* Stages: {states}.",
             "* Metrics (synthetic random walks: no signal to find, so IC ~ 0 is the expected result): "
             + (", ".join(f"{k} {metrics[k]:.4g}" for k in keep) or "none recorded") + ".", END]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
