"""Task generation and management (qlib's ``qlib.workflow.task``): rolling / multi-horizon task generators
and trading-calendar helpers. This layer never imports prefect."""

from __future__ import annotations

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

__all__ = [
    "MultiHorizonGen",
    "MultiHorizonGenBase",
    "RollingGen",
    "TaskGen",
    "TimeAdjuster",
    "handler_mod",
    "horizon_label",
    "list_recorders",
    "task_generator",
    "transform_end_date",
    "trunc_segments",
    "validate_segments",
]
