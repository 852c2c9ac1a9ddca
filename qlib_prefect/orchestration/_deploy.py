"""Deployments of the qlib flows: built from code (``qlib-prefect serve``) and one flow run per rolling window.

The same deployments are declared in ``deployments/prefect.yaml`` (for ``prefect deploy --all`` + a process
work pool); :func:`build_deployments` builds them from code for :func:`serve_deployments`:

* ``qlib-workflow/qlib-workflow``: parameter ``config`` (a qrun YAML path, or a config dict);
* ``qlib-rolling/rolling-retrain``: parameters ``config``, ``step``, ``rtype``; a cron schedule (weekdays
  after the US close) that extends the rolling model to the newest data and writes a new summary run;
* ``qlib-online-routine/online-routine``: parameter ``config`` (an online YAML, docs/online.md); a cron schedule
  (weekdays 17:30 New York time) running one online routine day (ingest, predict, retrain when due, promote,
  tomorrow's portfolio).

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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError, RecorderError

__all__ = [
    "DEFAULT_POOL",
    "DEPLOYMENTS",
    "ONLINE_CRON",
    "ROLLING_CRON",
    "ROLLING_TIMEZONE",
    "ROLLING_WINDOW_DEPLOYMENT",
    "WINDOW_DEPLOYMENT_ENV",
    "build_deployments",
    "jsonable_config",
    "rolling_window_flow",  # noqa: F822 - built on first access (module __getattr__)
    "run_rolling_on_workers",
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
#: weekdays 17:30 New York time: the daily online routine, after the close (before rolling-retrain).
ONLINE_CRON = "30 17 * * 1-5"
#: which deployment runs a qlib-workflow window for :func:`run_window_deployment` (default
#: ``qlib-workflow/qlib-workflow``).
WINDOW_DEPLOYMENT_ENV = "QLIB_PREFECT_WINDOW_DEPLOYMENT"
#: the deployment of :data:`rolling_window_flow` (one rolling window per flow run).
ROLLING_WINDOW_DEPLOYMENT = "qlib-rolling-window/rolling-window"

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
    "online-routine": {
        "module": "qlib_prefect.orchestration._online",
        "flow": "online_routine",
        "parameters": {"config": "online.yaml"},
        "cron": ONLINE_CRON,
        "timezone": ROLLING_TIMEZONE,
        "description": "One online routine day: ingest the CSV drops (quality gate), update predictions, retrain "
                       "when due, promote the champion, write tomorrow's target portfolio.",
        "tags": ["qlib", "online"],
    },
    "rolling-window": {
        "module": "qlib_prefect.orchestration._deploy",
        "flow": "rolling_window_flow",
        "parameters": {},
        "description": "One window of a rolling job (run_rolling_on_workers): trains it into the shared store.",
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
    online_config: str | None = None,
    online_cron: str | None = ONLINE_CRON,
) -> list[Any]:
    """``RunnerDeployment`` objects for :func:`prefect.serve` (``flow.to_deployment``), one per name.

    ``config`` is the qlib-workflow default, ``rolling_config`` (default: ``config``) with ``step``/``rtype``
    the rolling-retrain defaults; ``cron=None`` registers rolling-retrain without a schedule; ``online_config`` /
    ``online_cron`` the same for online-routine (``online_cron=None``: no schedule). A deployment
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
        if name == "online-routine" and online_config:
            params["config"] = str(online_config)
        when = online_cron if name == "online-routine" else cron
        if spec.get("cron") and when:
            from prefect.schedules import Cron

            kwargs["schedules"] = [Cron(when, timezone=timezone)]
        dep = flow.to_deployment(**kwargs)
        # the flow objects wrap private functions: point the entrypoint at the importable Flow object itself
        from prefect.types.entrypoint import EntrypointType

        dep.entrypoint = f"{spec['module']}.{spec['flow']}"
        dep._entrypoint_type = EntrypointType.MODULE_PATH
        dep._path = None
        out.append(dep)
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
    from qlib_prefect.config.settings import get_settings

    return deployment or get_settings().window_deployment or "qlib-workflow/qlib-workflow"


def _find_mlflow_run(flow_run_id: str, tracking_uri: str | None) -> Any:
    from qlib_prefect.workflow import get_client, resolve_uri, retry_locked

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


# ------------------------------------------------------------------------------------------ rolling on workers
def _make_window_flow() -> Any:
    from qlib_prefect.orchestration._leanflow import LeanFlow, results_dir
    from qlib_prefect.orchestration._rolling import train_rolling_window

    return LeanFlow(
        train_rolling_window, name="qlib-rolling-window", persist_result=True, result_serializer="json",
        result_storage=results_dir(), validate_parameters=False, log_prints=False,
        description="One window of a rolling job, trained into the shared content store.",
    )


