"""The ``qlib_workflow`` Prefect flow: one qrun task config -> dataset, train and record stages -> one MLflow run.

Each stage is a Prefect task cached with :class:`StageCachePolicy` (key = precomputed stage key). Stages write
into the content store; a never-cached ``publish`` task copies every stage's artifacts and metrics into the
flow's single MLflow run, also when the stages came from cache.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

from prefect import task
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from qlib_prefect.config import runtime
from qlib_prefect.config.hashing import canonical_json
from qlib_prefect.data.cache import wait_for_pending_writes
from qlib_prefect.errors import ConfigError, QlibPrefectError, RecorderError, StageError
from qlib_prefect.orchestration._cache import StageCachePolicy, StageSpec, build_plan, env_hash
from qlib_prefect.orchestration._leanflow import (
    LeanFlow,
    flow_run_id,
    load_workflow_config,
    results_dir,
    state_name,
    warm_tracking,
)
from qlib_prefect.orchestration._publish import publish_task, recorder_for_run
from qlib_prefect.orchestration._report import mlflow_ui_command, prefect_artifact
from qlib_prefect.orchestration._settings import abort_after_interrupt
from qlib_prefect.orchestration._stages import RunContext, clear_memo, dataset_users, get_dataset, release, run_stage
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.tweaks.prefect_server import expect_task_runs
from qlib_prefect.utils.redaction import redact

__all__ = ["current_recorder", "plan_workflow", "qlib_workflow", "run_workflow"]

logger = logging.getLogger("qlib_prefect.orchestration")

CONFIG_HASH_TAG = "qlib_prefect.config_hash"
FINGERPRINT_TAG = "qlib_prefect.data_fingerprint"
VERSION_TAG = "qlib_prefect.version"
FLOW_RUN_TAG = "prefect.flow_run_id"

_CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("qlib_prefect_current_recorder", default=None)


def current_recorder(run_id: str | None = None, uri: str | None = None) -> Any:
    """The MLflow recorder of the running ``qlib_workflow`` (flow context; copied into task threads).

    Other task runners (processes, Dask) do not carry the context: pass the run's ``run_id`` (and tracking
    ``uri``) explicitly to get a recorder for the same run.
    """
    rec = _CURRENT.get()
    if rec is not None and (run_id is None or rec.id == run_id):
        return rec
    if run_id is None:
        raise RecorderError("current_recorder: no qlib_workflow run is active here; pass run_id= explicitly")
    return recorder_for_run(run_id, uri)


# ------------------------------------------------------------------------------------------ config loading
#: the ``qlib_init`` this module last initialised with, and the config generation that produced (any later
#: ``init()``, ours or a user's, changes the generation and so invalidates the reuse below).
_INIT: dict[str, Any] = {"qinit": None, "generation": None}


def _init_runtime(cfg: Any, *, reuse: bool = False) -> tuple[str, str]:
    """``init(**qlib_init)`` (skipped with ``reuse`` when this process was last initialised with the same
    ``qlib_init`` by this module); returns (data fingerprint, env hash)."""
    import qlib_prefect
    from qlib_prefect.data.registry import get_provider

    qinit = cfg.qlib_init
    try:
        sig = canonical_json(qinit)
    except TypeError:
        sig = None
    if not (reuse and sig is not None and runtime.is_initialized() and _INIT["qinit"] == sig
            and _INIT["generation"] == runtime.generation()):
        qlib_prefect.init(**qinit)
        _INIT.update(qinit=sig, generation=runtime.generation())
    try:
        fingerprint = get_provider().fingerprint()
    except QlibPrefectError:
        raise
    except Exception as e:
        raise ConfigError(f"qlib_init.provider_uri: cannot read the data directory: {e}") from e
    return fingerprint, env_hash(qinit)


def plan_workflow(config: Any) -> list[dict[str, Any]]:
    """The stages of a config with their keys and whether each is complete in the content store (no run)."""
    from qlib_prefect._version import code_version

    cfg = load_workflow_config(config)
    from qlib_prefect.workflow.config_check import check_workflow_config

    check_workflow_config(cfg)  # the CLI's pre-flight checks for the Python API: dates, market, benchmark, fields
    fingerprint, env = _init_runtime(cfg)
    store = ContentStore()
    return [
        {"stage": s.name, "key": s.key, "upstream": list(s.upstream), "stored": store.exists(s.store_stage, s.key)}
        for s in build_plan(cfg.task, fingerprint=fingerprint, env=env, version=code_version())
    ]


# ------------------------------------------------------------------------------------------ tasks
def _stage_fn(ctx: RunContext, spec: StageSpec, stage_key: str) -> dict[str, Any]:
    from prefect import get_run_logger

    get_run_logger().info("computing %s (key %s)", spec.name, stage_key[:16])
    t0 = time.perf_counter()
    try:
        ref = run_stage(ctx, spec)
        ref["seconds"] = round(time.perf_counter() - t0, 3)  # what computing it took (a cached result keeps it)
        return ref
    except QlibPrefectError:
        raise
    except Exception as e:  # a library's error: say which stage and config (the original stays the cause)
        src = ctx.extra.get("config_file") or "the config"
        raise StageError(
            f"stage {spec.name} failed: {type(e).__name__}: {e} (config {src}; check that stage's keys, "
            "or rerun with --traceback for the library's traceback)"
        ) from e


def _stage_task(spec: StageSpec, refresh: bool) -> Any:
    return task(
        _stage_fn,
        name=spec.name if spec.kind == "record" else {"dataset": "prepare-dataset", "train": "train-model"}[spec.kind],
        task_run_name=f"{spec.name}-{spec.key[:8]}",
        cache_policy=StageCachePolicy(),
        persist_result=True,
        result_storage=results_dir(),
        result_serializer="json",
        refresh_cache=refresh,
        retries=0,
    )


# ------------------------------------------------------------------------------------------ the flow
def _workflow(
    config: Any,
    experiment_name: str | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Run a qrun task config (dict, YAML path or ``WorkflowConfig``) as Prefect tasks; returns a summary."""

    from qlib_prefect._version import __version__, code_version
    from qlib_prefect.report import build_run_report, report_link
    from qlib_prefect.utils import flatten_dict
    from qlib_prefect.workflow import R

    t0 = time.perf_counter()
    cfg = load_workflow_config(config)
    fingerprint, env = _init_runtime(cfg, reuse=True)
    plan = build_plan(cfg.task, fingerprint=fingerprint, env=env, version=code_version())
    by_name = {s.name: s for s in plan}
    store = ContentStore()
    exp_name = cfg.resolve_experiment_name(experiment_name or "workflow")

    exp = R.start_exp(experiment_name=exp_name, recorder_name="mlflow_recorder")
    recorder = exp.active_recorder
    token = _CURRENT.set(recorder)
    states: dict[str, str] = {}
    seconds: dict[str, float | None] = {}  # computed stages only: a cached stage took no time in this run
    fr_id = flow_run_id()
    try:
        task_cfg = cfg.task
        recorder.log_params(**flatten_dict(task_cfg))
        recorder.save_objects(task=task_cfg)
        recorder.set_tags(**{
            CONFIG_HASH_TAG: cfg.config_hash(), FINGERPRINT_TAG: fingerprint, VERSION_TAG: __version__,
            FLOW_RUN_TAG: fr_id, "hostname": _hostname(),
        })
        ctx = RunContext(task=task_cfg, plan=by_name, store_root=str(store.root),
                         experiment_id=recorder.experiment_id,
                         extra={"dataset_users": dataset_users(plan), "refresh": refresh,
                                "config_file": str(cfg.path) if cfg.path is not None else ""})
        futures: dict[str, Any] = {}
        for spec in plan:
            stale = refresh or not store.exists(spec.store_stage, spec.key)
            t = _stage_task(spec, stale)
            futures[spec.name] = t.submit(quote(ctx), quote(spec), spec.key,
                                          wait_for=[futures[u] for u in spec.upstream])
            futures[spec.name].add_done_callback(lambda _f, n=spec.name: release(ctx, n))
        failed: list[str] = []
        refs = []
        for spec in plan:
            fut = futures[spec.name]
            fut.wait()
            state = fut.state
            states[spec.name] = state_name(state)
            if state.is_completed():
                refs.append(fut.result())
                if states[spec.name] == "Completed":
                    seconds[spec.name] = refs[-1].get("seconds")
            else:
                failed.append(spec.name)
        if failed:
            first = futures[failed[0]]
            first.result(raise_on_failure=True)  # re-raises the stage's own exception
            raise RecorderError(f"stages did not complete: {', '.join(failed)}")
        latest = publish_task(refs, recorder.id, recorder.uri)
        # report.html, ledgers, MLflow 3 entries; its signal sections are reused while the signal stages are unchanged
        report = build_run_report(recorder, config=cfg.raw, strict=False, cache_key=_signal_key(plan))
        expect_task_runs(fr_id, len(plan) + 1)  # the stages and publish: recorded before the server stops
        metrics = {**recorder.list_metrics(), **latest}
        summary = _summary(cfg, recorder, exp_name, plan, states, metrics, t0, seconds)
        summary["report_url"] = report_link(recorder) if report is not None else None
        recorder.save_objects(config=redact(cfg.raw))  # no credentials in artifacts
        prefect_artifact(summary, key="qlib-workflow-results", title="qlib workflow results")
    except BaseException as e:
        abort_after_interrupt(e, fr_id)  # CLI: do not wait minutes for stage threads after Ctrl-C
        _CURRENT.reset(token)
        _join_prewarm()
        clear_memo()
        wait_for_pending_writes()
        R.end_exp("FAILED")
        raise
    _CURRENT.reset(token)
    _join_prewarm()
    clear_memo()
    wait_for_pending_writes()  # the handler cache entry of this run's dataset is complete when the flow ends
    R.end_exp("FINISHED")
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


