"""A corpus of malformed configs: each fails validation with its key path in the message, all of them quickly.

A representative subset also runs through ``qlib-prefect run BAD.yaml`` processes:
tests/cli/test_cli_malformed_corpus.py (exit code 2, no traceback, no MLflow run, nothing cached).
"""

from __future__ import annotations

import copy
import time

import pytest
from test_semantics import BASE, CASES, PORT, _set

from qlib_prefect.config.loader import load_config
from qlib_prefect.errors import ConfigError

MODEL = ("task", "model")
HANDLER = ("task", "dataset", "kwargs", "handler")
STRAT = (*PORT, "strategy")
BT = (*PORT, "backtest")

CORPUS = {
    **{k: (p, v, e.split(":")[0].rsplit(" ", 1)[-1]) for k, (p, v, e) in CASES.items()},
    "task list": (("task",), [], "task"),
    "model null": (MODEL, None, "task.model"),
    "model kwargs list": ((*MODEL, "kwargs"), [1], "task.model.kwargs"),
    "model class int": ((*MODEL, "class"), 5, "task.model.class"),
    "model unknown module": ((*MODEL, "module_path"), "no_such_mod", "task.model.class"),
    "model unknown class": ((*MODEL, "class"), "LGBModle", "task.model.class"),
    "model unknown kwarg": ((*MODEL, "kwargs", "learnin_rate"), 0.1, "task.model.kwargs.learnin_rate"),
    "lgb string lr": ((*MODEL, "kwargs", "learning_rate"), "fast", "task.model.kwargs.learning_rate"),
    "lgb string depth": ((*MODEL, "kwargs", "max_depth"), "deep", "task.model.kwargs.max_depth"),
    "dataset null": (("task", "dataset"), None, "task.dataset"),
    "dataset unknown class": (("task", "dataset", "class"), "DatasetX", "task.dataset.class"),
    "handler unknown kwarg": ((*HANDLER, "kwargs", "instrument"), "csi300", "task.dataset.kwargs.handler.kwargs"),
    "handler unknown class": ((*HANDLER, "class"), "Alpha159", "task.dataset.kwargs.handler.class"),
    "segments list": (("task", "dataset", "kwargs", "segments"), [1, 2], "segments"),
    "segment three dates": (("task", "dataset", "kwargs", "segments", "valid"), ["2015-01-01", "2015-02-01", "x"],
                            "segments.valid"),
    "segment bad date": (("task", "dataset", "kwargs", "segments", "valid"), ["2015-13-45", "2016-01-01"],
                         "segments.valid"),
    "record unknown class": (("task", "record", 1, "class"), "SigAnaRecrd", "task.record.1.class"),
    "record unknown kwarg": (("task", "record", 1, "kwargs", "ana_long_shot"), True, "task.record.1.kwargs"),
    "record null": (("task", "record", 1), None, "task.record.1"),
    "port config list": ((*PORT,), [1], "task.record.2.kwargs.config"),
    "port no backtest": ((*PORT, "backtest"), None, "task.record.2.kwargs.config.backtest"),
    "strategy unknown class": ((*STRAT, "class"), "TopkDropout", "strategy.class"),
    "strategy unknown kwarg": ((*STRAT, "kwargs", "top_k"), 50, "strategy.kwargs.top_k"),
    "topk string": ((*STRAT, "kwargs", "topk"), "fifty", "strategy.kwargs.topk"),
    "n_drop negative": ((*STRAT, "kwargs", "n_drop"), -1, "strategy.kwargs.n_drop"),
    "account string": ((*BT, "account"), "lots", "backtest.account"),
    "account dict zero cash": ((*BT, "account"), {"cash": 0}, "backtest.account"),
    "exchange key in backtest": ((*BT, "limit_threshold"), 0.1, "backtest.limit_threshold"),
    "exchange unknown kwarg": ((*BT, "exchange_kwargs", "deal_prize"), "close", "exchange_kwargs.deal_prize"),
    "backtest reversed": ((*BT, "start_time"), "2020-09-01", "backtest.start_time"),
    "backtest before test": ((*BT, "start_time"), "2015-06-01", "backtest.start_time"),
    "experiment name empty": (("experiment_name",), "", "experiment_name"),
    "sys path int": (("sys",), {"path": 5}, "sys.path"),
    "DATASET typo": (("task", "record", 0, "kwargs", "dataset"), "<DATSET>", "task.record.0.kwargs.dataset"),
    "PRED typo": ((*STRAT, "kwargs", "signal"), "<PERD>", "strategy.kwargs.signal"),
}


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_malformed_config_is_refused_with_its_key_path(case):
    path, value, key = CORPUS[case]
    raw = copy.deepcopy(BASE)
    _set(raw, path, value) if path != ("task",) else raw.__setitem__("task", value)
    t = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load_config(raw)
    assert time.monotonic() - t < 3
    assert key in str(e.value), str(e.value)
