"""Pydantic models of the qrun config structure."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from qlib_prefect.config.models import (
    EXCHANGE_KWARGS,
    QLIB_INIT_KEYS,
    BacktestConfig,
    ClassConfig,
    ExchangeKwargs,
    PortAnalysisConfig,
    QlibInitConfig,
    SysConfig,
    TaskConfig,
    WorkflowSpec,
)


def test_class_config() -> None:
    c = ClassConfig.model_validate({"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": None})
    assert c.class_ == "LGBModel" and c.class_name == "LGBModel" and c.kwargs == {}
    assert ClassConfig.model_validate({"class": int}).class_name == "int"
    with pytest.raises(ValidationError) as e:
        ClassConfig.model_validate({"class": "LGBModel", "kwarg": {}})
    assert e.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        ClassConfig.model_validate({"module_path": "x"})
    with pytest.raises(ValidationError, match="empty"):
        ClassConfig.model_validate({"class": " "})


def test_task_config_wraps_single_record() -> None:
    t = TaskConfig.model_validate({"model": {"class": "M"}, "dataset": {"class": "D"}, "record": {"class": "R"}})
    assert t.record == [{"class": "R"}]
    assert TaskConfig.model_validate({"model": 1, "dataset": 2}).record == []
    with pytest.raises(ValidationError) as e:
        TaskConfig.model_validate({"model": 1, "dataset": 2, "records": []})
    assert e.value.errors()[0]["loc"] == ("records",)


def test_top_level_keeps_anchor_blocks() -> None:
    spec = WorkflowSpec.model_validate(
        {"task": {"model": 1, "dataset": 2}, "market": "csi300", "data_handler_config": {"start_time": "2008-01-01"}}
    )
    assert spec.model_extra == {"market": "csi300", "data_handler_config": {"start_time": "2008-01-01"}}
    assert spec.experiment_name == "workflow"
    assert spec.qlib_init.provider_uri is None and spec.sys.path == []
    spec7 = WorkflowSpec.model_validate({"task": {"model": 1, "dataset": 2}, "experiment_name": 7})
    assert spec7.experiment_name == "7"
    with pytest.raises(ValidationError):
        WorkflowSpec.model_validate({"qlib_init": {}})  # no task


def test_qlib_init_allows_unknown_keys_but_checks_region() -> None:
    q = QlibInitConfig.model_validate({"provider_uri": "~/d", "region": "us", "custom_thing": 1})
    assert q.model_extra == {"custom_thing": 1}
    with pytest.raises(ValidationError, match="unknown region"):
        QlibInitConfig.model_validate({"region": "eu"})
    assert {"provider_uri", "region", "exp_manager", "mongo", "kernels", "trade_unit"} <= QLIB_INIT_KEYS


def test_sys_config_accepts_str_or_list() -> None:
    assert SysConfig.model_validate({"path": "/a", "rel_path": ["b", "c"]}).model_dump() == {
        "path": ["/a"],
        "rel_path": ["b", "c"],
    }
    with pytest.raises(ValidationError):
        SysConfig.model_validate({"paths": "/a"})


def test_backtest_and_exchange_kwargs() -> None:
    b = BacktestConfig.model_validate(
        {"start_time": "2017-01-01", "account": 1e8, "exchange_kwargs": {"deal_price": "close", "min_cost": 5}}
    )
    assert b.exchange_kwargs.min_cost == 5.0 and b.pos_type == "Position"
    with pytest.raises(ValidationError) as e:
        BacktestConfig.model_validate({"exchange_kwargs": {"open_cots": 0.1}})
    assert e.value.errors()[0]["loc"] == ("exchange_kwargs", "open_cots")
    with pytest.raises(ValidationError):
        PortAnalysisConfig.model_validate({"backtest": {}})  # strategy required
    assert PortAnalysisConfig.model_validate({"strategy": {"class": "S"}, "backtest": {}}).executor is None


def test_exchange_kwargs_list_matches_model_and_exchange() -> None:
    assert set(EXCHANGE_KWARGS) == set(ExchangeKwargs.model_fields)
    from qlib_prefect.backtest import exchange
    params = set(inspect.signature(exchange.Exchange).parameters) - {"provider"}
    assert params == set(EXCHANGE_KWARGS)
