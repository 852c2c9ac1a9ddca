"""The stand-in of ``qlib.tests.TestAutoData`` for the ported qlib tests: ``init()`` on the bundled-data cut in
tests/golden/api/data (6 S&P stocks + SPX, 2016), with the class's ``_setup_kwargs`` (e.g. ``custom_ops``)."""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import Any, ClassVar

import qlib_prefect

DATA = Path(__file__).resolve().parents[1] / "golden" / "api" / "data"
#: qlib's instruments in its tests -> ours
STOCK, BENCH, MARKET = "AAPL", "SPX", "sp500"

# -- qlib.tests.config on the cut: csi300 -> sp500, SH000300 -> SPX, the 2008..2020 segments -> 2016 (train
#    Jan-May, valid Jun-Aug, test Sep-Dec), LightGBM ``num_threads`` 20 -> 1 (a 2-core CI)
CSI300_BENCH = BENCH
CSI300_MARKET = MARKET
GBDT_MODEL = {
    "class": "LGBModel",
    "module_path": "qlib.contrib.model.gbdt",
    "kwargs": {
        "loss": "mse",
        "colsample_bytree": 0.8879,
        "learning_rate": 0.0421,
        "subsample": 0.8789,
        "lambda_l1": 205.6999,
        "lambda_l2": 580.9768,
        "max_depth": 8,
        "num_leaves": 210,
        "num_threads": 1,
    },
}


def get_dataset_config(train, valid, test, handler_kwargs):
    return {
        "class": "DatasetH",
        "module_path": "qlib.data.dataset",
        "kwargs": {
            "handler": {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": handler_kwargs},
            "segments": {"train": train, "valid": valid, "test": test},
        },
    }


CSI300_GBDT_TASK = {
    "model": GBDT_MODEL,
    "dataset": get_dataset_config(
        train=("2016-01-04", "2016-05-31"),
        valid=("2016-06-01", "2016-08-31"),
        test=("2016-09-01", "2016-12-30"),
        handler_kwargs={
            "start_time": "2016-01-04",
            "end_time": "2016-12-30",
            "fit_start_time": "<dataset.kwargs.segments.train.0>",
            "fit_end_time": "<dataset.kwargs.segments.train.1>",
            "instruments": CSI300_MARKET,
        },
    ),
}


class TestAutoData(unittest.TestCase):
    _setup_kwargs: ClassVar[dict[str, Any]] = {}
    provider_uri = str(DATA)

    @classmethod
    def setUpClass(cls) -> None:
        qlib_prefect.init(provider_uri=str(DATA), region="us", **cls._setup_kwargs)

    @classmethod
    def tearDownClass(cls) -> None:
        qlib_prefect.init()  # drop custom operators and the data path
