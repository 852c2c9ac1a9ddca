"""Walk-through of the daily online routine on the bundled S&P 500 sample (docs/online.md).

1. materialise the sample as it was on 2017-06-30 (a qlib-format directory with the data up to that day);
2. first train (``online_routine`` on an experiment without online models = ``qlib-prefect online init``);
3. drop the later days one CSV per day into the drop folder and run the routine for each: the new rows are
   appended (quality gate), the online model's predictions extended, a new window trained when 20 trading days
   have passed, the champion alias moved, tomorrow's TopkDropout portfolio (topk 50, n_drop 5) written, and the
   day recorded in MLflow.

    python examples/online_walkthrough.py --days 5 [--workdir ./online_demo]

Everything lands in ``--workdir`` (data, drops, ``mlruns/mlflow.db``); run it again with more ``--days`` to go on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

CUT = pd.Timestamp("2017-06-30")
FIELDS = ["open", "high", "low", "close", "volume"]


def template() -> dict:
    return {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                  "kwargs": {"loss": "mse", "num_boost_round": 50, "num_leaves": 31, "learning_rate": 0.1,
                             "num_threads": 2, "seed": 1}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {
            "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                        "kwargs": {"start_time": "2015-01-02", "end_time": "2017-06-30",
                                   "fit_start_time": "2015-01-02", "fit_end_time": "2016-12-30",
                                   "instruments": "sp500"}},
            "segments": {"train": ["2015-01-02", "2016-12-30"], "valid": ["2017-01-03", "2017-05-31"],
                         "test": ["2017-06-01", "2017-06-30"]}}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                    "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}}],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=5, help="routine days after 2017-06-30")
    ap.add_argument("--workdir", default="online_demo")
    args = ap.parse_args()

    from qlib_prefect.data.importer import import_frame
    from qlib_prefect.data.sample import load_sample_frame
    from qlib_prefect.orchestration import online_routine, portfolio_text, routine_history, routine_portfolio

    work = Path(args.workdir).resolve()
    data, drops = work / "data", work / "drops"
    frame = load_sample_frame()
    if not data.exists():
        import_frame(frame[frame["date"] <= CUT], data, fields=FIELDS, markets={"sp500": "all-but:SPX"})
    drops.mkdir(parents=True, exist_ok=True)
    (work / "mlruns").mkdir(exist_ok=True)
    config = {
        "qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
            "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
            "kwargs": {"uri": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"}}},
        "online": {"name": "sp500_online", "source": str(drops), "step": 20, "rtype": "sliding",
                   "trunc_days": 2, "fields": FIELDS, "account": 1e8,
                   "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                "kwargs": {"topk": 50, "n_drop": 5}}},
        "task": template(),
    }
    print(online_routine(config))  # first train when nothing is online yet, else a routine on the data as it is
    later = sorted(frame.loc[frame["date"] > CUT, "date"].unique())[: args.days]
    for day in later:
        drop = drops / f"{pd.Timestamp(day).date()}.csv"
        if not drop.exists():
            day_rows = frame[frame["date"] == day].assign(date=lambda f: f["date"].dt.strftime("%Y-%m-%d"))
            day_rows.to_csv(drop, index=False)
        out = online_routine(config)
        print(out["date"], "new:", out["new"], "champion:", out["champion"])
    print(routine_history(config).to_string(index=False))
    print(portfolio_text(*routine_portfolio(config)))  # tomorrow's target positions and orders


if __name__ == "__main__":
    main()
