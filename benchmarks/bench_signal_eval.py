"""Benchmark: signal evaluation (daily IC / Rank IC, long-short return, long-short precision), ours vs qlib 0.9.7.

Same synthetic pred/label pair for both sides (``--inst`` instruments x ``--days`` dates, float32 label with 5% NaN),
each side in its own venv/process; reports the best of ``--repeat`` runs per function and checks the outputs agree.

    .venv/bin/python benchmarks/bench_signal_eval.py                 # 500 x 1000
    .venv/bin/python benchmarks/bench_signal_eval.py --inst 300 --days 2000 --no-qlib
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

QLIB_PYTHON = Path("/work/qlib-venv/bin/python")
ROOT = Path(__file__).resolve().parents[1]

_SIDE = textwrap.dedent(
    """
    import json, sys, time, warnings
    import numpy as np, pandas as pd
    warnings.simplefilter("ignore")
    side, path, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if side == "qlib":
        from qlib.contrib.eva.alpha import calc_ic, calc_long_short_prec, calc_long_short_return
    else:
        from qlib_prefect.model.signal_eval import calc_ic, calc_long_short_prec, calc_long_short_return
    df = pd.read_parquet(path)
    pred, label = df["pred"], df["label"]
    out, res = {}, {}
    for name, fn in (("calc_ic", calc_ic), ("calc_long_short_return", calc_long_short_return),
                     ("calc_long_short_prec", calc_long_short_prec)):
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter(); r = fn(pred, label); best = min(best, time.perf_counter() - t)
        out[name] = best
        res[name] = [float(np.nansum(np.asarray(s, dtype=float))) for s in r]
    print(json.dumps({"side": side, "seconds": out, "checksums": res}))
    """
)


def make_pair(path: Path, n_inst: int, n_days: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([pd.bdate_range("2010-01-04", periods=n_days),
                                      [f"S{i:04d}" for i in range(n_inst)]], names=["datetime", "instrument"])
    f = rng.standard_normal(len(idx))
    label = (0.05 * f + rng.standard_normal(len(idx))).astype(np.float32) * 0.02
    label[rng.random(len(idx)) < 0.05] = np.nan
    pd.DataFrame({"pred": f, "label": label}, index=idx).to_parquet(path)


def run_side(python: Path, side: str, path: Path, repeat: int) -> dict:
    proc = subprocess.run([str(python), "-c", _SIDE, side, str(path), str(repeat)], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inst", type=int, default=500)
    ap.add_argument("--days", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-qlib", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pair.parquet"
        make_pair(path, args.inst, args.days)
        sides = [run_side(Path(sys.executable), "ours", path, args.repeat)]
        if not args.no_qlib and QLIB_PYTHON.exists():
            sides.append(run_side(QLIB_PYTHON, "qlib", path, args.repeat))
    for s in sides:
        print(json.dumps(s))
    machine = platform.processor() or platform.machine()
    print(f"\n{args.inst} instruments x {args.days} days, best of {args.repeat}; {machine}, "
          f"{platform.python_version()}\n")
    print("| function | ours (s) | qlib 0.9.7 (s) | speed-up |\n|---|---|---|---|")
    for name, ours in sides[0]["seconds"].items():
        q = sides[1]["seconds"][name] if len(sides) > 1 else float("nan")
        print(f"| {name} | {ours:.3f} | {q:.3f} | {q / ours:.0f}x |")
    if len(sides) > 1:
        for name, sums in sides[0]["checksums"].items():
            other = sides[1]["checksums"][name]
            ok = all(abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(sums, other))
            print(f"outputs agree ({name}): {ok}")


if __name__ == "__main__":
    main()
