"""Task generation and management (qlib's ``qlib.workflow.task`` and ``qlib.model.trainer``/``ens``).

Rolling / multi-horizon task generators and trading-calendar helpers are imported eagerly (cheap); collectors,
ensembles, trainers and the MongoDB ``TaskManager`` on first use (they pull in MLflow, LightGBM, pymongo).
This layer never imports prefect.
"""

from __future__ import annotations

import importlib
from typing import Any

from qlib_prefect.task.gen import (
    MultiHorizonGen,
    MultiHorizonGenBase,
    RollingGen,
    TaskGen,
    handler_mod,
    horizon_label,
    task_generator,
    trunc_segments,
    validate_segments,
)
from qlib_prefect.task.utils import TimeAdjuster, list_recorders, transform_end_date

_LAZY = {
    **dict.fromkeys(["Collector", "MergeCollector", "RecorderCollector"], "qlib_prefect.task.collect"),
    **dict.fromkeys(
        ["AverageEnsemble", "Group", "RollingEnsemble", "RollingGroup", "SingleKeyEnsemble"], "qlib_prefect.task.ens"
    ),
    **dict.fromkeys(
        ["DelayTrainerR", "Trainer", "TrainerR", "begin_task_train", "end_task_train", "task_train"],
        "qlib_prefect.task.trainer",
    ),
    **dict.fromkeys(["DelayTrainerRM", "TrainerRM"], "qlib_prefect.task.trainer_rm"),
    **dict.fromkeys(["TaskManager", "run_task"], "qlib_prefect.task.manage"),
}

__all__ = [
    "AverageEnsemble",
    "Collector",
    "DelayTrainerR",
    "DelayTrainerRM",
    "Group",
    "MergeCollector",
    "MultiHorizonGen",
    "MultiHorizonGenBase",
    "RecorderCollector",
    "RollingEnsemble",
    "RollingGen",
    "RollingGroup",
    "SingleKeyEnsemble",
    "TaskGen",
    "TaskManager",
    "TimeAdjuster",
    "Trainer",
    "TrainerR",
    "TrainerRM",
    "begin_task_train",
    "end_task_train",
    "handler_mod",
    "horizon_label",
    "list_recorders",
    "run_task",
    "task_generator",
    "task_train",
    "transform_end_date",
    "trunc_segments",
    "validate_segments",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
