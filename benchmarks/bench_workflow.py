"""``qlib-prefect run`` vs ``qrun`` on the same YAML and the same qlib-format data (the bundled S&P 500 sample).

Runs, each a fresh subprocess measured by ``_measure.measure`` (wall, CPU, peak RSS):

* qrun (qlib 0.9.7 in its own venv, MLflow file store under the run's working directory): the example YAML, then
  the same YAML with only ``topk``/``n_drop`` changed (qrun recomputes everything);
* qlib-prefect in Prefect's **ephemeral** mode and against a local **``prefect server``** (started here, as when a
  user watches the UI): first run (new Prefect database in ephemeral mode, new MLflow store), cold (empty
  QLIB_PREFECT_HOME: no stage cache, no handler cache; the Prefect and MLflow stores of the first run exist, as
  for every run after a user's first), warm (identical re-run), and the ``topk``/``n_drop`` change.

Parity: IC/ICIR/Rank IC and the backtest metrics of the cold runs and of the topk runs are compared with qrun's.
The section between the ``bench_workflow`` markers of BENCHMARKS.md is rewritten.

    .venv/bin/python benchmarks/bench_workflow.py [--skip-qlib] [--no-server] [--no-write]
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

from _measure import machine_info, measure, utc_now, write_section  # benchmarks/ (the script's folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "workflow"
DEFAULT_ORACLE = "/work/qlib-venv/bin/python"
EXAMPLE = ROOT / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
KEYS = ["IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_without_cost.annualized_return",
        "1day.excess_return_with_cost.annualized_return", "1day.excess_return_with_cost.information_ratio",
        "1day.excess_return_without_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown",
        "1day.excess_return_without_cost.max_drawdown"]
START, END = "<!-- bench_workflow:start -->", "<!-- bench_workflow:end -->"
#: tree PSS sampling period: reading smaps_rollup of a 1.5 GB process costs the measured process CPU on 2 cores
SAMPLE_S = 0.25

_READ_QRUN = """
import json, os, sys
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1])
runs = [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id]) if r.info.status == "FINISHED"]
r = max(runs, key=lambda r: r.info.start_time)
print(json.dumps({"run_id": r.info.run_id, "metrics": dict(r.data.metrics)}))
"""



def example_variant(dest: Path, topk: int | None = None, n_drop: int | None = None) -> Path:
    """The LightGBM/Alpha158 example written to ``dest``, with ``topk``/``n_drop`` changed when given."""
    text = EXAMPLE.read_text()
    if topk is not None:
        text = text.replace("topk: 50", f"topk: {topk}").replace("n_drop: 5", f"n_drop: {n_drop}")
    dest.write_text(text)
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    t0 = time.time()
    while time.time() - t0 < 180:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    print(f"prefect server ready at {url} after {time.time() - t0:.1f} s", flush=True)
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("prefect server did not become healthy in 180 s")


def _ours(measure, cfg: Path, env: dict, cwd: Path, label: str) -> dict:
    out = cwd / f"{label}.json"
    cli = Path(sys.executable).with_name("qlib-prefect")
    r = measure([str(cli), "run", str(cfg), "--json", str(out)], env=env, cwd=str(cwd), interval=SAMPLE_S)
    if r["returncode"] != 0:
        raise SystemExit(f"qlib-prefect {label} failed:\n{r['stderr_tail']}")
    summary = json.loads(out.read_text())
    r["metrics"] = summary["all_metrics"]
    r["states"] = {k: v["state"] for k, v in summary["stages"].items()}
    print(f"ours {label}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, RSS {r['max_rss_mb']:.0f} MB, "
          f"states {sorted(set(r['states'].values()))}", flush=True)
    return r


def _qrun(measure, cfg: Path, data: Path, cwd: Path, oracle: str, label: str) -> dict:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "QLIB_PREFECT_SAMPLE_DIR": str(data)}
    qrun = Path(oracle).with_name("qrun")
    r = measure([str(qrun), str(cfg)], env=env, cwd=str(cwd), interval=SAMPLE_S)
    if r["returncode"] != 0:
        raise SystemExit(f"qrun {label} failed:\n{r['stderr_tail']}")
    read = subprocess.run([oracle, "-c", _READ_QRUN, f"file:{cwd / 'mlruns'}"], env=env, capture_output=True,
                          text=True, check=True)
    r["metrics"] = json.loads(read.stdout.strip().splitlines()[-1])["metrics"]
    print(f"qrun {label}: wall {r['wall_s']:.1f} s, cpu {r['cpu_s']:.1f} s, RSS {r['max_rss_mb']:.0f} MB", flush=True)
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-qlib", action="store_true", help="reuse the last qrun figures (out/workflow/qrun.json)")
    p.add_argument("--no-server", action="store_true", help="skip the runs against a local prefect server")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    a = p.parse_args(argv)

    from qlib_prefect.data.sample import sample_data_dir

    OUT.mkdir(parents=True, exist_ok=True)
    data = Path(sample_data_dir(HERE / "out" / "sp500_qlib"))
    cfg = example_variant(OUT / "wf.yaml")
    cfg_topk = example_variant(OUT / "wf_topk.yaml", topk=40, n_drop=4)
    results: dict[str, dict] = {}

    oracle = os.environ.get("QLIB_ORACLE_PYTHON", DEFAULT_ORACLE)
    qcache = OUT / "qrun.json"
    if a.skip_qlib and qcache.exists():
        results.update(json.loads(qcache.read_text()))
    elif Path(oracle).exists():
        for label, c in (("cold", cfg), ("topk", cfg_topk)):
            d = OUT / f"qrun_{label}"
            shutil.rmtree(d, ignore_errors=True)
            results[f"qrun_{label}"] = _qrun(measure, c, data, d, oracle, label)
        qcache.write_text(json.dumps({k: v for k, v in results.items() if k.startswith("qrun")}, indent=1))

    modes = [("ephemeral", None)] if a.no_server else [("ephemeral", None), ("server", "server")]
    for mode, _ in modes:
        work = OUT / f"ours_{mode}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        env = {**os.environ, "QLIB_PREFECT_HOME": str(work / "home"), "PREFECT_HOME": str(work / "prefect"),
               "QLIB_PREFECT_SAMPLE_DIR": str(data), "MLFLOW_DISABLE_TELEMETRY": "true"}
        env.pop("PREFECT_API_URL", None)
        server = None
        if mode == "server":
            server, url = _start_server(work / "server_home")
            env["PREFECT_API_URL"] = url
        try:
            # first run on a new machine: new Prefect database (ephemeral mode: migrated at start), new MLflow store
            results[f"{mode}_first"] = _ours(measure, cfg, env, work, f"{mode}_first")
            # cold workflow: nothing cached for it (empty QLIB_PREFECT_HOME: no stage, result or handler cache),
            # the Prefect and MLflow stores exist from the earlier run, as for any run after a user's first
            shutil.rmtree(work / "home")
            results[f"{mode}_cold"] = _ours(measure, cfg, env, work, f"{mode}_cold")
            results[f"{mode}_warm"] = _ours(measure, cfg, env, work, f"{mode}_warm")
            results[f"{mode}_topk"] = _ours(measure, cfg_topk, env, work, f"{mode}_topk")
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()

    mach = machine_info()
    text = render(results, mach, data)
    print(text)
    (OUT / "last.json").write_text(json.dumps({"machine": mach, "results": results}, indent=1, default=str))
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    return 0


def _parity(ours: dict, ref: dict) -> tuple[float, list[str]]:
    ic_diff = abs(ours["IC"] - ref["IC"])
    bad = [k for k in KEYS if k in ours and k in ref and (ours[k] > 0) != (ref[k] > 0)]
    return ic_diff, bad


def render(results: dict[str, dict], mach: dict, data: Path) -> str:
    lines = [START, "## Workflow: `qlib-prefect run` vs `qrun` (`benchmarks/bench_workflow.py`)", "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM, "
             "load average "
             f"at the end {mach['loadavg']}; Python {mach['python']}.",
             "* Command: `.venv/bin/python benchmarks/bench_workflow.py` (qrun: `/work/qlib-venv/bin/qrun`, "
             "qlib 0.9.7, MLflow file store; ours: `qlib-prefect run`, SQLite MLflow store).",
             "* Config: `examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml` (topk run: only "
             "`topk: 40`, `n_drop: 4` changed); data: the bundled sample in qlib format "
             f"(`{data.relative_to(ROOT) if data.is_relative_to(ROOT) else data}`), same directory for both.",
             "* Each row is one fresh process: wall = whole command; CPU = user+system of the process tree; peak RSS = "
             "largest single process (`ru_maxrss`); tree PSS = summed PSS of the tree (ephemeral Prefect server "
             f"included), sampled every {SAMPLE_S} s. First run = new Prefect database (ephemeral mode migrates it "
             "at start) and new MLflow store; "
             "cold = nothing cached for the workflow (empty `QLIB_PREFECT_HOME`), the Prefect and MLflow stores of "
             "the first run kept, as for every run after a user's first; qrun always starts from an empty "
             "`mlruns`.", "",
             "| run | wall (s) | CPU (s) | peak RSS (MB) | tree PSS (MB) | stage states | load (1 min) |",
             "|---|---:|---:|---:|---:|---|---:|"]
    names = {"qrun_cold": "qrun", "qrun_topk": "qrun, topk/n_drop changed",
             "ephemeral_first": "qlib-prefect, ephemeral Prefect, first run (new Prefect DB + MLflow store)",
             "ephemeral_cold": "qlib-prefect, ephemeral Prefect, cold",
             "ephemeral_warm": "qlib-prefect, ephemeral, identical re-run",
             "ephemeral_topk": "qlib-prefect, ephemeral, topk/n_drop changed",
             "server_first": "qlib-prefect, local prefect server, first run (new MLflow store)",
             "server_cold": "qlib-prefect, local prefect server, cold",
             "server_warm": "qlib-prefect, server, identical re-run",
             "server_topk": "qlib-prefect, server, topk/n_drop changed"}
    for k, label in names.items():
        r = results.get(k)
        if r is None:
            continue
        states = r.get("states")
        st = "-" if not states else ", ".join(f"{n}: {sum(v == n for v in states.values())}"
                                               for n in sorted(set(states.values())))
        lines.append(f"| {label} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['max_rss_mb']:.0f} | "
                     f"{r['peak_tree_mb']:.0f} | {st} | {r.get('loadavg_1min_start', '')} |")
    lines.append("")
    q, qt = results.get("qrun_cold"), results.get("qrun_topk")
    for mode in ("ephemeral", "server"):
        if q is None or f"{mode}_cold" not in results:
            continue
        c, w, t = (results[f"{mode}_{x}"] for x in ("cold", "warm", "topk"))
        f = results.get(f"{mode}_first")
        first = f" (first run on a new machine {q['wall_s'] / f['wall_s']:.1f}x)" if f else ""
        rss = max(r["max_rss_mb"] for r in (c, w, t, f) if r)
        lines.append(f"* {mode}: cold {q['wall_s'] / c['wall_s']:.1f}x faster than qrun{first} (goal >= 3x); "
                     f"identical re-run {q['wall_s'] / w['wall_s']:.1f}x; topk/n_drop change "
                     f"{qt['wall_s'] / t['wall_s']:.1f}x faster than qrun's re-run (goal >= 10x); peak RSS "
                     f"{rss:.0f} MB vs qrun {q['max_rss_mb']:.0f} MB.")
    if q is not None:
        lines += ["", "| metric | qrun | qlib-prefect (cold) | qrun topk | qlib-prefect topk |",
                  "|---|---:|---:|---:|---:|"]
        oc = results.get("ephemeral_cold") or results.get("server_cold")
        ot = results.get("ephemeral_topk") or results.get("server_topk")
        for k in KEYS:
            vals = [q["metrics"].get(k), (oc or {}).get("metrics", {}).get(k), (qt or {}).get("metrics", {}).get(k),
                    (ot or {}).get("metrics", {}).get(k)]
            lines.append(f"| {k} | " + " | ".join("-" if v is None else f"{v:.6f}" for v in vals) + " |")
        if oc is not None:
            ic_diff, bad = _parity(oc["metrics"], q["metrics"])
            lines.append("")
            lines.append(f"* Parity (cold): |IC - IC_qrun| = {ic_diff:.2e} (goal <= 0.002); metrics with a different "
                         f"sign: {bad or 'none'}.")
        if ot is not None and qt is not None:
            ic_diff, bad = _parity(ot["metrics"], qt["metrics"])
            lines.append(f"* Parity (topk): |IC - IC_qrun| = {ic_diff:.2e}; metrics with a different sign: "
                         f"{bad or 'none'}.")
    lines.append(END)
    return "\n".join(lines)



if __name__ == "__main__":
    raise SystemExit(main())
