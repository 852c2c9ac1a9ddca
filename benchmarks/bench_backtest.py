"""Benchmark: the PortAnaRecord backtest on the bundled S&P 500 sample — qlib-prefect vs qlib's ``backtest()``.

    .venv/bin/python benchmarks/bench_backtest.py [--rerun-qlib] [--skip-qlib] [--no-write] [--repeat N]

Setup as acceptance ``backtest.py``: seeded random prediction (``default_rng(7)``, 500 NaN scores) for every
(date, sp500 member) of 2017-01-03..2018-02-07; TopkDropoutStrategy(topk=50, n_drop=5); backtest 2017-01-03 ..
2018-02-06, account 1e8, benchmark SPX, region us, ``exchange_kwargs`` = qlib's benchmark costs (limit None,
deal price close, open 0.0005, close 0.0015, min 5).

Each library runs in its own subprocess (``benchmarks/_measure.py``): the figure is the wall time of the
``backtest()`` call alone (exchange quote loading included; strategy/executor given as configs), best of
``--repeat`` calls in the same process (the first call is also reported: ours reads the quotes from disk then).
The parent also checks parity: every report column of both runs, max relative difference. qlib's figures are
cached in ``benchmarks/out/qlib_backtest.json``. The section of BENCHMARKS.md between the markers is rewritten.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from _measure import machine_info, measure, utc_now, write_section  # benchmarks/ (the script's folder)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
DEFAULT_ORACLE = "/work/qlib-venv/bin/python"
START_T, END_T = "2017-01-03", "2018-02-06"


def make_pred(data: Path):
    """The acceptance prediction (same seed, same NaNs)."""
    import numpy as np
    import pandas as pd

    cal = pd.to_datetime(pd.Series((data / "calendars/day.txt").read_text().split()))
    cal = cal[(cal >= "2017-01-03") & (cal <= "2018-02-07")]
    spans = pd.read_csv(data / "instruments/sp500.txt", sep="\t", header=None, names=["i", "s", "e"],
                        parse_dates=["s", "e"])
    rows = [(d, r.i) for d in cal for r in spans.itertuples() if r.s <= d <= r.e]
    idx = pd.MultiIndex.from_tuples(rows, names=["datetime", "instrument"]).sort_values()
    rng = np.random.default_rng(7)
    pred = pd.DataFrame({"score": rng.normal(size=len(idx))}, index=idx)
    pred.iloc[rng.choice(len(idx), 500, replace=False), 0] = np.nan
    return pred


def child(lib: str, data: str, repeat: int, out: str) -> None:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    q = importlib.import_module(lib)
    q.init(provider_uri=data, region="us")
    backtest = importlib.import_module(f"{lib}.backtest").backtest
    pred = make_pred(Path(data))
    times, cpus = [], []
    for _ in range(repeat):
        strategy = {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                    "kwargs": {"signal": pred, "topk": 50, "n_drop": 5}}
        executor = {"class": "SimulatorExecutor", "module_path": "qlib.backtest.executor",
                    "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True}}
        ek = {"limit_threshold": None, "deal_price": "close", "open_cost": 0.0005, "close_cost": 0.0015,
              "min_cost": 5}
        t, c = time.perf_counter(), time.process_time()
        pm, _ = backtest(start_time=START_T, end_time=END_T, strategy=strategy, executor=executor,
                           benchmark="SPX", account=100000000, exchange_kwargs=ek)
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    report = pm["1day"][0]
    report.to_parquet(out)
    print(json.dumps({"lib": lib, "first_s": round(times[0], 4), "best_s": round(min(times), 4),
                      "first_cpu_s": round(cpus[0], 4), "best_cpu_s": round(min(cpus), 4),
                      "repeat": repeat, "days": len(report), "final_account": float(report["account"].iloc[-1])}),
          flush=True)


def data_dir() -> tuple[Path, str]:
    try:
        from qlib_prefect.data.sample import sample_data_dir

        return Path(sample_data_dir(OUT / "sp500_qlib")), "qlib_prefect.data.sample.sample_data_dir()"
    except Exception as e:
        raise SystemExit(f"bundled sample unavailable: {e}") from e



def parity(a: Path, b: Path) -> tuple[float, int]:
    import numpy as np
    import pandas as pd

    x, y = pd.read_parquet(a), pd.read_parquet(b)
    if list(x.index) != list(y.index):
        return float("inf"), 0
    worst = 0.0
    for c in y.columns:
        u, v = x[c].to_numpy(float), y[c].to_numpy(float)
        with np.errstate(all="ignore"):
            r = np.where(u == v, 0.0, np.abs(u - v) / np.maximum(np.abs(v), 1e-300))
        worst = max(worst, float(np.nanmax(r)))
    return worst, len(y)


START, END = "<!-- bench_backtest:start -->", "<!-- bench_backtest:end -->"


def render(results: dict, mach: dict, how: str, par: tuple[float, int] | None) -> str:
    lines = [START, "## PortAnaRecord backtest (`benchmarks/bench_backtest.py`)", "",
             f"* Date: {utc_now()}; machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['ram_gb']} GB RAM, "
             f"load average {mach['loadavg']} (shared, contended machine); Python {mach['python']}.",
             "* Command: `.venv/bin/python benchmarks/bench_backtest.py` (qlib: `/work/qlib-venv/bin/python`, "
             "qlib 0.9.7).",
             f"* Data: the bundled S&P 500 sample ({how}); 505 stocks, 2017-01-03..2018-02-06 (276 trading days), "
             "seeded random prediction of acceptance `backtest.py`, TopkDropout(topk=50, n_drop=5), account 1e8, "
             "benchmark SPX, region us.",
             "* Figure: wall and CPU (process) time of the `backtest()` call (exchange quote loading included), in a "
             "fresh subprocess per library; first call and best of the repeated calls (ours: 5, qlib: 2).", "",
             "| library | first wall (s) | best wall (s) | first CPU (s) | best CPU (s) | days | final account |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for k, name in (("qlib", "qlib 0.9.7"), ("ours", "qlib-prefect")):
        if k in results:
            r = results[k]["result"]
            lines.append(f"| {name} | {r['first_s']:.3f} | {r['best_s']:.3f} | {r['first_cpu_s']:.3f} | "
                         f"{r['best_cpu_s']:.3f} | {r['days']} | {r['final_account']:.2f} |")
    if "qlib" in results and "ours" in results:
        q, o = results["qlib"]["result"], results["ours"]["result"]
        lines += ["", f"* Speed-up (wall): {q['first_s'] / o['first_s']:.0f}x first call, "
                  f"{q['best_s'] / o['best_s']:.0f}x best call; CPU: {q['best_cpu_s'] / o['best_cpu_s']:.0f}x. "
                  "Goal: well under 0.2 s (qlib ~6 s)."]
    if par is not None:
        lines.append(f"* Parity on this run: all 9 report columns, {par[1]} days, max relative difference "
                     f"{par[0]:.1e} vs qlib.")
    lines.append(END)
    return "\n".join(lines)



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=["qlib", "qlib_prefect"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rerun-qlib", action="store_true")
    p.add_argument("--skip-qlib", action="store_true")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.data, a.repeat, a.out)
        return 0

    OUT.mkdir(parents=True, exist_ok=True)
    data, how = data_dir()
    me = str(Path(__file__).resolve())
    results: dict[str, dict] = {}
    oracle = os.environ.get("QLIB_ORACLE_PYTHON", DEFAULT_ORACLE)
    qcache, qrep, orep = OUT / "qlib_backtest.json", OUT / "qlib_backtest_report.parquet", OUT / "ours_backtest.parquet"
    if qcache.exists() and qrep.exists() and not a.rerun_qlib:
        cached = json.loads(qcache.read_text())
        if cached.get("data") == str(data):
            results["qlib"] = cached["measure"]
    if "qlib" not in results and not a.skip_qlib and Path(oracle).exists():
        env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
        r = measure([oracle, me, "--child", "qlib", "--data", str(data), "--repeat", str(min(a.repeat, 2)),
                     "--out", str(qrep)], env=env, cwd=str(OUT))
        if r["returncode"] != 0 or not r.get("result"):
            print(f"qlib run failed:\n{r['stderr_tail']}", file=sys.stderr)
        else:
            results["qlib"] = r
            qcache.write_text(json.dumps({"data": str(data), "date": utc_now(), "measure": r}, indent=1))
    r = measure([sys.executable, me, "--child", "qlib_prefect", "--data", str(data), "--repeat", str(a.repeat),
                 "--out", str(orep)], env={**os.environ, "QLIB_PREFECT_HOME": str(OUT / "home")}, cwd=str(OUT))
    if r["returncode"] != 0 or not r.get("result"):
        raise SystemExit(f"qlib-prefect run failed:\n{r['stderr_tail']}")
    results["ours"] = r
    par = parity(orep, qrep) if "qlib" in results and qrep.exists() else None
    text = render(results, machine_info(), how, par)
    print(text)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", text, START, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
