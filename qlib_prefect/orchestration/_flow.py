"""The ``qlib_workflow`` Prefect flow: one qrun task config -> dataset, train and record stages -> one MLflow run.

Each stage is a Prefect task cached with :class:`StageCachePolicy` (key = precomputed stage key). Stages write
into the content store; a never-cached ``publish`` task copies every stage's artifacts and metrics into the
flow's single MLflow run, also when the stages came from cache.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shlex
import threading
import time
from pathlib import Path
from typing import Any

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from qlib_prefect.config import runtime
from qlib_prefect.config.hashing import canonical_json
from qlib_prefect.data.cache import wait_for_pending_writes
from qlib_prefect.errors import ConfigError, QlibPrefectError, RecorderError
from qlib_prefect.orchestration._cache import StageCachePolicy, StageSpec, build_plan, env_hash
from qlib_prefect.orchestration._settings import apply_env_defaults, lean_prefect_settings
from qlib_prefect.orchestration._stages import RunContext, clear_memo, dataset_users, get_dataset, release, run_stage
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.utils.redaction import redact

__all__ = ["SAMPLE_DIR_ENV", "current_recorder", "plan_workflow", "qlib_workflow", "run_workflow"]

logger = logging.getLogger("qlib_prefect.orchestration")

#: Jinja variable of the example configs: the bundled sample's qlib-format directory.
SAMPLE_DIR_ENV = "QLIB_PREFECT_SAMPLE_DIR"
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
    from qlib_prefect.workflow._store import get_client, resolve_uri, retry_locked
    from qlib_prefect.workflow.recorder import MLflowRecorder

    uri = resolve_uri(uri or os.environ.get("MLFLOW_TRACKING_URI"))
    run = retry_locked(lambda: get_client(uri).get_run(run_id))
    return MLflowRecorder(run.info.experiment_id, uri, mlflow_run=run)


# ------------------------------------------------------------------------------------------ config loading
def _needs_sample(path: Path) -> bool:
    try:
        return SAMPLE_DIR_ENV in path.read_text(encoding="utf-8")
    except OSError:
        return False


def ensure_sample_env(config: Any) -> None:
    """Set ``$QLIB_PREFECT_SAMPLE_DIR`` to the bundled sample (materialised once) when a config file uses it."""
    if os.environ.get(SAMPLE_DIR_ENV) or not isinstance(config, (str, Path)):
        return
    if _needs_sample(Path(config).expanduser()):
        from qlib_prefect.data.sample import sample_data_dir

        os.environ[SAMPLE_DIR_ENV] = str(sample_data_dir())


def _load(config: Any) -> Any:
    from qlib_prefect.config.loader import WorkflowConfig, load_config

    if isinstance(config, WorkflowConfig):
        return config
    ensure_sample_env(config)
    return load_config(config)


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

    cfg = _load(config)
    fingerprint, env = _init_runtime(cfg)
    store = ContentStore()
    return [
        {"stage": s.name, "key": s.key, "upstream": list(s.upstream), "stored": store.exists(s.store_stage, s.key)}
        for s in build_plan(cfg.task, fingerprint=fingerprint, env=env, version=code_version())
    ]


# ------------------------------------------------------------------------------------------ tasks
def _results_dir() -> Path:
    from qlib_prefect.config.settings import home_dir

    p = home_dir() / "prefect-results"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _stage_fn(ctx: RunContext, spec: StageSpec, stage_key: str) -> dict[str, Any]:
    from prefect import get_run_logger

    get_run_logger().info("computing %s (key %s)", spec.name, stage_key[:16])
    return run_stage(ctx, spec)


def _stage_task(spec: StageSpec, refresh: bool) -> Any:
    return task(
        _stage_fn,
        name=spec.name if spec.kind == "record" else {"dataset": "prepare-dataset", "train": "train-model"}[spec.kind],
        task_run_name=f"{spec.name}-{spec.key[:8]}",
        cache_policy=StageCachePolicy(),
        persist_result=True,
        result_storage=_results_dir(),
        result_serializer="json",
        refresh_cache=refresh,
        retries=0,
    )


def _publish_fn(refs: list[dict[str, Any]], run_id: str, uri: str) -> dict[str, float]:
    """Copy every stage entry's artifacts, metrics, params and tags into the MLflow run."""
    from mlflow.entities import Metric

    from qlib_prefect.workflow._store import retry_locked

    rec = current_recorder(run_id, uri)
    store_entries = []
    for ref in refs:
        stage_dir = Path(ref["path"])
        from qlib_prefect.orchestration._store import StoreEntry

        store_entries.append(StoreEntry(path=stage_dir, stage=stage_dir.parent.name, key=ref["key"]))
    repo = rec._artifact_repo()
    now = int(time.time() * 1000)
    metrics: list[Any] = []
    latest: dict[str, float] = {}
    for entry in store_entries:
        if entry.artifact_dir.is_dir() and any(entry.artifact_dir.iterdir()):
            repo.log_artifacts(str(entry.artifact_dir), None)
        for name, value, step in entry.metrics():
            metrics.append(Metric(key=name, value=float(value), timestamp=now, step=int(step)))
            latest[name] = float(value)
        if entry.params():
            rec.log_params(**entry.params())
        if entry.tags():
            rec.set_tags(**entry.tags())
    rec.flush()
    client = rec.client
    for i in range(0, len(metrics), 1000):
        chunk = metrics[i: i + 1000]
        retry_locked(lambda c=chunk: client.log_batch(run_id, metrics=c))
    return latest