def _signal_key(plan: list[StageSpec]) -> str:
    """What the report's prediction-only sections depend on: the keys of every stage but the PortAnaRecord ones
    (a strategy change re-runs only those; any other change, data included, changes a key here)."""
    return "|".join(f"{s.name}={s.key}" for s in plan if s.label != "PortAnaRecord")


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _summary(cfg: Any, recorder: Any, exp_name: str, plan: list[StageSpec], states: dict[str, str],
             metrics: dict[str, float], t0: float, seconds: dict[str, float | None] | None = None) -> dict[str, Any]:
    from qlib_prefect.orchestration._report import key_metrics

    return {
        "run_id": recorder.id,
        "experiment_id": recorder.experiment_id,
        "experiment_name": exp_name,
        "tracking_uri": recorder.uri,
        "mlflow_ui_command": mlflow_ui_command(recorder.uri),
        "config_hash": cfg.config_hash(),
        "stages": {s.name: {"key": s.key, "state": states.get(s.name, "?"), "label": s.label,
                            "seconds": (seconds or {}).get(s.name)} for s in plan},
        "metrics": key_metrics(metrics),
        "all_metrics": dict(metrics),
        "elapsed_s": time.perf_counter() - t0,
    }


_PREWARM: list[threading.Thread] = []


def _prewarm(cfg: Any, fingerprint: str, env: str, refresh: bool) -> None:
    """While Prefect starts its API server, build the dataset into the in-process memo when a stage will need it
    (the dataset stage then finds it ready). MLflow is not touched here: its first query configures SQLAlchemy
    mappers globally and races Prefect's ORM import in the main thread."""
    try:
        from qlib_prefect._version import code_version

        plan = build_plan(cfg.task, fingerprint=fingerprint, env=env, version=code_version())
        store = ContentStore()
        by_name = {s.name: s for s in plan}
        users = dataset_users(plan)
        if refresh or any(not store.exists(by_name[n].store_stage, by_name[n].key) for n in users):
            get_dataset(RunContext(task=cfg.task, plan=by_name, store_root=str(store.root)))
    except Exception as e:  # the dataset stage builds it again and reports the error
        logger.debug("dataset prebuild skipped: %s", e)


