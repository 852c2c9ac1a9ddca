"""Resolve qlib (and our own) class paths to qlib-prefect classes (and qlib's public functions/objects).

A qlib config names a class as ``{"class": "Alpha158", "module_path": "qlib.contrib.data.handler"}``.
Any ``module_path`` starting with ``qlib.`` (not ``qlib_prefect``) is looked up by class name in
:data:`QLIB_ALIASES`; our own module paths import directly.

Example:
    >>> resolve_class("LGBModel", "qlib.contrib.model.gbdt").__module__
    'qlib_prefect.model.gbdt'
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from qlib_prefect.errors import ConfigError

__all__ = ["QLIB_ALIASES", "is_qlib_module", "resolve_class"]

#: qlib class name -> qlib-prefect module holding the re-implementation.
QLIB_ALIASES: dict[str, str] = {
    # data
    "DatasetH": "qlib_prefect.data.dataset",
    "Dataset": "qlib_prefect.data.dataset",
    "TSDatasetH": "qlib_prefect.data.dataset",
    "DataHandler": "qlib_prefect.data.handler",
    "DataHandlerLP": "qlib_prefect.data.handler",
    "Alpha158": "qlib_prefect.data.handler",
    "Alpha360": "qlib_prefect.data.handler",
    "Alpha158vwap": "qlib_prefect.data.handler",
    "Alpha360vwap": "qlib_prefect.data.handler",
    "QlibDataLoader": "qlib_prefect.data.loader",
    "StaticDataLoader": "qlib_prefect.data.loader",
    "Alpha158DL": "qlib_prefect.data.loader",
    "Alpha360DL": "qlib_prefect.data.loader",
    "DropnaLabel": "qlib_prefect.data.processor",
    "DropnaProcessor": "qlib_prefect.data.processor",
    "DropnaFeature": "qlib_prefect.data.processor",
    "ProcessInf": "qlib_prefect.data.processor",
    "Fillna": "qlib_prefect.data.processor",
    "ZScoreNorm": "qlib_prefect.data.processor",
    "RobustZScoreNorm": "qlib_prefect.data.processor",
    "MinMaxNorm": "qlib_prefect.data.processor",
    "CSZScoreNorm": "qlib_prefect.data.processor",
    "CSRankNorm": "qlib_prefect.data.processor",
    "CSZFillna": "qlib_prefect.data.processor",
    "TanhProcess": "qlib_prefect.data.processor",
    "DropCol": "qlib_prefect.data.processor",
    "FilterCol": "qlib_prefect.data.processor",
    "HashStockFormat": "qlib_prefect.data.processor",
    "TimeRangeFlt": "qlib_prefect.data.processor",
    # data: instrument filters, operator classes (qlib.data.filter, qlib.data.ops, qlib.data.base)
    "BaseDFilter": "qlib_prefect.data.filter",
    "SeriesDFilter": "qlib_prefect.data.filter",
    "NameDFilter": "qlib_prefect.data.filter",
    "ExpressionDFilter": "qlib_prefect.data.filter",
    "Abs": "qlib_prefect.data.expression.operators",
    "Add": "qlib_prefect.data.expression.operators",
    "And": "qlib_prefect.data.expression.operators",
    "ChangeInstrument": "qlib_prefect.data.expression.operators",
    "Corr": "qlib_prefect.data.expression.operators",
    "Count": "qlib_prefect.data.expression.operators",
    "Cov": "qlib_prefect.data.expression.operators",
    "Delta": "qlib_prefect.data.expression.operators",
    "Div": "qlib_prefect.data.expression.operators",
    "EMA": "qlib_prefect.data.expression.operators",
    "ElemOperator": "qlib_prefect.data.expression.operators",
    "Eq": "qlib_prefect.data.expression.operators",
    "Expression": "qlib_prefect.data.expression.operators",
    "ExpressionOps": "qlib_prefect.data.expression.operators",
    "Feature": "qlib_prefect.data.expression.operators",
    "Ge": "qlib_prefect.data.expression.operators",
    "Greater": "qlib_prefect.data.expression.operators",
    "Gt": "qlib_prefect.data.expression.operators",
    "IdxMax": "qlib_prefect.data.expression.operators",
    "IdxMin": "qlib_prefect.data.expression.operators",
    "If": "qlib_prefect.data.expression.operators",
    "Kurt": "qlib_prefect.data.expression.operators",
    "Le": "qlib_prefect.data.expression.operators",
    "Less": "qlib_prefect.data.expression.operators",
    "Log": "qlib_prefect.data.expression.operators",
    "Lt": "qlib_prefect.data.expression.operators",
    "Mad": "qlib_prefect.data.expression.operators",
    "Mask": "qlib_prefect.data.expression.operators",
    "Max": "qlib_prefect.data.expression.operators",
    "Mean": "qlib_prefect.data.expression.operators",
    "Med": "qlib_prefect.data.expression.operators",
    "Min": "qlib_prefect.data.expression.operators",
    "Mul": "qlib_prefect.data.expression.operators",
    "Ne": "qlib_prefect.data.expression.operators",
    "Not": "qlib_prefect.data.expression.operators",
    "NpElemOperator": "qlib_prefect.data.expression.operators",
    "NpPairOperator": "qlib_prefect.data.expression.operators",
    "Operators": "qlib_prefect.data.expression.operators",
    "OpsList": "qlib_prefect.data.expression.operators",
    "OpsWrapper": "qlib_prefect.data.expression.operators",
    "Or": "qlib_prefect.data.expression.operators",
    "PFeature": "qlib_prefect.data.expression.operators",
    "PairOperator": "qlib_prefect.data.expression.operators",
    "PairRolling": "qlib_prefect.data.expression.operators",
    "Power": "qlib_prefect.data.expression.operators",
    "Quantile": "qlib_prefect.data.expression.operators",
    "Rank": "qlib_prefect.data.expression.operators",
    "Ref": "qlib_prefect.data.expression.operators",
    "Resi": "qlib_prefect.data.expression.operators",
    "Rolling": "qlib_prefect.data.expression.operators",
    "Rsquare": "qlib_prefect.data.expression.operators",
    "Sign": "qlib_prefect.data.expression.operators",
    "Skew": "qlib_prefect.data.expression.operators",
    "Slope": "qlib_prefect.data.expression.operators",
    "Std": "qlib_prefect.data.expression.operators",
    "Sub": "qlib_prefect.data.expression.operators",
    "Sum": "qlib_prefect.data.expression.operators",
    "Var": "qlib_prefect.data.expression.operators",
    "WMA": "qlib_prefect.data.expression.operators",
    # data: providers (qlib.data.data), composite loaders, utilities
    "Cal": "qlib_prefect.data.providers",
    "Inst": "qlib_prefect.data.providers",
    "FeatureD": "qlib_prefect.data.providers",
    "ExpressionD": "qlib_prefect.data.providers",
    "DatasetD": "qlib_prefect.data.providers",
    "CalendarProvider": "qlib_prefect.data.providers",
    "InstrumentProvider": "qlib_prefect.data.providers",
    "FeatureProvider": "qlib_prefect.data.providers",
    "ExpressionProvider": "qlib_prefect.data.providers",
    "DatasetProvider": "qlib_prefect.data.providers",
    "LocalCalendarProvider": "qlib_prefect.data.providers",
    "LocalInstrumentProvider": "qlib_prefect.data.providers",
    "LocalFeatureProvider": "qlib_prefect.data.providers",
    "LocalExpressionProvider": "qlib_prefect.data.providers",
    "LocalDatasetProvider": "qlib_prefect.data.providers",
    "D": "qlib_prefect.data.api",
    "init_task_handler": "qlib_prefect.data.task_handler",
    "replace_task_handler_with_cache": "qlib_prefect.data.task_handler",
    "hash_args": "qlib_prefect.data.task_handler",
    "CalendarStorage": "qlib_prefect.data.storage_faces",
    "InstrumentStorage": "qlib_prefect.data.storage_faces",
    "FeatureStorage": "qlib_prefect.data.storage_faces",
    "FileCalendarStorage": "qlib_prefect.data.storage_faces",
    "FileInstrumentStorage": "qlib_prefect.data.storage_faces",
    "FileFeatureStorage": "qlib_prefect.data.storage_faces",
    "NestedDataLoader": "qlib_prefect.data.composite",
    "DataLoaderDH": "qlib_prefect.data.composite",
    "DataLoader": "qlib_prefect.data.loader",
    "DLWParser": "qlib_prefect.data.loader",
    "Processor": "qlib_prefect.data.processor",
    "exists_qlib_data": "qlib_prefect.data.helpers",
    "get_date_by_shift": "qlib_prefect.data.helpers",
    "get_date_range": "qlib_prefect.data.helpers",
    "get_next_trading_date": "qlib_prefect.data.helpers",
    "get_pre_trading_date": "qlib_prefect.data.helpers",
    "guess_horizon": "qlib_prefect.data.helpers",
    # utils (qlib.utils, qlib.utils.time, qlib.log)
    "lazy_sort_index": "qlib_prefect.utils.helpers",
    "SingleData": "qlib_prefect.utils.index_data",
    "MultiData": "qlib_prefect.utils.index_data",
    "IndexData": "qlib_prefect.utils.index_data",
    "sum_by_index": "qlib_prefect.utils.index_data",
    "deepcopy_basic_type": "qlib_prefect.utils.helpers",
    "CN_TIME": "qlib_prefect.utils.sessions",
    "US_TIME": "qlib_prefect.utils.sessions",
    "TW_TIME": "qlib_prefect.utils.sessions",
    "get_module_logger": "qlib_prefect.utils.logs",
    "TimeInspector": "qlib_prefect.utils.logs",
    "init_instance_by_config": "qlib_prefect.utils",
    "get_callable_kwargs": "qlib_prefect.utils",
    "flatten_dict": "qlib_prefect.utils",
    # top-level objects and functions (qlib, qlib.workflow, qlib.backtest, qlib.contrib.evaluate, task.gen)
    "init": "qlib_prefect",
    "R": "qlib_prefect.workflow",
    "backtest": "qlib_prefect.backtest",
    "backtest_daily": "qlib_prefect.backtest.evaluate",
    "long_short_backtest": "qlib_prefect.backtest.evaluate",
    "get_exchange": "qlib_prefect.backtest.evaluate",
    "create_account_instance": "qlib_prefect.backtest.evaluate",
    "risk_analysis": "qlib_prefect.backtest.analysis",
    "indicator_analysis": "qlib_prefect.backtest.analysis",
    "task_generator": "qlib_prefect.task.gen",
    # model
    "Model": "qlib_prefect.model.base",
    "LGBModel": "qlib_prefect.model.gbdt",
    # workflow
    "MLflowExpManager": "qlib_prefect.workflow.expm",
    "ExpManager": "qlib_prefect.workflow.expm",
    "RecordTemp": "qlib_prefect.workflow.record_temp",
    "SignalRecord": "qlib_prefect.workflow.record_temp",
    "ACRecordTemp": "qlib_prefect.workflow.record_temp",
    "SigAnaRecord": "qlib_prefect.workflow.record_temp",
    "PortAnaRecord": "qlib_prefect.workflow.record_temp",
    "MultiPassPortAnaRecord": "qlib_prefect.workflow.record_temp",
    "MultiSegRecord": "qlib_prefect.workflow.contrib_record",
    "SignalMseRecord": "qlib_prefect.workflow.contrib_record",
    # backtest
    "TopkDropoutStrategy": "qlib_prefect.backtest.strategy",
    "WeightStrategyBase": "qlib_prefect.backtest.weight",
    "FileOrderStrategy": "qlib_prefect.backtest.rule_strategy",
    "TWAPStrategy": "qlib_prefect.backtest.rule_strategy",
    "SoftTopkStrategy": "qlib_prefect.backtest.weight",
    "OrderGenerator": "qlib_prefect.backtest.weight",
    "OrderGenWInteract": "qlib_prefect.backtest.weight",
    "OrderGenWOInteract": "qlib_prefect.backtest.weight",
    "BaseSignalStrategy": "qlib_prefect.backtest.strategy",
    "SimulatorExecutor": "qlib_prefect.backtest.executor",
    "NestedExecutor": "qlib_prefect.backtest.executor",
    "Exchange": "qlib_prefect.backtest.exchange",
    # backtest runtime objects (qlib.backtest.decision / position / report / utils, qlib.backtest)
    "collect_data": "qlib_prefect.backtest.engine",
    "format_decisions": "qlib_prefect.backtest.engine",
    "Order": "qlib_prefect.backtest.decision",
    "OrderDir": "qlib_prefect.backtest.decision",
    "OrderHelper": "qlib_prefect.backtest.decision",
    "TradeRange": "qlib_prefect.backtest.decision",
    "IdxTradeRange": "qlib_prefect.backtest.decision",
    "TradeRangeByTime": "qlib_prefect.backtest.decision",
    "BaseTradeDecision": "qlib_prefect.backtest.decision",
    "EmptyTradeDecision": "qlib_prefect.backtest.decision",
    "TradeDecisionWO": "qlib_prefect.backtest.decision",
    "TradeDecisionWithDetails": "qlib_prefect.backtest.decision",
    "BasePosition": "qlib_prefect.backtest.position",
    "Position": "qlib_prefect.backtest.position",
    "InfPosition": "qlib_prefect.backtest.position",
    "PortfolioMetrics": "qlib_prefect.backtest.report",
    "Indicator": "qlib_prefect.backtest.report",
    "TradeCalendarManager": "qlib_prefect.backtest.utils",
    "get_start_end_idx": "qlib_prefect.backtest.utils",
    # task
    "RollingGen": "qlib_prefect.task.gen",
    "MultiHorizonGenBase": "qlib_prefect.task.gen",
    "MultiHorizonGen": "qlib_prefect.task.gen",
    "TimeAdjuster": "qlib_prefect.task.utils",
    "Collector": "qlib_prefect.task.collect",
    "MergeCollector": "qlib_prefect.task.collect",
    "RecorderCollector": "qlib_prefect.task.collect",
    "Group": "qlib_prefect.task.ens",
    "RollingGroup": "qlib_prefect.task.ens",
    "RollingEnsemble": "qlib_prefect.task.ens",
    "AverageEnsemble": "qlib_prefect.task.ens",
    "SingleKeyEnsemble": "qlib_prefect.task.ens",
    "TaskManager": "qlib_prefect.task.manage",
    "TrainerR": "qlib_prefect.task.trainer",
    "DelayTrainerR": "qlib_prefect.task.trainer",
    "TrainerRM": "qlib_prefect.task.trainer_rm",
    "DelayTrainerRM": "qlib_prefect.task.trainer_rm",
    # online serving (qlib.workflow.online.*)
    "OnlineManager": "qlib_prefect.online.manager",
    "OnlineStrategy": "qlib_prefect.online.strategy",
    "RollingStrategy": "qlib_prefect.online.strategy",
    "OnlineTool": "qlib_prefect.online.utils",
    "OnlineToolR": "qlib_prefect.online.utils",
    "RMDLoader": "qlib_prefect.online.update",
    "RecordUpdater": "qlib_prefect.online.update",
    "DSBasedUpdater": "qlib_prefect.online.update",
    "PredUpdater": "qlib_prefect.online.update",
    "LabelUpdater": "qlib_prefect.online.update",
}


def is_qlib_module(module_path: str | None) -> bool:
    return bool(module_path) and (module_path == "qlib" or module_path.startswith("qlib."))


def resolve_class(cls_name: str, module_path: str | None = None, *, where: str = "class") -> type[Any]:
    """Return the class named ``cls_name``.

    ``module_path`` may be a qlib module (mapped through :data:`QLIB_ALIASES`), one of ours,
    or None (then the alias table decides). ``where`` is the config path used in error messages.
    """
    if module_path is None or is_qlib_module(module_path):
        target = QLIB_ALIASES.get(cls_name)
        if target is None:
            hint = difflib.get_close_matches(cls_name, QLIB_ALIASES, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            src = f" (module_path {module_path!r})" if module_path else ""
            raise ConfigError(f"{where}: unknown class {cls_name!r}{src}{extra}")
        module_path = target
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as e:
        raise ConfigError(f"{where}: cannot import module {module_path!r} for class {cls_name!r}: {e}") from e
    try:
        return getattr(module, cls_name)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(cls_name, names, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{where}: module {module_path!r} has no class {cls_name!r}{extra}") from None
