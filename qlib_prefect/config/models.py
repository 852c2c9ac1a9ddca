"""Pydantic v2 models of a qrun-format workflow config (the structure; kwargs are checked by the loader).

Policy on unknown keys (see ``docs/config.md``):

* **top level** (:class:`WorkflowSpec`): known keys are typed (``qlib_init``, ``task``, ``experiment_name``,
  ``sys``, ``BASE_CONFIG_PATH``); any other key is **allowed and kept** -- qlib configs park YAML anchor blocks
  there (``market``, ``benchmark``, ``data_handler_config``, ``port_analysis_config``, ...). The loader warns
  when such a key is a near miss of a known one (``experiment_nme``).
* ``qlib_init`` (:class:`QlibInitConfig`): known qlib keys are typed; unknown keys are kept and **warned
  about**, as ``qlib.init`` does ("Unrecognized config ...").
* everything else forbids unknown keys: ``task``, class configs (``class``/``module_path``/``kwargs``),
  ``sys``, and PortAnaRecord's ``config`` (``strategy``/``executor``/``backtest``), its ``backtest`` block and
  ``exchange_kwargs``.

Values that may already be Python objects when a config is given as a dict (a model instance, a signal
DataFrame, a strategy object) are typed ``Any``.

Example:
    >>> ClassConfig.model_validate({"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt"}).class_
    'LGBModel'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "EXCHANGE_KWARGS",
    "QLIB_INIT_KEYS",
    "BacktestConfig",
    "ClassConfig",
    "ExchangeKwargs",
    "PortAnalysisConfig",
    "QlibInitConfig",
    "SysConfig",
    "TaskConfig",
    "WorkflowSpec",
]

#: every key qlib 0.9.7's ``C`` knows (default config, client/server modes, region defaults) plus the
#: ``qlib.init`` switches and qlib-prefect's own ``freq``; other ``qlib_init`` keys produce a warning.
QLIB_INIT_KEYS: frozenset[str] = frozenset(
    {
        "auto_mount", "calendar_cache", "calendar_provider", "custom_ops", "dataset_cache", "dataset_cache_dir_name",
        "dataset_provider", "deal_price", "default_disk_cache", "dump_protocol_version", "exp_manager",
        "expression_cache", "expression_provider", "feature_provider", "features_cache_dir_name",
        "instrument_provider", "joblib_backend", "kernels", "limit_threshold", "local_cache_path", "logging_config",
        "logging_level", "maxtasksperchild", "mem_cache_expire", "mem_cache_limit_type", "mem_cache_size_limit",
        "min_data_shift", "mongo", "mount_path", "pit_provider", "pit_record_nan", "pit_record_type", "provider",
        "provider_uri", "redis_host", "redis_password", "redis_port", "redis_task_db", "region", "timeout",
        "trade_unit", "flask_server", "flask_port",
        # qlib.init(...) switches, not config keys
        "default_conf", "skip_if_reg", "clear_mem_cache",
        # qlib-prefect
        "freq",
    }
)  # fmt: skip

#: qlib's ``Exchange.__init__`` keyword arguments (what ``backtest.exchange_kwargs`` may hold).
EXCHANGE_KWARGS: tuple[str, ...] = (
    "freq", "start_time", "end_time", "codes", "deal_price", "subscribe_fields", "limit_threshold",
    "volume_threshold", "open_cost", "close_cost", "min_cost", "impact_cost", "extra_quote", "trade_unit",
)  # fmt: skip


def _none_to_dict(v: Any) -> Any:
    return {} if v is None else v


class ClassConfig(BaseModel):
    """``{"class": ..., "module_path": ..., "kwargs": {...}}`` (qlib's class config)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    class_: Any = Field(alias="class", description="class name (str), 'module.Class', or a class object")
    module_path: Any = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    model_path: str | None = None  # accepted by qlib's get_callable_kwargs

    _none_kwargs = field_validator("kwargs", mode="before")(_none_to_dict)

    @field_validator("class_")
    @classmethod
    def _class_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("class name is empty")
            return v
        if isinstance(v, type):
            return v
        raise ValueError(f"expected a class name, got {type(v).__name__}")

    @property
    def class_name(self) -> str:
        return self.class_ if isinstance(self.class_, str) else self.class_.__name__


class TaskConfig(BaseModel):
    """``task``: model, dataset, records (a list or a single record) and an optional reweighter."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    model: Any
    dataset: Any
    record: list[Any] = Field(default_factory=list)
    reweighter: Any = None

    @field_validator("record", mode="before")
    @classmethod
    def _wrap_record(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if not isinstance(v, (list, tuple)) else list(v)


class SysConfig(BaseModel):
    """``sys``: extra ``sys.path`` entries, absolute (``path``) or relative to the config file (``rel_path``)."""

    model_config = ConfigDict(extra="forbid")

    path: list[str] = Field(default_factory=list)
    rel_path: list[str] = Field(default_factory=list)

    @field_validator("path", "rel_path", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v


class QlibInitConfig(BaseModel):
    """``qlib_init`` -> ``init(**qlib_init)``. Unknown keys are kept (the loader warns about them)."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    provider_uri: Any = None  # str, Path or {freq: uri}
    region: str | None = None
    exp_manager: dict[str, Any] | None = None
    mongo: dict[str, Any] | None = None
    kernels: int | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and v.lower() not in ("cn", "us", "tw"):
            raise ValueError(f"unknown region {v!r}; use one of 'cn', 'us', 'tw'")
        return v


class ExchangeKwargs(BaseModel):
    """``backtest.exchange_kwargs``: the keyword arguments of qlib's ``Exchange``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    freq: str | None = None
    start_time: Any = None
    end_time: Any = None
    codes: Any = None
    deal_price: Any = None
    subscribe_fields: Any = None
    limit_threshold: Any = None
    volume_threshold: Any = None
    open_cost: float | None = None
    close_cost: float | None = None
    min_cost: float | None = None
    impact_cost: float | None = None
    extra_quote: Any = None
    trade_unit: int | None = None


class BacktestConfig(BaseModel):
    """``backtest`` block of PortAnaRecord's config (the keyword arguments of ``backtest()``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    start_time: Any = None
    end_time: Any = None
    account: Any = 1e9  # cash, or {"cash": ..., "<code>": {"amount": ...}}
    benchmark: Any = "SH000300"
    exchange_kwargs: ExchangeKwargs = Field(default_factory=ExchangeKwargs)
    pos_type: str = "Position"

    _none_ek = field_validator("exchange_kwargs", mode="before")(_none_to_dict)


class PortAnalysisConfig(BaseModel):
    """PortAnaRecord's ``config``: ``strategy`` (required), ``executor`` (optional), ``backtest``."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    strategy: Any
    executor: Any = None
    backtest: BacktestConfig


class WorkflowSpec(BaseModel):
    """Top level of a qrun config. Unknown top-level keys (anchor holders) are allowed and kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, arbitrary_types_allowed=True)

    qlib_init: QlibInitConfig = Field(default_factory=QlibInitConfig)
    task: TaskConfig
    experiment_name: str = "workflow"
    sys: SysConfig = Field(default_factory=SysConfig)
    BASE_CONFIG_PATH: str | None = None

    _none_qi = field_validator("qlib_init", "sys", mode="before")(_none_to_dict)

    @field_validator("experiment_name", mode="before")
    @classmethod
    def _exp_name(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and not v.strip()):
            raise ValueError("must be a non-empty string")
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