def _join_prewarm() -> None:
    while _PREWARM:
        _PREWARM.pop().join()


def _prepare_workflow(config: Any = None, experiment_name: str | None = None, refresh: bool = False) -> None:
    """Before the flow run: load the config (errors fail here, naming the YAML path), init the data, start the
    dataset prebuild and open the MLflow store while the Prefect API server starts."""
    if config is None:
        return
    cfg = load_workflow_config(config)
    from qlib_prefect.workflow.config_check import check_workflow_config

    check_workflow_config(cfg)  # the CLI's pre-flight checks for the Python API: dates, market, benchmark, fields
    fingerprint, env = _init_runtime(cfg)
    th = threading.Thread(target=_prewarm, args=(cfg, fingerprint, env, refresh), name="qlib-prefect-prewarm",
                          daemon=True)
    _PREWARM.append(th)
    th.start()
    warm_tracking()


qlib_workflow = LeanFlow(
    _workflow,
    prepare=_prepare_workflow,
    name="qlib-workflow",
    task_runner=ThreadPoolTaskRunner(max_workers=4),
    persist_result=False,
    validate_parameters=False,
    log_prints=False,
    description="Run a qlib (qrun-format) task config: dataset, train and record stages, one MLflow run.",
)


def run_workflow(config: Any, *, experiment_name: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """``qlib_workflow(config, experiment_name, refresh)`` (the same, for callers who prefer a plain function)."""
    return qlib_workflow(config, experiment_name=experiment_name, refresh=refresh)