_publish_task = task(_publish_fn, name="publish-to-mlflow", cache_policy=NO_CACHE, persist_result=False)


# ------------------------------------------------------------------------------------------ the flow
def _state_name(state: Any) -> str:
    return getattr(state, "name", None) or str(getattr(state, "type", "?"))


def _mlflow_ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def _workflow(
    config: Any,
    experiment_name: str | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Run a qrun task config (dict, YAML path or ``WorkflowConfig``) as Prefect tasks; returns a summary."""
    from prefect.context import get_run_context

    from qlib_prefect._version import __version__, code_version
    from qlib_prefect.utils import flatten_dict
    from qlib_prefect.workflow import R

    t0 = time.perf_counter()
    cfg = _load(config)
    fingerprint, env = _init_runtime(cfg, reuse=True)
    plan = build_plan(cfg.task, fingerprint=fingerprint, env=env, version=code_version())
    by_name = {s.name: s for s in plan}
    store = ContentStore()
    exp_name = cfg.resolve_experiment_name(experiment_name or "workflow")

    exp = R.start_exp(experiment_name=exp_name, recorder_name="mlflow_recorder")
    recorder = exp.active_recorder
    token = _CURRENT.set(recorder)
    states: dict[str, str] = {}
    try:
        try:
            flow_run_id = str(get_run_context().flow_run.id)
        except Exception:
            flow_run_id = ""
        task_cfg = cfg.task
        recorder.log_params(**flatten_dict(task_cfg))
        recorder.save_objects(task=task_cfg)
        recorder.set_tags(**{
            CONFIG_HASH_TAG: cfg.config_hash(), FINGERPRINT_TAG: fingerprint, VERSION_TAG: __version__,
            FLOW_RUN_TAG: flow_run_id, "hostname": _hostname(),
        })
        ctx = RunContext(task=task_cfg, plan=by_name, store_root=str(store.root),
                         experiment_id=recorder.experiment_id,
                         extra={"dataset_users": dataset_users(plan), "refresh": refresh})
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
            states[spec.name] = _state_name(state)
            if state.is_completed():
                refs.append(fut.result())
            else:
                failed.append(spec.name)
        if failed:
            first = futures[failed[0]]
            first.result(raise_on_failure=True)  # re-raises the stage's own exception
            raise RecorderError(f"stages did not complete: {', '.join(failed)}")
        latest = _publish_task(refs, recorder.id, recorder.uri)
        metrics = {**recorder.list_metrics(), **latest}
        summary = _summary(cfg, recorder, exp_name, plan, states, metrics, t0)
        recorder.save_objects(config=redact(cfg.raw))  # no credentials in artifacts
        _prefect_artifact(summary)
    except BaseException:
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


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _summary(cfg: Any, recorder: Any, exp_name: str, plan: list[StageSpec], states: dict[str, str],
             metrics: dict[str, float], t0: float) -> dict[str, Any]:
    from qlib_prefect.orchestration._report import key_metrics

    return {
        "run_id": recorder.id,
        "experiment_id": recorder.experiment_id,
        "experiment_name": exp_name,
        "tracking_uri": recorder.uri,
        "mlflow_ui_command": _mlflow_ui_command(recorder.uri),
        "config_hash": cfg.config_hash(),
        "stages": {s.name: {"key": s.key, "state": states.get(s.name, "?"), "label": s.label} for s in plan},
        "metrics": key_metrics(metrics),
        "all_metrics": dict(metrics),
        "elapsed_s": time.perf_counter() - t0,
    }


def _prefect_artifact(summary: dict[str, Any]) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        from qlib_prefect.orchestration._report import markdown_report

        create_markdown_artifact(markdown=markdown_report(summary), key="qlib-workflow-results",
                                 description=f"qlib workflow metrics, MLflow run {summary['run_id']}")
    except Exception as e:  # the UI artifact is a convenience; the MLflow run holds the results
        logger.warning("could not create the Prefect artifact: %s", e)


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


def _warm_tracking() -> None:
    """Open the MLflow store of the run to come (import, engine, schema) in this thread, while the Prefect API
    server starts or the dataset builds; the flow's ``R.start_exp`` then finds the client ready."""
    try:
        from qlib_prefect.workflow import R
        from qlib_prefect.workflow.expm import MLflowExpManager

        manager = R.exp_manager
        if isinstance(manager, MLflowExpManager):
            manager.client  # noqa: B018 - builds and caches the client of the manager's URI
    except Exception as e:  # the flow opens it again and reports the error
        logger.debug("tracking warm-up skipped: %s", e)


def _join_prewarm() -> None:
    while _PREWARM:
        _PREWARM.pop().join()


class _WorkflowFlow(Flow):
    """A flow whose direct call applies the lean Prefect settings (heartbeats off, services off when local)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        apply_env_defaults()
        config = args[0] if args else kwargs.get("config")
        if config is not None:
            cfg = _load(config)  # config errors fail here, naming the YAML path, before any flow run is created
            fingerprint, env = _init_runtime(cfg)
            refresh = bool(kwargs.get("refresh", args[2] if len(args) > 2 else False))
            th = threading.Thread(target=_prewarm, args=(cfg, fingerprint, env, refresh),
                                  name="qlib-prefect-prewarm", daemon=True)
            _PREWARM.append(th)
            th.start()
            _warm_tracking()
        with lean_prefect_settings():  # waits for an API server the CLI started early
            return super().__call__(*args, **kwargs)


qlib_workflow = _WorkflowFlow(
    _workflow,
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
