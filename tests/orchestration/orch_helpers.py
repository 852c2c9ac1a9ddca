"""Helpers for the orchestration tests: a small qlib-format data set and qrun-shaped configs."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
N_CODES = 30
START, END = "2015-01-01", "2017-06-30"


def make_small_data(dest: Path, *, end: str = END) -> Path:
    """30 stocks + SPX, 2015-01 .. ``end``, as a qlib-format directory (markets ``all`` and ``sp500``)."""
    from qlib_prefect.data.importer import import_frame
    from qlib_prefect.data.sample import SAMPLE_BENCHMARK, SAMPLE_MARKET, load_sample_frame

    df = load_sample_frame()
    codes = [*sorted(set(df["symbol"]) - {SAMPLE_BENCHMARK})[:N_CODES], SAMPLE_BENCHMARK]
    df = df[df["symbol"].isin(codes) & (df["date"] >= START) & (df["date"] <= end)]
    import_frame(df, dest, fields=["open", "high", "low", "close", "volume"],
                 markets={SAMPLE_MARKET: f"all-but:{SAMPLE_BENCHMARK}"}, quality=False)
    return dest


def small_config(data_dir: Path, mlflow_uri: str, *, topk: int = 10, lr: float = 0.2,
                 extra_records: list | None = None) -> dict[str, Any]:
    """A qrun-shaped LightGBM/Alpha158 task on the small data (20 boosting rounds)."""
    handler = {"start_time": "2015-01-02", "end_time": "2017-06-29", "fit_start_time": "2015-01-02",
               "fit_end_time": "2015-12-31", "instruments": "sp500"}
    port = {
        "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                     "kwargs": {"signal": "<PRED>", "topk": topk, "n_drop": 2}},
        "backtest": {"start_time": "2016-07-01", "end_time": "2017-06-28", "account": 100000000,
                     "benchmark": "SPX",
                     "exchange_kwargs": {"limit_threshold": None, "deal_price": "close", "open_cost": 0.0005,
                                         "close_cost": 0.0015, "min_cost": 5}},
    }
    return {
        "qlib_init": {"provider_uri": str(data_dir), "region": "us",
                      "exp_manager": {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                      "kwargs": {"uri": mlflow_uri, "default_exp_name": "Experiment"}}},
        "sys": {"path": [str(HERE)]},
        "task": {
            "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt",
                      "kwargs": {"loss": "mse", "learning_rate": lr, "num_leaves": 15, "num_threads": 1,
                                 "num_boost_round": 20}},
            "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset",
                        "kwargs": {"handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler",
                                               "kwargs": handler},
                                   "segments": {"train": ["2015-01-02", "2015-12-31"],
                                                "valid": ["2016-01-01", "2016-06-30"],
                                                "test": ["2016-07-01", "2017-06-29"]}}},
            "record": [
                {"class": "SignalRecord", "module_path": "qlib.workflow.record_temp",
                 "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}},
                {"class": "SigAnaRecord", "module_path": "qlib.workflow.record_temp",
                 "kwargs": {"ana_long_short": False, "ann_scaler": 252}},
                {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp",
                 "kwargs": {"config": copy.deepcopy(port)}},
                *(extra_records or []),
            ],
        },
    }



def small_task(**kw: Any) -> dict[str, Any]:
    return small_config(Path("/nonexistent"), "sqlite:///x.db", **kw)["task"]


def copy_data(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def env_for_subprocess(api_url: str, home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PREFECT_API_URL": api_url, "QLIB_PREFECT_HOME": str(home), **extra})
    return env
