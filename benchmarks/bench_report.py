"""Benchmark: what building the research report adds to a run (goal: under 2 s on the bundled sample).

Makes one run of qlib's LightGBM/Alpha158 example on the bundled S&P 500 sample (``task_train``, the trainer path;
``--rounds`` boosting rounds, default 50, since the report's cost does not depend on the model's quality), then
times ``build_run_report`` on it ``--repeat`` times: the HTML alone (``log=False``), and the whole hook (HTML +
ledgers uploaded + MLflow 3 entries; the logged model and dataset input are created once, on the first build).

    .venv/bin/python benchmarks/bench_report.py
    .venv/bin/python benchmarks/bench_report.py --rounds 20 --repeat 5 --write   # + BENCHMARKS.md section
    .venv/bin/python benchmarks/bench_report.py --run-id RUN --uri sqlite:///.../mlflow.db   # time an existing run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from _measure import machine_info, utc_now, write_section  # noqa: E402

CONFIG = ROOT.parent / "examples" / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"
START, END = "<!-- bench_report:start -->", "<!-- bench_report:end -->"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the result into BENCHMARKS.md")
    ap.add_argument("--run-id", help="time an existing run of the example instead of making one")
    ap.add_argument("--uri", help="tracking URI of --run-id")
    args = ap.parse_args()

    import os

    import qlib_prefect
    from qlib_prefect.config.loader import load_config
    from qlib_prefect.data.sample import sample_data_dir
    from qlib_prefect.report import build_run_report
    from qlib_prefect.task.trainer import task_train
    from qlib_prefect.workflow import MLflowRecorder

    os.environ.setdefault("QLIB_PREFECT_SAMPLE_DIR", str(sample_data_dir()))
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    uri = args.uri or f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = load_config(CONFIG).raw
    cfg["qlib_init"]["exp_manager"] = {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                       "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}
    cfg["task"]["model"]["kwargs"]["num_boost_round"] = args.rounds
    qlib_prefect.init(**cfg["qlib_init"])
    t0 = time.perf_counter()
    run_id = args.run_id or task_train(cfg["task"], "bench-report").id  # includes the hook's first build
    run_s = time.perf_counter() - t0
    rec = MLflowRecorder.from_run_id(run_id, uri, async_logging=False)
    html_only, hook = [], []
    for i in range(args.repeat):
        t = time.perf_counter()
        build_run_report(rec, output=tmp / f"h{i}", log=False)
        html_only.append(time.perf_counter() - t)
        t = time.perf_counter()
        build_run_report(rec, output=tmp / f"l{i}")
        hook.append(time.perf_counter() - t)
    pred = rec.load_object("pred.pkl")
    result = {
        "run_s": None if args.run_id else round(run_s, 2), "rows": len(pred),
        "days": int(pred.index.get_level_values(0).nunique()),
        "html_only_s": {"min": round(min(html_only), 3), "median": round(statistics.median(html_only), 3)},
        "with_logging_s": {"min": round(min(hook), 3), "median": round(statistics.median(hook), 3)},
        "report_mb": round((tmp / "h0" / "report.html").stat().st_size / 1e6, 2),
    }
    print(json.dumps(result))
    if args.write:
        m = machine_info()
        section = "\n".join([
            START, "## Research report (`benchmarks/bench_report.py`)", "",
            f"Goal: building the report adds under 2 s to a run on the bundled sample. {utc_now()}, "
            f"{m.get('nproc')} cores, load {m.get('loadavg')}.", "",
            "| what | min (s) | median (s) |", "|---|---|---|",
            f"| report.html only | {result['html_only_s']['min']} | {result['html_only_s']['median']} |",
            f"| report.html + ledgers logged + MLflow entries | {result['with_logging_s']['min']} | "
            f"{result['with_logging_s']['median']} |", "",
            f"* Run: qlib's LightGBM/Alpha158 example on the sample ({args.rounds} rounds), test segment "
            f"{result['rows']} rows over {result['days']} days; report.html {result['report_mb']} MB "
            "(plotly.js embedded).", END])
        write_section(ROOT.parent / "BENCHMARKS.md", section, START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
