"""qlib's ``examples/workflow_by_code.py`` on the bundled S&P 500 sample (no download, no qlib).

Train LightGBM on Alpha158 (2013-2015, valid 2016), predict 2017-01-01..2018-02-07, then record the signal,
its IC analysis and a TopkDropout backtest against SPX -- all in one MLflow run. Run it with

    .venv/bin/python examples/workflow_by_code.py [--uri sqlite:///mlruns/mlflow.db] [--fast]

Differences from qlib's script: the S&P sample replaces csi300 (market ``sp500``, benchmark ``SPX``, region
``us``); the strategy gets the recorded prediction through ``"<PRED>"`` (qlib passes ``(model, dataset)``, which
re-predicts the same test segment); ``--fast`` shrinks the model for a quick smoke run.
"""

from __future__ import annotations

import argparse

import qlib_prefect
from qlib_prefect.data.sample import SAMPLE_BENCHMARK, SAMPLE_MARKET, SAMPLE_REGION, sample_data_dir
from qlib_prefect.utils import flatten_dict, init_instance_by_config
from qlib_prefect.workflow import R
from qlib_prefect.workflow.record_temp import PortAnaRecord, SigAnaRecord, SignalRecord

TRAIN, VALID, TEST = ("2013-01-01", "2015-12-31"), ("2016-01-01", "2016-12-31"), ("2017-01-01", "2018-02-07")

TASK = {
    "model": {  # qlib.tests.config.GBDT_MODEL
        "class": "LGBModel",
        "module_path": "qlib.contrib.model.gbdt",
        "kwargs": {"loss": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.0421, "subsample": 0.8789,
                   "lambda_l1": 205.6999, "lambda_l2": 580.9768, "max_depth": 8, "num_leaves": 210,
                   "num_threads": 20},
    },
    "dataset": {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {
                "class": "Alpha158",
                "module_path": "qlib.contrib.data.handler",
                "kwargs": {"start_time": TRAIN[0], "end_time": TEST[1], "fit_start_time": TRAIN[0],
                           "fit_end_time": TRAIN[1], "instruments": SAMPLE_MARKET},
            },
            "segments": {"train": TRAIN, "valid": VALID, "test": TEST},
        },
    },
}

PORT_ANALYSIS_CONFIG = {
    "executor": {
        "class": "SimulatorExecutor",
        "module_path": "qlib.backtest.executor",
        "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True},
    },
    "strategy": {
        "class": "TopkDropoutStrategy",
        "module_path": "qlib.contrib.strategy.signal_strategy",
        "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5},
    },
    "backtest": {
        "start_time": TEST[0],
        "end_time": TEST[1],
        "account": 100000000,
        "benchmark": SAMPLE_BENCHMARK,
        "exchange_kwargs": {"freq": "day", "limit_threshold": None, "deal_price": "close",
                            "open_cost": 0.0005, "close_cost": 0.0015, "min_cost": 5},
    },
}


def main(uri: str | None = None, fast: bool = False) -> dict[str, float]:
    """Run the workflow; returns the run's metrics."""
    init_kwargs: dict = {"provider_uri": sample_data_dir(), "region": SAMPLE_REGION}
    if uri:
        init_kwargs["exp_manager"] = {"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                      "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}
    qlib_prefect.init(**init_kwargs)
    if fast:
        TASK["model"]["kwargs"].update(num_leaves=31, learning_rate=0.2, num_threads=2)
    model = init_instance_by_config(TASK["model"])
    dataset = init_instance_by_config(TASK["dataset"])

    with R.start(experiment_name="workflow"):
        R.log_params(**flatten_dict(TASK))
        model.fit(dataset)
        R.save_objects(**{"params.pkl": model})
        recorder = R.get_recorder()
        SignalRecord(model=model, dataset=dataset, recorder=recorder).generate()
        SigAnaRecord(recorder=recorder).generate()
        PortAnaRecord(recorder=recorder, config=PORT_ANALYSIS_CONFIG, risk_analysis_freq="day").generate()
        recorder.flush()
        metrics = recorder.list_metrics()
    for key in ("IC", "ICIR", "Rank IC", "Rank ICIR", "1day.excess_return_with_cost.annualized_return",
                "1day.excess_return_with_cost.information_ratio", "1day.excess_return_with_cost.max_drawdown"):
        print(f"{key:>50s}: {metrics.get(key, float('nan')):.4f}")
    print(f"recorder {recorder.id} in experiment 'workflow' at {R.get_uri()}")
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default=None, help="MLflow tracking URI (default: ./mlruns/mlflow.db)")
    parser.add_argument("--fast", action="store_true", help="a smaller model for a quick smoke run")
    args = parser.parse_args()
    main(args.uri, args.fast)
