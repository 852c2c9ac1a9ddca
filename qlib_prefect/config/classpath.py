"""Resolve qlib (and our own) class paths to qlib-prefect classes.

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
    # backtest
    "TopkDropoutStrategy": "qlib_prefect.backtest.strategy",
    "BaseSignalStrategy": "qlib_prefect.backtest.strategy",
    "SimulatorExecutor": "qlib_prefect.backtest.executor",
    "Exchange": "qlib_prefect.backtest.exchange",
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
