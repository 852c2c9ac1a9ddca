"""Run the benchmarks one after another (``make bench``): each is its own script, run as a subprocess.

By default the sample-sized benchmarks run (Alpha158, backtest, PortAnaRecord stage, workflow, rolling, online
simulate, routine day, recorder, signal evaluation, expressions, report); qlib's side uses its cached figures where
the script keeps them (pass ``--rerun-qlib`` to measure it again). The market-scale benchmarks (``bench_scale.py``
up to 4,000 x 5,000, ``bench_scale_run.py``) take tens of minutes and many GB of disk: ``--scale`` adds them.
Benchmarks rewrite their own section of BENCHMARKS.md; do not run them while the test suite runs (the machine's load
inflates the wall times).

    .venv/bin/python benchmarks/run_all.py [--only alpha158,online] [--scale] [--rerun-qlib] [--no-write]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (arguments always passed, (flag that writes BENCHMARKS.md, flag that does not),
#:          (flag to re-measure qlib, flag to reuse its cached run))
Flags = tuple[str | None, str | None]
Bench = tuple[list[str], Flags, Flags]
_WRITES: Flags = (None, "--no-write")  # writes its section unless told not to
_PRINTS: Flags = (None, None)  # prints only
BENCHES: dict[str, Bench] = {
    "alpha158": ([], _WRITES, ("--rerun-qlib", None)),
    "backtest": ([], _WRITES, ("--rerun-qlib", None)),
    "portana": ([], _WRITES, ("--rerun-qlib", None)),
    "workflow": ([], _WRITES, (None, "--skip-qlib")),
    "rolling": ([], _WRITES, (None, "--skip-qlib")),
    "online": ([], _WRITES, ("--rerun-qlib", None)),
    "routine": (["--days", "3"], _PRINTS, (None, None)),
    "append": ([], _PRINTS, (None, None)),
    "recorder": (["--n", "1000"], _PRINTS, (None, None)),
    "signal_eval": ([], _PRINTS, (None, None)),
    "expressions": ([], _PRINTS, (None, None)),
    "report": ([], ("--write", None), (None, None)),
}
SCALE: dict[str, Bench] = {
    "scale": ([], _WRITES, (None, None)),
    "scale_run": ([], _WRITES, (None, None)),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated names, e.g. alpha158,online (see BENCHES in this file)")
    ap.add_argument("--scale", action="store_true", help="also run the market-scale benchmarks (long)")
    ap.add_argument("--rerun-qlib", action="store_true", help="measure qlib again where a script caches it")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    a = ap.parse_args()
    table = {**BENCHES, **(SCALE if a.scale or a.only else {})}
    names = list(table) if not a.only else [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(table)}")
    failed: list[str] = []
    for i, name in enumerate(names, 1):
        args, (write, no_write), (rerun, reuse) = table[name]
        flags = [no_write if a.no_write else write, rerun if a.rerun_qlib else reuse]
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *args, *[f for f in flags if f]]
        print(f"== [{i}/{len(names)}] {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
