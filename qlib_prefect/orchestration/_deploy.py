"""Deployments of the qlib flows: built from code (``qlib-prefect serve``) and one flow run per rolling window.

The same two deployments are declared in ``deployments/prefect.yaml`` (for ``prefect deploy --all`` + a process
work pool); :func:`build_deployments` builds them from code for :func:`serve_deployments`:

* ``qlib-workflow/qlib-workflow``: parameter ``config`` (a qrun YAML path, or a config dict);
* ``rolling-workflow/rolling-retrain``: parameters ``config``, ``step``, ``rtype``; a cron schedule (weekdays
  after the US close) that extends the rolling model to the newest data and writes a new summary run.

:func:`run_window_deployment` runs one rolling window (a complete qrun config dict) as a flow run of the
``qlib-workflow`` deployment on whatever worker picks it up and returns the MLflow run it wrote (found by the
``prefect.flow_run_id`` tag the flow sets); :func:`run_windows_on_deployments` fans a list of windows out in
parallel. Workers on other processes or machines must see the same data directory, MLflow store (a tracking
server when distributed) and content store (``QLIB_PREFECT_HOME`` on a shared disk).
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import importlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError, RecorderError

__all__ = [
    "DEFAULT_POOL",
    "DEPLOYMENTS",
    "ROLLING_CRON",
    "ROLLING_TIMEZONE",
    "WINDOW_DEPLOYMENT_ENV",
    "build_deployments",
    "jsonable_config",
    "run_window_deployment",
    "run_windows_on_deployments",
    "serve_deployments",
]

logger = logging.getLogger("qlib_prefect.orchestration")

#: the process work pool ``deployments/prefect.yaml`` targets.
DEFAULT_POOL = "qlib-local"
#: weekdays 18:30 New York time: after the US close, when the day's bars are in.
ROLLING_CRON = "30 18 * * 1-5"
ROLLING_TIMEZONE = "America/New_York"
#: which deployment runs a rolling window (default ``qlib-workflow/qlib-workflow``).
WINDOW_DEPLOYMENT_ENV = "QLIB_PREFECT_WINDOW_DEPLOYMENT"

_EXAMPLES = Path("examples") / "benchmarks" / "LightGBM"

#: name -> (flow module, flow attribute, default parameters); the same as ``deployments/prefect.yaml``.
DEPLOYMENTS: dict[str, dict[str, Any]] = {
    "qlib-workflow": {
        "module": "qlib_prefect.orchestration._flow",
        "flow": "qlib_workflow",
        "parameters": {"config": str(_EXAMPLES / "workflow_config_lightgbm_Alpha158.yaml")},
        "description": "Run a qrun-format workflow config (dataset, train, records) into one MLflow run.",
        "tags": ["qlib"],
    },
    "rolling-retrain": {
        "module": "qlib_prefect.orchestration._rolling",
        "flow": "rolling_workflow",
        "parameters": {"config": str(_EXAMPLES / "workflow_config_lightgbm_Alpha158.yaml"), "step": 20,
                       "rtype": "expanding"},
        "cron": ROLLING_CRON,
        "timezone": ROLLING_TIMEZONE,
        "description": "Extend the rolling model to the newest data (new windows only) and write a summary run.",
        "tags": ["qlib", "rolling"],
    },
}


def _load_flow(name: str) -> Any:
    spec = DEPLOYMENTS[name]
    return getattr(importlib.import_module(spec["module"]), spec["flow"])


def build_deployments(
    *,
    config: str | None = None,
    rolling_config: str | None = None,
    step: int | None = None,
    rtype: str | None = None,
    cron: str | None = ROLLING_CRON,
    timezone: str = ROLLING_TIMEZONE,
    names: Sequence[str] | None = None,
) -> list[Any]:
    """``RunnerDeployment`` objects for :func:`prefect.serve` (``flow.to_deployment``), one per name.

    ``config`` is the qlib-workflow default, ``rolling_config`` (default: ``config``) with ``step``/``rtype``
    the rolling-retrain defaults; ``cron=None`` registers rolling-retrain without a schedule. A deployment
    whose flow module is not importable (the rolling flow on an older checkout) is skipped with a warning
    unless it was asked for by name.
    """
    out = []
    wanted = list(names) if names else list(DEPLOYMENTS)
    for name in wanted:
        if name not in DEPLOYMENTS:
            raise ConfigError(f"unknown deployment {name!r}; known: {', '.join(DEPLOYMENTS)}")
        spec = DEPLOYMENTS[name]
        try:
            flow = _load_flow(name)
        except (ImportError, AttributeError) as e:
            if names:
                raise ConfigError(f"deployment {name!r}: cannot load {spec['module']}.{spec['flow']}: {e}") from e
            logger.warning("skipping deployment %s: %s", name, e)
            continue
        params = dict(spec["parameters"])
        if name == "qlib-workflow" and config:
            params["config"] = str(config)
        if name == "rolling-retrain":
            if rolling_config or config:
                params["config"] = str(rolling_config or config)
            if step is not None:
                params["step"] = int(step)
            if rtype is not None:
                params["rtype"] = str(rtype)
        kwargs: dict[str, Any] = {"name": name, "parameters": params, "description": spec["description"],
                                  "tags": list(spec["tags"])}
        if spec.get("cron") and cron:
            from prefect.schedules import Cron

            kwargs["schedules"] = [Cron(cron, timezone=timezone)]
        out.append(flow.to_deployment(**kwargs))
    return out


def serve_deployments(deployments: Sequence[Any], *, limit: int | None = None) -> None:
    """Serve ``deployments`` from this process until interrupted (``prefect.serve``)."""
    from prefect import serve

    if not deployments:
        raise ConfigError("serve: no deployment to serve")
    serve(*deployments, limit=limit)


# ------------------------------------------------------------------------------------------ window runs
def jsonable_config(obj: Any) -> Any:
    """A copy of a config with dates as ISO strings and tuples as lists (deployment parameters are JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable_config(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable_config(v) for v in obj]
    if isinstance(obj, (_dt.datetime, _dt.date)):
        text = obj.isoformat()
        return text[:10] if text.endswith("T00:00:00") or len(text) == 10 else text
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def _deployment_name(deployment: str | None) -> str:
    return deployment or os.environ.get(WINDOW_DEPLOYMENT_ENV) or "qlib-workflow/qlib-workflow"


def _find_mlflow_run(flow_run_id: str, tracking_uri: str | None) -> Any:
    from qlib_prefect.workflow._store import get_client, resolve_uri, retry_locked

    client = get_client(resolve_uri(tracking_uri))
    exps = retry_locked(lambda: client.search_experiments(max_results=10000))
    runs = retry_locked(lambda: client.search_runs(
        [e.experiment_id for e in exps], filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'",
        max_results=5))
    return runs[0] if runs else None


def run_window_deployment(
    config: dict[str, Any],
    *,
    experiment_name: str | None = None,
    deployment: str | None = None,
    flow_run_name: str | None = None,
    timeout: float | None = None,
    poll_interval: float = 2.0,
    tracking_uri: str | None = None,
    as_subflow: bool = True,
) -> dict[str, Any]:
    """Run one window (a complete qrun config dict) as a flow run of a ``qlib-workflow`` deployment.

    Blocks until the run ends (or ``timeout`` seconds). Returns ``{"flow_run_id", "state", "run_id",
    "experiment_id"}`` where ``run_id`` is the MLflow run the window wrote (looked up by its
    ``prefect.flow_run_id`` tag in ``tracking_uri``, default: the config's ``exp_manager`` URI). A run that
    does not complete raises :class:`RecorderError` naming the deployment, flow run and state.
    """
    from prefect.deployments import run_deployment

    name = _deployment_name(deployment)
    params: dict[str, Any] = {"config": jsonable_config(config)}
    if experiment_name:
        params["experiment_name"] = experiment_name
    flow_run = run_deployment(name, parameters=params, timeout=timeout, poll_interval=poll_interval,
                              flow_run_name=flow_run_name, as_subflow=as_subflow)
    state = flow_run.state
    state_name = getattr(state, "name", "?")
    if state is None or not state.is_completed():
        raise RecorderError(f"window flow run {flow_run.name} ({flow_run.id}) of deployment {name!r} ended in "
                            f"state {state_name!r}: {getattr(state, 'message', '') or ''}")
    if tracking_uri is None:
        em = ((config.get("qlib_init") or {}).get("exp_manager") or {}) if isinstance(config, dict) else {}
        tracking_uri = (em.get("kwargs") or {}).get("uri") if isinstance(em, dict) else None
    run = _find_mlflow_run(str(flow_run.id), tracking_uri)
    if run is None:
        raise RecorderError(f"window flow run {flow_run.id} of {name!r} completed but no MLflow run carries "
                            f"tag prefect.flow_run_id={flow_run.id} (tracking URI {tracking_uri or 'default'}); "
                            "do the workers share the MLflow store?")
    return {"flow_run_id": str(flow_run.id), "state": state_name, "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id}


def run_windows_on_deployments(
    configs: Sequence[dict[str, Any]],
    *,
    max_parallel: int = 8,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """:func:`run_window_deployment` for every config, ``max_parallel`` at a time; results in input order.

    The first failed window's error is raised after all windows ended (no half-collected result).
    """
    if not configs:
        return []
    def one(cfg: dict[str, Any]) -> Any:
        try:
            return run_window_deployment(cfg, **kwargs)
        except Exception as e:  # collected and re-raised below
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(configs))),
                            thread_name_prefix="qlib-window") as pool:
        futs = [pool.submit(contextvars.copy_context().run, one, c) for c in configs]
        results = [f.result() for f in futs]
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
    return results