def __getattr__(name: str) -> Any:  # the flow is built on first use (keeps this module import-light)
    if name == "rolling_window_flow":
        flow = _make_window_flow()
        globals()[name] = flow
        return flow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_rolling_on_workers(
    config: str | dict[str, Any],
    *,
    step: int = 40,
    rtype: str = "expanding",
    trunc_days: int | None = None,
    refit_processors: bool = True,
    experiment_name: str | None = None,
    refresh: bool = False,
    deployment: str = ROLLING_WINDOW_DEPLOYMENT,
    max_parallel: int = 8,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Rolling retraining with one flow run per window on Prefect workers, then the summary here.

    Every window not yet in the content store runs as a flow run of ``deployment`` (``run_deployment``;
    ``max_parallel`` at a time), on whichever workers poll its pool; then :data:`rolling_workflow` runs in this
    process, finds every window ``Cached`` and writes the window runs and the summary run. ``config`` is a
    path the workers can read, or a dict (sent as JSON parameters); the workers must share
    ``QLIB_PREFECT_HOME`` (content store and task results), the data directory and the MLflow store (a
    tracking server). Returns the rolling summary plus
    ``"dispatched"``: one dict per window flow run (flow run id, state, host, worker pid).
    """
    from prefect.deployments import run_deployment

    from qlib_prefect.orchestration._rolling import rolling_workflow
    from qlib_prefect.orchestration._store import ContentStore
    from qlib_prefect.orchestration._windows import SUMMARY_STAGE, WINDOW_STAGE, rolling_plan

    if isinstance(config, dict):  # the workers get it as JSON: plan from the same JSON form here
        config = jsonable_config(config)
    elif Path(str(config)).expanduser().is_file():
        config = str(Path(str(config)).expanduser().resolve())
    else:
        raise ConfigError(f"run_rolling_on_workers: config file {config!r} not found (the workers need a path "
                          "they can read, or pass the config as a dict)")
    _cfg, plan = rolling_plan(config, step=step, rtype=rtype, trunc_days=trunc_days,
                             refit_processors=refit_processors)
    store = ContentStore()
    todo = [w for w in plan.windows if refresh or not store.exists(WINDOW_STAGE, w.key)]
    if refresh:  # recompute: drop the old entries (windows here, summaries before the summary run)
        for w in todo:
            store.delete(WINDOW_STAGE, w.key)
        for key in plan.summaries.values():
            store.delete(SUMMARY_STAGE, key)
    logger.info("rolling on workers: %d of %d windows to train via %s", len(todo), len(plan.windows), deployment)

    def one(w: Any) -> dict[str, Any]:
        params = {"config": config, "index": w.index, "step": int(step), "rtype": rtype, "trunc_days": trunc_days,
                  "refit_processors": refit_processors, "expected_key": w.key, "refresh": refresh}
        fr = run_deployment(deployment, parameters=params, timeout=timeout, poll_interval=1.0,
                            flow_run_name=f"window-{w.index}-{w.test_label()}", as_subflow=False)
        state = fr.state
        info: dict[str, Any] = {"window": w.index, "flow_run_id": str(fr.id),
                                "state": getattr(state, "name", "?")}
        if state is None or not state.is_completed():
            raise RecorderError(f"rolling window {w.index} ({w.test_label()}): flow run {fr.name} ({fr.id}) of "
                                f"{deployment!r} ended in state {info['state']!r}: "
                                f"{getattr(state, 'message', '') or ''}")
        try:
            info.update(state.result())
        except Exception as e:  # the store entry is what matters; the result is a report
            logger.warning("window %d: flow run result unreadable (%s)", w.index, e)
        return info

    dispatched: list[Any] = []
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(todo))),
                                thread_name_prefix="qlib-window") as pool:
            futs = [pool.submit(contextvars.copy_context().run, _catch, one, w) for w in todo]
            dispatched = [f.result() for f in futs]
        errors = [d for d in dispatched if isinstance(d, Exception)]
        if errors:
            raise errors[0]
    missing = [w.index for w in todo if not store.exists(WINDOW_STAGE, w.key)]
    if missing:
        raise RecorderError(f"rolling on workers: windows {missing} completed on the workers but are not in the "
                            f"content store {store.root}: do the workers share QLIB_PREFECT_HOME?")
    summary = rolling_workflow(config, step=step, rtype=rtype, trunc_days=trunc_days,
                                        experiment_name=experiment_name, refresh=False,
                                        refit_processors=refit_processors)
    summary["dispatched"] = dispatched
    return summary


def _catch(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # re-raised by the caller after every window ended
        return e
