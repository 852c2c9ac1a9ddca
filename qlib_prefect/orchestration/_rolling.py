"""Rolling (and multi-horizon) retraining as one Prefect flow: one cached task per window, one MLflow run each.

``rolling_workflow(config, step=40, rtype="expanding")`` turns the config's task into rolling tasks
(:class:`~qlib_prefect.task.gen.RollingGen`, segments validated before anything runs) and runs each window as a
Prefect task on the flow's task runner (a thread pool by default; Prefect runs parallel *subflows* of one process
one after the other, prefect#15415, so windows are tasks, not subflows). Then the window predictions are merged
(:class:`~qlib_prefect.task.ens.RollingEnsemble`) and analysed over the whole rolling test span.

No repeated work:

* **features once**: the handler's loader output (raw features + label, before processors) is computed once for
  the union of the windows that must be (re)trained and sliced per window (equal to a per-window computation:
  every window shares the handler start, features use the full history and labels look ahead in the data);
  it is kept in an on-disk raw cache ``$QLIB_PREFECT_HOME/raw_cache/`` keyed by the loader config,
  instruments, span and the data fingerprint;
* **processors per window** (qlib#1620): with ``refit_processors=True`` (default) each window's handler gets
  ``fit_start_time``/``fit_end_time`` = its train segment, so ZScoreNorm / RobustZScoreNorm / MinMaxNorm are
  fitted on that window's fit span (qlib keeps the first window's span for every window);
* **incremental retrain**: a window's key hashes its task, the code version, the ``qlib_init`` settings
  and ``LocalProvider.fingerprint(until=...)`` of the dates it reads (handler end + the label look-ahead), so
  appending data or moving the test end only trains the new windows; the others are ``Cached``.

Every window publishes into its own MLflow run (tags: window index, test segment, ``mlflow.parentRunId``); the
parent run of the flow holds the merged ``pred.pkl``/``label.pkl`` and the SigAna/PortAna results over the
whole span. Per window only the records other than portfolio analysis run (``SignalRecord``,
``SigAnaRecord``...); ``PortAnaRecord``-style records run once, on the merged predictions.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.task_runners import ThreadPoolTaskRunner

from qlib_prefect.errors import ConfigError, RecorderError
from qlib_prefect.model.gbdt import training_label
from qlib_prefect.orchestration._cache import StageCachePolicy
from qlib_prefect.orchestration._leanflow import (
    LeanFlow,
    flow_run_id,
    load_workflow_config,
    results_dir,
    state_name,
    warm_tracking,
)
from qlib_prefect.orchestration._memo import MEMO
from qlib_prefect.orchestration._publish import publish_child_run, publish_child_task, publish_refs
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.orchestration._windows import (
    GROUP_TAG,
    KEY_TAG,
    SUMMARY_STAGE,
    TEST_SEGMENT_TAG,
    WINDOW_STAGE,
    WINDOW_TAG,
    RollingPlan,
    WindowSpec,
    data_fingerprint,
    date_label,
    horizon_tasks,
    lookahead,
    make_handler,
    prepare_plan,
    rolling_plan,
    until_date,
)
from qlib_prefect.tweaks.prefect_server import expect_task_runs
from qlib_prefect.utils import flatten_dict
from qlib_prefect.workflow.pipeline import build_dataset, execute_task, run_records

__all__ = [
    "multi_horizon_workflow",
    "rolling_workflow",
    "run_multi_horizon",
    "run_rolling",
    "train_rolling_window",
]

logger = logging.getLogger("qlib_prefect.orchestration")

# ------------------------------------------------------------------------------------------ raw frames
def _union_end(ends: list[Any]) -> Any:
    if any(e is None for e in ends):
        return None
    return max(pd.Timestamp(e) for e in ends)


def _raw_frame(ctx: _RunCtx, gid: str) -> pd.DataFrame:
    """The loader output for raw group ``gid`` over the union span of the windows to train (once per run)."""
    return MEMO.get("raw", gid, lambda: _build_raw(ctx, gid))


def _build_raw(ctx: _RunCtx, gid: str) -> pd.DataFrame:
    from qlib_prefect.data import cache as hcache
    from qlib_prefect.data.handler import load_raw_bounded
    from qlib_prefect.data.registry import get_provider

    info = ctx.raw_groups[gid]
    end = _union_end(info["ends"])
    handler = make_handler(info["handler"], end_time=end)
    cal = pd.DatetimeIndex(get_provider().calendar())
    fp = data_fingerprint(get_provider(), until_date(cal, end, lookahead(handler)), {})
    key = hcache.raw_key(info["spec"], end, fp)
    use_cache = hcache.cache_enabled(None)
    df = hcache.load_raw_frame(key) if use_cache else None
    if df is None:
        t0 = time.perf_counter()
        df, on_disk = load_raw_bounded(handler)  # out of core above QLIB_PREFECT_MAX_MEMORY (then memory-mapped)
        logger.info("rolling: raw features for %s .. %s computed in %.1fs (%d rows)", date_label(handler.start_time),
                    date_label(end), time.perf_counter() - t0, len(df))
        if use_cache and not on_disk and hcache.store_raw_frame(key, df):
            # serve the windows from the memory-mapped entry: the computed panel's memory is freed, each window
            # faults in only the pages of its slice (windows run a few at a time, never all frames at once)
            mapped = hcache.load_raw_frame(key)
            df = df if mapped is None else mapped
    else:
        logger.info("rolling: raw features for %s .. %s from the raw cache", date_label(handler.start_time),
                    date_label(end))
    return df


def _slice_dates(df: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    """Rows with ``start <= datetime <= end`` of a frame sorted by ``datetime`` (a positional, cheap slice)."""
    dates = df.index.get_level_values("datetime")
    i0 = 0 if start is None else int(dates.searchsorted(pd.Timestamp(start), side="left"))
    i1 = len(df) if end is None else int(dates.searchsorted(pd.Timestamp(end), side="right"))
    return df.iloc[i0:i1]


# ------------------------------------------------------------------------------------------ window stage
@dataclass
class _RunCtx:
    store_root: str
    raw_groups: dict[str, dict[str, Any]]
    share_raw: bool = True
    qlib_init: dict[str, Any] = field(default_factory=dict)  #: for task runners in other processes (Dask)

    @property
    def store(self) -> ContentStore:
        return ContentStore(root=self.store_root)


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict of its fields, for task parameters. Plain dicts and lists travel intact
    through every task runner; Prefect's ``quote`` wrapper does not survive Dask's (it arrives as a tuple)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _as_ctx(ctx: _RunCtx | dict[str, Any]) -> _RunCtx:
    """The run context, with this process initialised for its data (a Dask worker process starts bare)."""
    ctx = ctx if isinstance(ctx, _RunCtx) else _RunCtx(**ctx)
    want = ctx.qlib_init.get("provider_uri")
    if want is not None:
        from qlib_prefect.config.runtime import is_initialized, provider_path

        if not (is_initialized() and provider_path() == Path(str(want)).expanduser().resolve()):
            import qlib_prefect

            qlib_prefect.init(**ctx.qlib_init)
    return ctx


def _as_window(w: WindowSpec | dict[str, Any]) -> WindowSpec:
    return w if isinstance(w, WindowSpec) else WindowSpec(**w)


def _window_dataset(ctx: _RunCtx, w: WindowSpec) -> Any:
    """The window's dataset; its handler is set up from the run's shared raw frame when it has one."""
    dcfg = copy.deepcopy(w.task["dataset"])
    if ctx.share_raw and w.raw_group is not None and w.raw_group in ctx.raw_groups:
        handler = make_handler(dcfg["kwargs"]["handler"])
        handler.setup_from_raw(_slice_dates(_raw_frame(ctx, w.raw_group), handler.start_time, handler.end_time))
        dcfg["kwargs"]["handler"] = handler
    return build_dataset(dcfg)


def _train_window(ctx: _RunCtx, w: WindowSpec, rec: StoreRecorder) -> None:
    task = copy.deepcopy(w.task)
    rec.log_params(**flatten_dict(task))
    rec.set_tags(**{WINDOW_TAG: str(w.index), TEST_SEGMENT_TAG: w.test_label(), GROUP_TAG: w.group,
                    KEY_TAG: w.key})
    rec.save_objects(task=task)
    execute_task(task, rec, dataset=_window_dataset(ctx, w))


def _window_fn(ctx: _RunCtx | dict[str, Any], w: WindowSpec | dict[str, Any], stage_key: str) -> dict[str, Any]:
    from prefect import get_run_logger

    ctx, w = _as_ctx(ctx), _as_window(w)

    get_run_logger().info("training window %d, test %s (key %s)", w.index, w.test_label(), stage_key[:16])
    store = ctx.store
    with store.build(WINDOW_STAGE, w.key, meta={"window": w.index, "group": w.group, "test": w.test_label()}) as tmp:
        rec = StoreRecorder(path=tmp, name=f"window-{w.index}")
        with training_label(f"window-{w.index}"):  # concurrent windows' LightGBM lines stay apart
            _train_window(ctx, w, rec)
        rec.flush()
    return {"stage": WINDOW_STAGE, "key": w.key, "path": str(store.path(WINDOW_STAGE, w.key))}


def _window_task(w: WindowSpec, refresh: bool) -> Any:
    return task(_window_fn, name="rolling-window", task_run_name=f"window-{w.index}-{w.test_label()}",
                cache_policy=StageCachePolicy(), persist_result=True, result_storage=results_dir(),
                result_serializer="json", refresh_cache=refresh, retries=0)


def train_rolling_window(config: Any, index: int, step: int = 40, rtype: str = "expanding",
                         trunc_days: int | None = None, refit_processors: bool = True,
                         expected_key: str | None = None, refresh: bool = False) -> dict[str, Any]:
    """Train window ``index`` of a rolling job into the shared content store (as the rolling flow's own task).

    The window task has the rolling flow's cache key and result storage, so the parent's rolling flow later
    finds it ``Cached``. ``expected_key`` guards against a plan that differs from the dispatcher's (other
    data or code version on this worker).
    """
    import socket

    from prefect.utilities.annotations import quote

    _cfg, plan = rolling_plan(config, step=step, rtype=rtype, trunc_days=trunc_days,
                              refit_processors=refit_processors)
    if not 0 <= index < len(plan.windows):
        raise ConfigError(f"rolling window {index}: the plan has only {len(plan.windows)} windows")
    w = plan.windows[index]
    if expected_key and w.key != expected_key:
        raise RecorderError(f"rolling window {index}: key {w.key[:16]} on {socket.gethostname()} differs from the "
                            f"dispatcher's {expected_key[:16]}: do the workers see the same data, config and "
                            "code version?")
    store = ContentStore()
    ctx = _RunCtx(store_root=str(store.root), raw_groups={})
    stale = refresh or not store.exists(WINDOW_STAGE, w.key)
    fut = _window_task(w, stale).submit(quote(ctx), quote(w), w.key)
    ref = fut.result()
    return {**ref, "window": index, "test": w.test_label(), "state": getattr(fut.state, "name", "?"),
            "hostname": socket.gethostname(), "pid": os.getpid(), "worker_pid": os.getppid()}


# ------------------------------------------------------------------------------------------ summary stage
def _signal_of(pred: Any, signal: dict[str, Any]) -> Any:
    """The online signal of merged predictions: per-date z-score (``AverageEnsemble``, as
    ``OnlineManager.prepare_signals``) on the dates ``signal["start"] .. signal["end"]``."""
    from qlib_prefect.task.ens import AverageEnsemble

    out = _cut(AverageEnsemble()({"rolling": pred}), signal)
    return out.to_frame("score") if isinstance(pred, pd.DataFrame) else out


def _cut(obj: Any, signal: dict[str, Any]) -> Any:
    dates = obj.index.get_level_values("datetime")
    return obj[(dates >= pd.Timestamp(signal["start"])) & (dates <= pd.Timestamp(signal["end"]))]


def _summary_fn(ctx: _RunCtx | dict[str, Any], group: str, window_refs: list[dict[str, Any]], records: list[Any],
                stage_key: str, signal: dict[str, Any] | None = None) -> dict[str, Any]:
    from qlib_prefect.task.ens import RollingEnsemble

    ctx = _as_ctx(ctx)

    store = ctx.store
    preds: dict[str, Any] = {}
    labels: dict[str, Any] = {}
    for ref in window_refs:
        r = StoreRecorder(path=Path(ref["path"]), name="window")
        preds[ref["key"]] = r.load_object("pred.pkl")
        try:
            lab = r.load_object("label.pkl")
        except Exception:
            lab = None
        if lab is not None:
            labels[ref["key"]] = lab
    with store.build(SUMMARY_STAGE, stage_key, meta={"group": group, "windows": len(window_refs)}) as tmp:
        rec = StoreRecorder(path=tmp, name=f"summary-{group}")
        pred = RollingEnsemble()(preds)
        rec.save_objects(**{"pred.pkl": pred if signal is None else _signal_of(pred, signal)})
        if labels:
            label = RollingEnsemble()(labels)
            rec.save_objects(**{"label.pkl": label if signal is None else _cut(label, signal)})
        rec.set_tags(**{GROUP_TAG: group, "qlib_prefect.rolling.windows": str(len(window_refs))})
        run_records({"record": copy.deepcopy(records)}, rec)
        from qlib_prefect.orchestration._plots import plot_stage_safely
        from qlib_prefect.report import find_benchmark

        plot_stage_safely(rec, f"summary-{group}", benchmark=find_benchmark(records))
        rec.flush()
    return {"stage": SUMMARY_STAGE, "key": stage_key, "path": str(store.path(SUMMARY_STAGE, stage_key))}


def _summary_task(group: str, refresh: bool) -> Any:
    return task(_summary_fn, name="rolling-summary", task_run_name=f"summary-{group}",
                cache_policy=StageCachePolicy(), persist_result=True, result_storage=results_dir(),
                result_serializer="json", refresh_cache=refresh, retries=0)


# ------------------------------------------------------------------------------------------ MLflow runs
def _window_tags(w: WindowSpec, state: str) -> dict[str, str]:
    """Tags of the MLflow run of window ``w`` (of a group summary when ``w.index`` < 0)."""
    tags = {TEST_SEGMENT_TAG: w.test_label(), GROUP_TAG: w.group, KEY_TAG: w.key, "qlib_prefect.rolling.state": state}
    if w.index >= 0:
        tags[WINDOW_TAG] = str(w.index)
    return tags


# ------------------------------------------------------------------------------------------ the flow
def _run_plan(cfg: Any, plan: RollingPlan, *, kind: str, experiment_name: str | None, refresh: bool,
              params: dict[str, Any], signal: dict[str, Any] | None = None,
              on_summary: Any = None) -> dict[str, Any]:
    """Run the windows and summaries of ``plan`` into one MLflow parent run. ``signal`` (online simulate): the
    summary's ``pred.pkl`` is the z-scored signal on ``signal["start"] .. signal["end"]``; ``on_summary(parent,
    summary)`` runs before the report is built and returns extra report sections."""
    from qlib_prefect._version import __version__
    from qlib_prefect.orchestration._flow import CONFIG_HASH_TAG, VERSION_TAG
    from qlib_prefect.orchestration._report import key_metrics, mlflow_ui_command, prefect_artifact
    from qlib_prefect.utils import flatten_dict
    from qlib_prefect.workflow import R

    t0 = time.perf_counter()
    store = ContentStore()
    stale = {w.key: refresh or not store.exists(WINDOW_STAGE, w.key) for w in plan.windows}
    # the raw frame covers only the windows that will be computed
    raw_groups: dict[str, dict[str, Any]] = {}
    for w in plan.windows:
        if stale[w.key] and w.raw_group is not None:
            g = plan.raw_groups[w.raw_group]
            raw_groups.setdefault(w.raw_group, {"handler": g["handler"], "spec": g["spec"], "ends": []})
            raw_groups[w.raw_group]["ends"].append(w.handler_end)
    ctx = _RunCtx(store_root=str(store.root), raw_groups=raw_groups, qlib_init=dict(cfg.qlib_init))
    exp_name = cfg.resolve_experiment_name(experiment_name or kind)
    exp = R.start_exp(experiment_name=exp_name, recorder_name=kind)
    parent = exp.active_recorder
    try:
        parent.log_params(**flatten_dict({"task": plan.template, kind: params}))
        parent.save_objects(task=plan.template)
        parent.set_tags(**{CONFIG_HASH_TAG: cfg.config_hash(), VERSION_TAG: __version__,
                           "qlib_prefect.rolling.kind": kind,
                           "qlib_prefect.rolling.windows": str(len(plan.windows))})
        futures = []
        for w in plan.windows:
            fut = _window_task(w, stale[w.key]).submit(_fields(ctx), _fields(w), w.key)
            futures.append(fut)
        results: list[dict[str, Any]] = []
        pubs = []
        failed = []
        for w, fut in zip(plan.windows, futures, strict=True):
            fut.wait()
            state = state_name(fut.state)
            if not fut.state.is_completed():
                failed.append((w, fut))
                results.append({"window": w.index, "state": state})
                continue
            ref = fut.result()
            results.append({"window": w.index, "group": w.group, "test": w.test_label(), "key": w.key,
                            "state": state, "ref": ref})
            pubs.append(publish_child_task.submit(
                [ref], parent_id=parent.id, experiment_id=parent.experiment_id, uri=parent.uri,
                name=f"window-{w.index}", tags=_window_tags(w, state)))
        if failed:
            failed[0][1].result(raise_on_failure=True)
            raise RecorderError(f"rolling windows did not complete: {[w.index for w, _ in failed]}")
        for r, p in zip([r for r in results if "ref" in r], pubs, strict=True):
            r["run_id"] = p.result()
        # summaries: merge each group's windows, analyse the whole span
        metrics: dict[str, float] = {}
        summary_states: dict[str, str] = {}
        for group, skey in plan.summaries.items():
            refs = [r["ref"] for r in results if r.get("group") == group]
            sstale = refresh or not store.exists(SUMMARY_STAGE, skey)
            sfut = _summary_task(group, sstale).submit(_fields(ctx), group, refs, plan.summary_records, skey,
                                                       signal=signal)
            sref = sfut.result()
            summary_states[group] = state_name(sfut.state)
            if len(plan.summaries) == 1:
                metrics.update(publish_refs([sref], parent.id, parent.uri, recorder=parent))
            else:  # one child run per group; the parent gets the group's metrics prefixed
                gw = WindowSpec(index=-1, group=group, task={"dataset": {"kwargs": {"segments": {
                    "test": (None, None)}}}}, key=skey, until=None, fingerprint="", raw_group=None)
                publish_child_run([sref], parent_id=parent.id, experiment_id=parent.experiment_id, uri=parent.uri,
                                  name=f"summary-{group}", tags=_window_tags(gw, summary_states[group]))
                entry_metrics = json.loads((Path(sref["path"]) / "metrics.json").read_text(encoding="utf-8"))
                prefixed = {f"{group}.{k}": float(v) for k, v, _ in entry_metrics}
                if prefixed:
                    parent.log_metrics(**prefixed)
                metrics.update(prefixed)
        for r in results:
            r.pop("ref", None)
        trained = sum(1 for r in results if r["state"] != "Cached")
        summary = {
            "run_id": parent.id, "experiment_id": parent.experiment_id, "experiment_name": exp_name,
            "tracking_uri": parent.uri, "kind": kind, "windows": results, "trained": trained,
            "cached": len(results) - trained, "summary_states": summary_states,
            "metrics": key_metrics(metrics), "all_metrics": metrics,
            "mlflow_ui_command": mlflow_ui_command(parent.uri),
            "stages": {**{f"window-{r['window']}": {"state": r["state"], "key": r.get("key", "")} for r in results},
                       **{f"summary-{g}": {"state": st, "key": plan.summaries[g]}
                          for g, st in summary_states.items()}},
        }
        parent.set_tags(**{"qlib_prefect.rolling.trained": str(trained)})
        # the window, publish and summary tasks: recorded by the temporary API server before it stops
        expect_task_runs(flow_run_id(), 2 * len(plan.windows) + len(plan.summaries))
        extra = on_summary(parent, summary) if on_summary is not None else []
        if len(plan.summaries) == 1:  # the merged predictions' tear sheet (report.html, ledgers) in the summary run
            from qlib_prefect.report import build_run_report, report_link

            if build_run_report(parent, config=cfg.raw, strict=False, extra_sections=extra) is not None:
                summary["report_url"] = report_link(parent)
        prefect_artifact(summary, key=f"qlib-{kind.replace('_', '-')}-results", title=f"qlib {kind} results")
    except BaseException:
        _drop_raw()
        R.end_exp("FAILED")
        raise
    _drop_raw()
    R.end_exp("FINISHED")
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


def _drop_raw() -> None:
    MEMO.drop("raw")


def _rolling(config: Any, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
             experiment_name: str | None = None, refresh: bool = False,
             refit_processors: bool = True) -> dict[str, Any]:
    """Rolling retraining of a qrun task config: one cached task + MLflow run per window, then a summary."""
    cfg, plan = rolling_plan(config, step=step, rtype=rtype, trunc_days=trunc_days,
                             refit_processors=refit_processors)
    params = {"step": step, "rtype": rtype, "trunc_days": trunc_days, "refit_processors": refit_processors}
    return _run_plan(cfg, plan, kind="rolling", experiment_name=experiment_name, refresh=refresh, params=params)


def _multi_horizon(config: Any, horizon: list[int] | tuple[int, ...] = (5,), label_leak_n: int = 2,
                   step: int | None = None, rtype: str = "expanding", trunc_days: int | None = None,
                   experiment_name: str | None = None, refresh: bool = False,
                   refit_processors: bool = True) -> dict[str, Any]:
    """One task per label horizon (:class:`MultiHorizonGen`; rolled with ``step`` when given), a summary each."""
    gen = lambda t: horizon_tasks(t, list(horizon), label_leak_n, step, rtype, trunc_days)  # noqa: E731
    cfg, plan = prepare_plan(config, gen, refit_processors)
    params = {"horizon": list(horizon), "label_leak_n": label_leak_n, "step": step, "rtype": rtype,
              "trunc_days": trunc_days, "refit_processors": refit_processors}
    return _run_plan(cfg, plan, kind="multi_horizon", experiment_name=experiment_name, refresh=refresh,
                     params=params)


def _prepare_rolling(config: Any = None, *args: Any, **kwargs: Any) -> None:
    """Before the flow run: load the config (errors fail here, naming the YAML path), init the data and open
    the MLflow store while the Prefect API server starts."""
    if config is not None:
        import qlib_prefect

        qlib_prefect.init(**load_workflow_config(config).qlib_init)
        warm_tracking()


DEFAULT_MAX_WORKERS = 2

rolling_workflow = LeanFlow(
    _rolling, prepare=_prepare_rolling, name="qlib-rolling",
    task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_MAX_WORKERS),
    persist_result=False, validate_parameters=False, log_prints=False,
    description="Rolling retraining: one cached task and MLflow run per window, merged predictions analysed.",
)
multi_horizon_workflow = LeanFlow(
    _multi_horizon, prepare=_prepare_rolling, name="qlib-multi-horizon",
    task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_MAX_WORKERS), persist_result=False,
    validate_parameters=False, log_prints=False,
    description="Multi-horizon retraining: one cached task and MLflow run per horizon (and window).",
)


def _task_runner(max_workers: int | None, dask: bool) -> Any:
    if dask:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError as e:
            raise ConfigError("--dask needs the prefect-dask package (pip install prefect-dask)") from e
        kw = {"cluster_kwargs": {"n_workers": max_workers}} if max_workers else {}
        return DaskTaskRunner(**kw)
    return ThreadPoolTaskRunner(max_workers=max_workers or DEFAULT_MAX_WORKERS)


def run_rolling(config: Any, *, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
                experiment_name: str | None = None, refresh: bool = False, refit_processors: bool = True,
                max_workers: int | None = None, dask: bool = False) -> dict[str, Any]:
    """:data:`rolling_workflow` with ``max_workers`` concurrent windows (thread pool; Dask with ``dask=True``)."""
    flow = rolling_workflow
    if max_workers is not None or dask:
        flow = flow.with_options(task_runner=_task_runner(max_workers, dask))
    return flow(config, step=step, rtype=rtype, trunc_days=trunc_days, experiment_name=experiment_name,
                refresh=refresh, refit_processors=refit_processors)


def run_multi_horizon(config: Any, *, horizon: list[int], label_leak_n: int = 2, step: int | None = None,
                      rtype: str = "expanding", trunc_days: int | None = None, experiment_name: str | None = None,
                      refresh: bool = False, refit_processors: bool = True, max_workers: int | None = None,
                      dask: bool = False) -> dict[str, Any]:
    """:data:`multi_horizon_workflow` with a configurable task runner (see :func:`run_rolling`)."""
    flow = multi_horizon_workflow
    if max_workers is not None or dask:
        flow = flow.with_options(task_runner=_task_runner(max_workers, dask))
    return flow(config, horizon=list(horizon), label_leak_n=label_leak_n, step=step, rtype=rtype,
                trunc_days=trunc_days, experiment_name=experiment_name, refresh=refresh,
                refit_processors=refit_processors)

