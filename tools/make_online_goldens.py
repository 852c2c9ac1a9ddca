"""Produce the online-serving goldens in tests/golden/online/ with the REAL qlib (never run by the test suite).

    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \\
        /work/qlib-venv/bin/python tools/make_online_goldens.py [--out tests/golden/online]

On the handler goldens' qlib-format data (tests/golden/handlers/data: 24 instruments, 2019-01-02 .. 2020-09-09,
no future calendar) it runs qlib 0.9.7's ``OnlineManager(RollingStrategy(NAME, TASK, RollingGen(step=STEP,
rtype=ROLL_SD)), TrainerR(), begin_time=BEGIN).simulate(end_time=END)`` with a tiny Alpha158 + LightGBM task
(``TASK`` below; tests/online/test_online_golden.py imports it from this file's JSON output) and writes:

* ``goldens.json``: the inputs (task, step, begin, end), qlib's history (``[[date, [[model class, test start,
  test end], ...]], ...]`` in step order), its raw signal row count and date sequence (qlib re-appends the last
  signal date on every routine, D3), the final ``online_status`` tags per test segment;
* ``signals.csv``: qlib's signals de-duplicated by ``(datetime, instrument)`` keeping the last row (what qlib
  means), ``datetime,instrument,score``.

Deterministic: LightGBM runs with one thread and a fixed seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "golden" / "handlers" / "data"
NAME = "online_golden"
STEP = 20
BEGIN = "2020-03-13"
END = "2020-05-29"

TASK: dict = {
    "model": {
        "class": "LGBModel",
        "module_path": "qlib.contrib.model.gbdt",
        "kwargs": {"loss": "mse", "num_boost_round": 15, "num_leaves": 7, "learning_rate": 0.1, "num_threads": 1,
                   "seed": 7, "early_stopping_rounds": 50},
    },
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158",
                "module_path": "qlib.contrib.data.handler",
                "kwargs": {"start_time": "2019-03-01", "end_time": "2020-03-13", "fit_start_time": "2019-03-01",
                           "fit_end_time": "2019-12-31", "instruments": "mkt"},
            },
            "segments": {"train": ["2019-03-01", "2019-12-31"], "valid": ["2020-01-02", "2020-02-28"],
                         "test": ["2020-03-02", "2020-03-13"]},
        },
    },
    "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
}


def _seg(task: dict) -> list:
    s, e = task["dataset"]["kwargs"]["segments"]["test"]
    return [pd.Timestamp(s).date().isoformat(), None if e is None else pd.Timestamp(e).date().isoformat()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "tests" / "golden" / "online"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    import qlib
    from qlib.model.trainer import TrainerR
    from qlib.workflow import R
    from qlib.workflow.online.manager import OnlineManager
    from qlib.workflow.online.strategy import RollingStrategy
    from qlib.workflow.task.gen import RollingGen

    tmp = Path(tempfile.mkdtemp(prefix="online-golden-"))
    qlib.init(provider_uri=str(DATA), region="us",
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": f"file:{tmp / 'mlruns'}", "default_exp_name": "Experiment"}})
    strategy = RollingStrategy(NAME, copy.deepcopy(TASK), RollingGen(step=STEP, rtype=RollingGen.ROLL_SD))
    manager = OnlineManager(strategy, trainer=TrainerR(), begin_time=BEGIN)
    signals = manager.simulate(end_time=END)

    history = []
    for t, per in manager.history.items():
        recs = per[strategy]
        history.append([t.date().isoformat(),
                        sorted([rec.load_object("task")["model"]["class"], *_seg(rec.load_object("task"))]
                               for rec in recs)])
    tags = {}
    for rec in strategy.tool.online_models():
        tags["|".join(str(x) for x in _seg(rec.load_object("task")))] = "online"
    dates = signals.index.get_level_values("datetime")
    dedup = signals[~signals.index.duplicated(keep="last")].sort_index()
    frame = dedup.rename("score").reset_index()
    frame["datetime"] = frame["datetime"].dt.strftime("%Y-%m-%d")
    frame.to_csv(out / "signals.csv", index=False, float_format="%.17g")
    golden = {
        "qlib_version": qlib.__version__,
        "name": NAME, "step": STEP, "begin": BEGIN, "end": END, "task": TASK,
        "history": history,
        "online_segments": sorted(tags),
        "raw_rows": len(signals),
        "raw_dates": [d.date().isoformat() for d in pd.DatetimeIndex(dates).unique()],
        "raw_rows_per_date": {d.date().isoformat(): int(n) for d, n in pd.Series(dates).value_counts(sort=False)
                              .sort_index().items()},
        "n_recorders": len(R.list_recorders(experiment_name=NAME)),
    }
    (out / "goldens.json").write_text(json.dumps(golden, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}: {len(history)} history entries, {len(signals)} raw / {len(dedup)} unique signal rows")


if __name__ == "__main__":
    main()
