"""Orchestration: the qlib workflow as a Prefect 3 flow with stage caching.

``qlib_workflow(config)`` runs a qrun-format task config (dict, YAML path or ``WorkflowConfig``) as one Prefect
flow: a task per stage (dataset, train, one per record), each cached by a key built from the config it depends
on, its upstream keys, the data fingerprint and the code version (:class:`StageCachePolicy`). Stage results
live in the :class:`ContentStore`; every run publishes all of them into one MLflow run, reachable from tasks
through :func:`current_recorder`.

Importing this package does not import Prefect; the first use of one of its names does.

Example:
    >>> from qlib_prefect.orchestration import qlib_workflow  # doctest: +SKIP
    >>> summary = qlib_workflow("workflow_config_lightgbm_Alpha158.yaml")  # doctest: +SKIP
    >>> summary["metrics"]["IC"], summary["run_id"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qlib_prefect.orchestration._cache import StageCachePolicy
    from qlib_prefect.orchestration._deploy import (
        DEPLOYMENTS,
        ONLINE_CRON,
        ROLLING_CRON,
        ROLLING_TIMEZONE,
        build_deployments,
        run_rolling_on_workers,
        run_window_deployment,
        serve_deployments,
    )
    from qlib_prefect.orchestration._flow import current_recorder, plan_workflow, qlib_workflow, run_workflow
    from qlib_prefect.orchestration._leanflow import LeanFlow
    from qlib_prefect.orchestration._report import key_metrics, markdown_report, text_report
    from qlib_prefect.orchestration._rolling import (
        multi_horizon_workflow,
        rolling_workflow,
        run_multi_horizon,
        run_rolling,
        train_rolling_window,
    )
    from qlib_prefect.orchestration._settings import apply_env_defaults
    from qlib_prefect.orchestration._store import ContentStore
    from qlib_prefect.orchestration._windows import plan_multi_horizon, plan_rolling, rolling_plan

#: the public face: every name the CLI and users import from here (lazily: importing this package
#: does not import Prefect)
__all__ = [
    "DEPLOYMENTS",
    "ONLINE_CRON",
    "ROLLING_CRON",
    "ROLLING_TIMEZONE",
    "ContentStore",
    "LeanFlow",
    "StageCachePolicy",
    "apply_env_defaults",
    "build_deployments",
    "current_recorder",
    "key_metrics",
    "markdown_report",
    "multi_horizon_workflow",
    "plan_multi_horizon",
    "plan_rolling",
    "plan_workflow",
    "qlib_workflow",
    "rolling_plan",
    "rolling_workflow",
    "run_multi_horizon",
    "run_rolling",
    "run_rolling_on_workers",
    "run_window_deployment",
    "run_workflow",
    "serve_deployments",
    "text_report",
    "train_rolling_window",
]

_LAZY = {
    "apply_env_defaults": "qlib_prefect.orchestration._settings",
    "ContentStore": "qlib_prefect.orchestration._store",
    "LeanFlow": "qlib_prefect.orchestration._leanflow",
    "key_metrics": "qlib_prefect.orchestration._report",
    "markdown_report": "qlib_prefect.orchestration._report",
    "text_report": "qlib_prefect.orchestration._report",
    "StageCachePolicy": "qlib_prefect.orchestration._cache",
    "current_recorder": "qlib_prefect.orchestration._flow",
    "plan_workflow": "qlib_prefect.orchestration._flow",
    "qlib_workflow": "qlib_prefect.orchestration._flow",
    "run_workflow": "qlib_prefect.orchestration._flow",
    # rolling / multi-horizon retraining
    "multi_horizon_workflow": "qlib_prefect.orchestration._rolling",
    "plan_multi_horizon": "qlib_prefect.orchestration._windows",
    "plan_rolling": "qlib_prefect.orchestration._windows",
    "rolling_workflow": "qlib_prefect.orchestration._rolling",
    "run_multi_horizon": "qlib_prefect.orchestration._rolling",
    "run_rolling": "qlib_prefect.orchestration._rolling",
    "rolling_plan": "qlib_prefect.orchestration._windows",
    "train_rolling_window": "qlib_prefect.orchestration._rolling",
    # the daily online routine
    "online_routine": "qlib_prefect.orchestration._online",
    "ingest_drops": "qlib_prefect.orchestration._online",
    "online_strategy": "qlib_prefect.orchestration._online",
    "routine_history": "qlib_prefect.orchestration._online",
    "routine_text": "qlib_prefect.orchestration._online",
    "routine_portfolio": "qlib_prefect.orchestration._online",
    "portfolio_text": "qlib_prefect.orchestration._online",
    # the online simulate backfill
    "online_simulate": "qlib_prefect.orchestration._simulate",
    "simulate_text": "qlib_prefect.orchestration._simulate",
    # deployments and windows on workers
    "DEPLOYMENTS": "qlib_prefect.orchestration._deploy",
    "ROLLING_CRON": "qlib_prefect.orchestration._deploy",
    "ONLINE_CRON": "qlib_prefect.orchestration._deploy",
    "ROLLING_TIMEZONE": "qlib_prefect.orchestration._deploy",
    "build_deployments": "qlib_prefect.orchestration._deploy",
    "run_rolling_on_workers": "qlib_prefect.orchestration._deploy",
    "run_window_deployment": "qlib_prefect.orchestration._deploy",
    "serve_deployments": "qlib_prefect.orchestration._deploy",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
