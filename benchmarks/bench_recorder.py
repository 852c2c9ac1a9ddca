"""Benchmark: create N recorders (10 params, 10 metrics, 1 small artifact each), then list them filtered by a tag.

Runs qlib-prefect's recorder on its default store (SQLite + local artifacts) and, when the qlib venv is present,
qlib 0.9.7's recorder on its file store (``file:`` URI, MLFLOW_ALLOW_FILE_STORE=true) with the same workload, each
in a fresh temp folder outside any git repo. Prints a JSON line per side and a markdown table.

    .venv/bin/python benchmarks/bench_recorder.py              # N=1000
    .venv/bin/python benchmarks/bench_recorder.py --n 200 --no-qlib
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

QLIB_PYTHON = Path("/work/qlib-venv/bin/python")

_QLIB_SIDE = textwrap.dedent(
    """
    import json, os, statistics, sys, time, logging
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    import qlib
    from qlib.workflow import R
    qlib.init(provider_uri=os.getcwd(), exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
              "kwargs": {"uri": "file:" + os.getcwd() + "/mlruns", "default_exp_name": "Experiment"}})
    logging.disable(logging.INFO)
    t0 = time.perf_counter()
    for i in range(n):
        with R.start(experiment_name="bench", recorder_name=f"r{i}"):
            R.log_params(**{f"p{j}": f"v{i}-{j}" for j in range(10)})
            R.log_metrics(**{f"m{j}": i + j / 10 for j in range(10)})
            R.set_tags(group="a" if i % 2 == 0 else "b")
            # qlib's AsyncCaller races with save_objects' get_run ("Metric 'm1' is malformed", ~1 run in 100
            # here): wait for its queue first, as a careful qlib user must
            R.get_recorder().async_log.wait()
            R.save_objects(**{"obj.pkl": {"i": i, "data": list(range(20))}})
    create = time.perf_counter() - t0
    exp = R.get_exp(experiment_name="bench", create=False)
    times, count = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        recs = exp.list_recorders(filter_string="tags.group = 'a'")
        times.append(time.perf_counter() - t0)
        count = len(recs)
    print(json.dumps({"side": "qlib", "create_s": create, "list_filtered_s": statistics.median(times),
                      "listed": count}))
    """
)


def _ours(n: int, repeats: int) -> dict:
    from qlib_prefect.workflow import R

    R.reset()
    t0 = time.perf_counter()
    for i in range(n):
        with R.start(experiment_name="bench", recorder_name=f"r{i}"):
            R.log_params(**{f"p{j}": f"v{i}-{j}" for j in range(10)})
            R.log_metrics(**{f"m{j}": i + j / 10 for j in range(10)})
            R.set_tags(group="a" if i % 2 == 0 else "b")
            R.save_objects(**{"obj.pkl": {"i": i, "data": list(range(20))}})
    create = time.perf_counter() - t0
    exp = R.get_exp(experiment_name="bench", create=False)
    times, count = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        recs = exp.list_recorders(tags={"group": "a"})
        times.append(time.perf_counter() - t0)
        count = len(recs)
    search_times = []
    for _ in range(repeats):  # MLflow's full search path (a raw filter string), for reference
        t0 = time.perf_counter()
        recs2 = exp.list_recorders(filter_string="tags.group = 'a'")
        search_times.append(time.perf_counter() - t0)
    assert set(recs2) == set(recs)
    return {"side": "qlib_prefect", "create_s": create, "list_filtered_s": statistics.median(times),
            "list_filtered_search_runs_s": statistics.median(search_times), "listed": count}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-qlib", action="store_true", help="skip the qlib comparison")
    args = ap.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.pop("QLIB_PREFECT_MLFLOW_URI", None)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        ours_dir = Path(tmp) / "ours"
        ours_dir.mkdir()
        cwd = os.getcwd()
        os.chdir(ours_dir)
        try:
            results.append(_ours(args.n, args.repeats))
        finally:
            os.chdir(cwd)
        print(json.dumps(results[-1]), flush=True)
        if not args.no_qlib and QLIB_PYTHON.exists():
            qdir = Path(tmp) / "qlib"
            qdir.mkdir()
            script = qdir / "side.py"
            script.write_text(_QLIB_SIDE)
            env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true",
                       GIT_CEILING_DIRECTORIES=tmp)
            out = subprocess.run([str(QLIB_PYTHON), str(script), str(args.n), str(args.repeats)], cwd=qdir,
                                 env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
    print(f"\nmachine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    print(f"| side | create {args.n} recorders (s) | list {args.n // 2} filtered by tag "
          f"(s, median of {args.repeats}) |")
    print("|---|---|---|")
    for r in results:
        print(f"| {r['side']} | {r['create_s']:.1f} | {r['list_filtered_s']:.4f} |")
    if len(results) == 2:
        ours, ql = results
        print(f"\nlisting speed-up vs qlib: {ql['list_filtered_s'] / ours['list_filtered_s']:.1f}x; "
              f"create: {ql['create_s'] / ours['create_s']:.2f}x; "
              f"MLflow search_runs path: {ours['list_filtered_search_runs_s']:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
