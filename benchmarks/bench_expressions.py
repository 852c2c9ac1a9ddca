"""Benchmark + parity: the 158 Alpha158 expressions + label on the bundled S&P 500 sample (505 x 1259).

    .venv/bin/python benchmarks/bench_expressions.py [--qlib]

Times ``Evaluator.evaluate_many`` (all 159 expressions on the full panel, fields already loaded) and
``compute_features`` (2014-01-01 .. 2018-02-07, membership masking, frame gather), wall and CPU seconds,
best of 3 (``QLIB_PREFECT_EXPR_THREADS=k`` fixes the instrument threads of ``compute_features``; by
default they follow the idle CPUs). With ``--qlib`` the real qlib (``$QLIB_ORACLE_PYTHON`` or
/work/qlib-venv/bin/python) computes the same ``D.features`` once (cached in
``benchmarks/out/qlib_alpha158_features.parquet``, ~5 min) and the script prints the cell-level parity:
NaN positions, share of cells within ``|ours - qlib| <= 1e-5 |qlib| + 1e-6``, share bit-identical,
largest relative difference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(ROOT / "tools"))

from make_expression_goldens import alpha158  # noqa: E402

START, END = "2014-01-01", "2018-02-07"
QLIB_SCRIPT = """
import sys
sys.path.insert(0, {tools!r})
from make_expression_goldens import alpha158
import qlib
from qlib.data import D
qlib.init(provider_uri={data!r}, region="us", kernels=1)
f, n = alpha158()
df = D.features(D.instruments("sp500"), f, start_time={start!r}, end_time={end!r})
df.columns = [f"c{{i:03d}}" for i in range(len(f))]
df.to_parquet({out!r})
"""


def _best(fn, repeat: int = 3) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--qlib", action="store_true", help="compare with the real qlib (cached)")
    args = ap.parse_args()
    from qlib_prefect.data.expression import Evaluator, compute_features
    from qlib_prefect.data.provider import LocalProvider
    from qlib_prefect.data.sample import sample_data_dir

    OUT.mkdir(parents=True, exist_ok=True)
    data = Path(sample_data_dir(OUT / "sp500_qlib"))
    exprs, names = alpha158()
    p = LocalProvider(data)
    codes = sorted(p.instruments("sp500"))
    for f in ("open", "high", "low", "close", "volume", "vwap"):
        p.load_field(f, codes)
    ev_w, ev_c = _best(lambda: Evaluator(p, codes).evaluate_many(exprs))
    print(
        f"evaluate_many: {len(exprs)} expressions x {len(codes)} instruments x {len(p.calendar())} dates: "
        f"wall {ev_w:.2f} s, cpu {ev_c:.2f} s"
    )
    cf_w, cf_c = _best(lambda: compute_features(p, "sp500", exprs, names, START, END))
    print(
        f"compute_features({START}..{END}): wall {cf_w:.2f} s, cpu {cf_c:.2f} s "
        f"(threads {os.environ.get('QLIB_PREFECT_EXPR_THREADS') or 'auto'}, load {os.getloadavg()[0]:.1f})"
    )
    if not args.qlib:
        return
    gold_path = OUT / "qlib_alpha158_features.parquet"
    if not gold_path.exists():
        oracle = os.environ.get("QLIB_ORACLE_PYTHON", "/work/qlib-venv/bin/python")
        code = QLIB_SCRIPT.format(tools=str(ROOT / "tools"), data=str(data), start=START, end=END, out=str(gold_path))
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true")
        subprocess.run([oracle, "-c", code], check=True, env=env)
    gold = pd.read_parquet(gold_path)
    ours = compute_features(p, "sp500", exprs, list(gold.columns), START, END).swaplevel(0, 1).sort_index()
    assert ours.index.equals(gold.index), "row index differs"
    g, o = gold.to_numpy(np.float64), ours.to_numpy(np.float64)
    gn, on = np.isnan(g), np.isnan(o)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(o - g)
        ok = (gn == on) & (gn | (diff <= 1e-5 * np.abs(g) + 1e-6) | (o == g))
        same = (gn & on) | (o == g)
        rel = np.where(gn | on, 0.0, diff / np.maximum(np.abs(g), 1e-6))
    print(
        f"parity: {g.shape[0]} rows x {g.shape[1]} cols = {g.size} cells; NaN mismatches {(gn != on).sum()}; "
        f"within tol {ok.mean():.7%}; bit-identical {same.mean():.7%}; max rel diff {np.nanmax(rel):.3g}"
    )
    for j in np.flatnonzero(~ok.all(axis=0)):
        print(f"  {names[j]}: {(~ok[:, j]).sum()} cells off")


if __name__ == "__main__":
    main()
