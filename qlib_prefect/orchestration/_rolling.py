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
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from qlib_prefect.errors import ConfigError, RecorderError
from qlib_prefect.orchestration._cache import RECORD_MODULE, StageCachePolicy, resolve_dotted
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.orchestration._store import ContentStore

__all__ = [
    "PARENT_TAG",
    "TEST_SEGMENT_TAG",
    "WINDOW_TAG",
    "WindowSpec",
    "multi_horizon_workflow",
    "plan_multi_horizon",
    "plan_rolling",
    "rolling_workflow",
    "run_multi_horizon",
    "run_rolling",
]

logger = logging.getLogger("qlib_prefect.orchestration")

WINDOW_STAGE = "rolling_window"
SUMMARY_STAGE = "rolling_summary"
PARENT_TAG = "mlflow.parentRunId"
WINDOW_TAG = "qlib_prefect.rolling.window"
TEST_SEGMENT_TAG = "qlib_prefect.rolling.test_segment"
GROUP_TAG = "qlib_prefect.rolling.group"
KEY_TAG = "qlib_prefect.rolling.key"
#: record classes run once on the merged predictions instead of per window
SUMMARY_ONLY = ("PortAnaRecord", "MultiPassPortAnaRecord")

_RAW: dict[str, pd.DataFrame] = {}
_RAW_LOCKS: dict[str, threading.Lock] = {}
_RAW_GUARD = threading.Lock()


# ------------------------------------------------------------------------------------------ window specs
@dataclass(frozen=True)
class WindowSpec:
    """One generated task (a rolling window / a horizon) with its cache key."""

    index: int
    group: str  #: windows of one group are merged together (``"rolling"``, ``"h5"``...)
    task: dict[str, Any]  #: the window's task (records run per window only)
    key: str
    until: str | None  #: last date the window reads (None: all data)
    fingerprint: str
    raw_group: str | None  #: id of the raw-frame group (None: the handler cannot be fed a shared raw frame)

    @property
    def segments(self) -> dict[str, Any]:
        return self.task["dataset"]["kwargs"]["segments"]

    @property
    def test(self) -> tuple[Any, Any]:
        return tuple(self.segments["test"])  # type: ignore[return-value]

    @property
    def handler_end(self) -> Any:
        h = self.task["dataset"]["kwargs"].get("handler")
        return h.get("kwargs", {}).get("end_time") if isinstance(h, dict) else None

    def test_label(self) -> str:
        a, b = self.test
        return f"{_d(a)}..{_d(b)}"


@dataclass
class _Plan:
    windows: list[WindowSpec]
    summaries: dict[str, str]  #: group -> summary key
    summary_records: list[Any]
    raw_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)


def _d(x: Any) -> str:
    return "None" if x is None else str(pd.Timestamp(x).date())


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":"), default=str).encode()).hexdigest()


def _record_name(rec: Any) -> str:
    if isinstance(rec, dict):
        return str(rec.get("class", ""))
    if isinstance(rec, str):
        return rec.rsplit(".", 1)[-1]
    return type(rec).__name__


def _split_records(task: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(records run per window, records run on the merged predictions)."""
    recs = task.get("record") or []
    if not isinstance(recs, list):
        recs = [recs]
    window = [r for r in recs if _record_name(r) not in SUMMARY_ONLY]
    summary = [r for r in recs if _record_name(r) in SUMMARY_ONLY or _record_name(r) == "SigAnaRecord"]
    if not any(_record_name(r) == "SignalRecord" for r in window):
        window.insert(0, {"class": "SignalRecord", "module_path": RECORD_MODULE,
                          "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}})
    if not any(_record_name(r) == "SigAnaRecord" for r in summary):
        summary.insert(0, {"class": "SigAnaRecord", "module_path": RECORD_MODULE, "kwargs": {}})
    return window, summary


def _refit(task: dict[str, Any]) -> None:
    """qlib#1620: the handler's processors learn on this window's train segment (in place)."""
    ds = task["dataset"]["kwargs"]
    h = ds.get("handler")
    train = (ds.get("segments") or {}).get("train")
    if not isinstance(h, dict) or train is None:
        return
    kw = h.setdefault("kwargs", {})
    if "fit_start_time" not in kw and "fit_end_time" not in kw:
        return
    start = train[0] if train[0] is not None else kw.get("start_time")
    kw["fit_start_time"], kw["fit_end_time"] = start, train[1]


def _lookahead(handler: Any) -> float:
    """Dates after its end the handler's loader reads (the label's look-ahead); inf when unknown."""
    from qlib_prefect.data.expression import parse
    from qlib_prefect.data.expression.engine import window_size

    fields = getattr(getattr(handler, "data_loader", None), "fields", None)
    if fields is None:
        return float("inf")
    groups = fields.values() if isinstance(fields, dict) else [fields]
    out = 0.0
    try:
        for exprs, _names in groups:
            for e in exprs:
                out = max(out, float(window_size(parse(e))[1]))
    except Exception:
        return float("inf")
    return out


def _make_handler(hcfg: dict[str, Any], **override: Any) -> Any:
    from qlib_prefect.data.handler import DataHandler
    from qlib_prefect.utils import init_instance_by_config

    cfg = copy.deepcopy(hcfg)
    cfg.setdefault("kwargs", {}).update({"init_data": False, **override})
    return init_instance_by_config(cfg, "qlib_prefect.data.handler", accept_types=DataHandler,
                                   _where="task.dataset.kwargs.handler")


def _until(cal: pd.DatetimeIndex, end: Any, look: float) -> str | None:
    """The last calendar date a handler ending at ``end`` reads (None: beyond the data -> all data)."""
    if end is None or not np.isfinite(look):
        return None
    i = int(cal.searchsorted(pd.Timestamp(end), side="right")) - 1 + int(look)
    return None if i >= len(cal) - 1 or i < 0 else str(cal[i].date())


def _fingerprint(provider: Any, until: str | None, memo: dict) -> str:
    if until not in memo:
        try:
            memo[until] = provider.fingerprint(until=until) if until is not None else provider.fingerprint()
        except TypeError:  # a provider without prefix fingerprints: any data change retrains
            memo[until] = provider.fingerprint()
    return memo[until]


def _build_plan(tasks: list[tuple[str, dict[str, Any]]], template: dict[str, Any], *, env: str,
                refit_processors: bool) -> _Plan:
    from qlib_prefect._version import code_version
    from qlib_prefect.config.hashing import canonical_hash, describe
    from qlib_prefect.data.handler import DataHandler
    from qlib_prefect.data.registry import get_provider

    provider = get_provider()
    cal = pd.DatetimeIndex(provider.calendar())
    fps: dict[str | None, str] = {}
    windows: list[WindowSpec] = []
    raw_groups: dict[str, dict[str, Any]] = {}
    summary_records: list[Any] = []
    for i, (group, t) in enumerate(tasks):
        t = resolve_dotted(t)
        if refit_processors:
            _refit(t)
        win_recs, summary_records = _split_records(t)
        t["record"] = win_recs
        hcfg = t["dataset"].get("kwargs", {}).get("handler")
        until, raw_group = None, None
        if isinstance(hcfg, dict):
            handler = _make_handler(hcfg)
            if not isinstance(handler, DataHandler):  # pragma: no cover - accept_types guarantees it
                raise ConfigError("task.dataset.kwargs.handler: not a data handler")
            until = _until(cal, handler.end_time, _lookahead(handler))
            try:
                spec = {"loader": describe(handler._loader_config), "instruments": handler.instruments,
                        "start": handler.start_time, "class": type(handler).__name__}
                raw_group = canonical_hash(spec)[:16]
                g = raw_groups.setdefault(raw_group, {"handler": hcfg, "spec": spec, "ends": []})
                g["ends"].append(handler.end_time)
            except TypeError:
                raw_group = None
        fp = _fingerprint(provider, until, fps)
        try:
            thash = canonical_hash(t)
        except TypeError as e:
            raise ConfigError(f"rolling window {i}: the task cannot be hashed ({e})") from e
        key = _sha("rolling-window", thash, fp, env, code_version())
        windows.append(WindowSpec(index=i, group=group, task=t, key=key, until=until, fingerprint=fp,
                                  raw_group=raw_group))
    summaries: dict[str, str] = {}
    for group in dict.fromkeys(w.group for w in windows):
        keys = [w.key for w in windows if w.group == group]
        summaries[group] = _sha("rolling-summary", group, keys, canonical_hash(summary_records), env,
                                code_version())
    return _Plan(windows=windows, summaries=summaries, summary_records=summary_records, raw_groups=raw_groups,
                 template=template)


# ------------------------------------------------------------------------------------------ task generation
def _rolling_tasks(template: dict[str, Any], step: int, rtype: str, trunc_days: int | None) -> list[dict]:
    from qlib_prefect.task.gen import RollingGen, validate_segments

    if rtype not in (RollingGen.ROLL_EX, RollingGen.ROLL_SD):
        raise ConfigError(f"rolling: rtype must be 'expanding' or 'sliding', got {rtype!r}")
    if int(step) <= 0:
        raise ConfigError(f"rolling: step must be a positive number of trading days, got {step!r}")
    validate_segments(template)
    return RollingGen(step=int(step), rtype=rtype, trunc_days=trunc_days).generate(template)


def _load(config: Any) -> Any:
    from qlib_prefect.orchestration._flow import _load as load

    return load(config)


def _prepare(config: Any, gen: Any, refit_processors: bool) -> tuple[Any, _Plan]:
    """Load + init, generate ``[(group, task)]`` with ``gen(template)`` and key every window."""
    from qlib_prefect.orchestration._cache import env_hash

    cfg = _load(config)
    import qlib_prefect

    qlib_prefect.init(**cfg.qlib_init)
    template = resolve_dotted(cfg.task)
    if "dataset" not in template or "model" not in template:
        raise ConfigError("task: needs both 'model' and 'dataset' sections")
    tasks = gen(template)
    if not tasks:
        raise ConfigError("rolling: the generator produced no task (is the test segment inside the data?)")
    return cfg, _build_plan(tasks, template, env=env_hash(cfg.qlib_init), refit_processors=refit_processors)


def _plan_rows(plan: _Plan, store: ContentStore) -> list[dict[str, Any]]:
    rows = []
    for w in plan.windows:
        seg = {k: [_d(x) for x in v] for k, v in w.segments.items()}
        rows.append({"window": w.index, "group": w.group, "segments": seg, "handler_end": _d(w.handler_end),
                     "reads_until": w.until, "key": w.key, "cached": store.exists(WINDOW_STAGE, w.key)})
    for group, key in plan.summaries.items():
        rows.append({"window": "summary", "group": group, "segments": {}, "handler_end": None, "reads_until": None,
                     "key": key, "cached": store.exists(SUMMARY_STAGE, key)})
    return rows


def plan_rolling(config: Any, *, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
                 refit_processors: bool = True) -> list[dict[str, Any]]:
    """Every window's segments, handler end, key and whether it is cached (a dry run: nothing is computed)."""
    gen = lambda t: [("rolling", x) for x in _rolling_tasks(t, step, rtype, trunc_days)]  # noqa: E731
    _cfg, plan = _prepare(config, gen, refit_processors)
    return _plan_rows(plan, ContentStore())


def _horizon_tasks(template: dict[str, Any], horizon: list[int], label_leak_n: int, step: int | None,
                   rtype: str, trunc_days: int | None) -> list[tuple[str, dict]]:
    from qlib_prefect.task.gen import MultiHorizonGen, validate_segments

    validate_segments(template)
    out: list[tuple[str, dict]] = []
    for h in horizon:
        for t in MultiHorizonGen(horizon=[int(h)], label_leak_n=label_leak_n).generate(template):
            subs = _rolling_tasks(t, step, rtype, trunc_days) if step else [t]
            out.extend((f"h{int(h)}", s) for s in subs)
    return out


def plan_multi_horizon(config: Any, *, horizon: list[int], label_leak_n: int = 2, step: int | None = None,
                       rtype: str = "expanding", trunc_days: int | None = None,
                       refit_processors: bool = True) -> list[dict[str, Any]]:
    """:func:`plan_rolling` for :func:`multi_horizon_workflow`."""
    gen = lambda t: _horizon_tasks(t, list(horizon), label_leak_n, step, rtype, trunc_days)  # noqa: E731
    _cfg, plan = _prepare(config, gen, refit_processors)
    return _plan_rows(plan, ContentStore())


# ------------------------------------------------------------------------------------------ raw frames
def _raw_cache_dir() -> Path:
    from qlib_prefect.config.settings import home_dir

    d = home_dir() / "raw_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _union_end(ends: list[Any]) -> Any:
    if any(e is None for e in ends):
        return None
    return max(pd.Timestamp(e) for e in ends)


def _raw_key(info: dict[str, Any], end: Any, fingerprint: str) -> str:
    from qlib_prefect._version import __version__
    from qlib_prefect.config.hashing import canonical_hash
    from qlib_prefect.data.cache import code_fingerprint

    # raw features depend on the data layer only: its source hash, as in the handler cache key
    return canonical_hash({"raw": info["spec"], "end": end, "fp": fingerprint, "version": __version__,
                           "code": code_fingerprint()})


def _load_raw_cached(key: str) -> pd.DataFrame | None:
    from qlib_prefect.data import cache as hcache

    folder = _raw_cache_dir() / key
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return hcache._load_frame(folder, "raw", meta)
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt entry: rebuild
        logger.warning("raw cache entry %s unreadable (%s); rebuilding", key[:12], e)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _store_raw(key: str, df: pd.DataFrame) -> None:
    from qlib_prefect.data import cache as hcache

    root = _raw_cache_dir()
    tmp = root / f".tmp-{key[:12]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = hcache._save_frame(tmp, "raw", df)
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            tmp.rename(root / key)
        except OSError:  # a concurrent writer won
            shutil.rmtree(tmp, ignore_errors=True)
    except TypeError as e:  # a frame the cache format cannot hold (mixed dtypes): keep it in memory only
        logger.info("raw cache: not stored (%s)", e)
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _raw_frame(ctx: _RunCtx, gid: str) -> pd.DataFrame:
    """The loader output for raw group ``gid`` over the union span of the windows to train (once per run)."""
    with _RAW_GUARD:
        if gid in _RAW:
            return _RAW[gid]
        lock = _RAW_LOCKS.setdefault(gid, threading.Lock())
    with lock:
        if gid in _RAW:
            return _RAW[gid]
        from qlib_prefect.data import cache as hcache
        from qlib_prefect.data.registry import get_provider

        info = ctx.raw_groups[gid]
        end = _union_end(info["ends"])
        handler = _make_handler(info["handler"], end_time=end)
        cal = pd.DatetimeIndex(get_provider().calendar())
        fp = _fingerprint(get_provider(), _until(cal, end, _lookahead(handler)), {})
        key = _raw_key(info, end, fp)
        use_cache = hcache.cache_enabled(None)
        df = _load_raw_cached(key) if use_cache else None
        if df is None:
            t0 = time.perf_counter()
            df = handler._load_raw()
            logger.info("rolling: raw features for %s .. %s computed in %.1fs (%d rows)", _d(handler.start_time),
                        _d(end), time.perf_counter() - t0, len(df))
            if use_cache:
                _store_raw(key, df)
        else:
            logger.info("rolling: raw features for %s .. %s from the raw cache", _d(handler.start_time), _d(end))
        with _RAW_GUARD:
            _RAW[gid] = df
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
    from qlib_prefect.data.dataset import Dataset
    from qlib_prefect.data.handler import DataHandlerLP
    from qlib_prefect.utils import init_instance_by_config

    dcfg = copy.deepcopy(w.task["dataset"])
    if ctx.share_raw and w.raw_group is not None and w.raw_group in ctx.raw_groups:
        hcfg = dcfg["kwargs"]["handler"]
        handler = _make_handler(hcfg)
        raw = _raw_frame(ctx, w.raw_group)
        handler._data = _slice_dates(raw, handler.start_time, handler.end_time)
        if isinstance(handler, DataHandlerLP):
            handler.fit_process_data()
        dcfg["kwargs"]["handler"] = handler
    return init_instance_by_config(dcfg, "qlib_prefect.data.dataset", accept_types=Dataset,
                                   _where="task.dataset")


def _train_window(ctx: _RunCtx, w: WindowSpec, rec: StoreRecorder) -> None:
    from qlib_prefect.model.base import Model
    from qlib_prefect.orchestration._stages import _accepts, _light_dataset
    from qlib_prefect.utils import flatten_dict, init_instance_by_config
    from qlib_prefect.utils.placeholder import fill_placeholder

    task = copy.deepcopy(w.task)
    rec.log_params(**flatten_dict(task))
    rec.set_tags(**{WINDOW_TAG: str(w.index), TEST_SEGMENT_TAG: w.test_label(), GROUP_TAG: w.group,
                    KEY_TAG: w.key})
    rec.save_objects(task=task)
    dataset = _window_dataset(ctx, w)
    model = init_instance_by_config(task["model"], "qlib_prefect.model.gbdt", accept_types=Model,
                                    _where="task.model")
    kwargs: dict[str, Any] = {}
    reweighter = task.get("reweighter")
    if reweighter is not None:
        if isinstance(reweighter, dict):
            reweighter = init_instance_by_config(reweighter, _where="task.reweighter")
        if _accepts(model.fit, "reweighter"):
            kwargs["reweighter"] = reweighter
    if _accepts(model.fit, "recorder"):
        kwargs["recorder"] = rec
    model.fit(dataset, **kwargs)
    rec.save_objects(**{"params.pkl": model})
    try:
        rec.save_objects(dataset=_light_dataset(dataset))
    except Exception as e:  # unpicklable custom dataset
        logger.warning("window %d: cannot save the 'dataset' artifact (%s)", w.index, e)
    records = fill_placeholder(task, {"<MODEL>": model, "<DATASET>": dataset})["record"]
    for i, cfg in enumerate(records):
        record = init_instance_by_config(cfg, RECORD_MODULE, recorder=rec,
                                         try_kwargs={"model": model, "dataset": dataset},
                                         _where=f"task.record.{i}")
        record.generate()


def _window_fn(ctx: _RunCtx | dict[str, Any], w: WindowSpec | dict[str, Any], stage_key: str) -> dict[str, Any]:
    from prefect import get_run_logger

    ctx, w = _as_ctx(ctx), _as_window(w)

    get_run_logger().info("training window %d, test %s (key %s)", w.index, w.test_label(), stage_key[:16])
    store = ctx.store
    with store.build(WINDOW_STAGE, w.key, meta={"window": w.index, "group": w.group, "test": w.test_label()}) as tmp:
        rec = StoreRecorder(path=tmp, name=f"window-{w.index}")
        _train_window(ctx, w, rec)
        rec.flush()
    return {"stage": WINDOW_STAGE, "key": w.key, "path": str(store.path(WINDOW_STAGE, w.key))}


def _results_dir() -> Path:
    from qlib_prefect.orchestration._flow import _results_dir as rd

    return rd()


def _window_task(w: WindowSpec, refresh: bool) -> Any:
    return task(_window_fn, name="rolling-window", task_run_name=f"window-{w.index}-{w.test_label()}",
                cache_policy=StageCachePolicy(), persist_result=True, result_storage=_results_dir(),
                result_serializer="json", refresh_cache=refresh, retries=0)


# ------------------------------------------------------------------------------------------ summary stage
def _summary_fn(ctx: _RunCtx | dict[str, Any], group: str, window_refs: list[dict[str, Any]], records: list[Any],
                stage_key: str) -> dict[str, Any]:
    from qlib_prefect.task.ens import RollingEnsemble
    from qlib_prefect.utils import init_instance_by_config

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
        rec.save_objects(**{"pred.pkl": RollingEnsemble()(preds)})
        if labels:
            rec.save_objects(**{"label.pkl": RollingEnsemble()(labels)})
        rec.set_tags(**{GROUP_TAG: group, "qlib_prefect.rolling.windows": str(len(window_refs))})
        for i, cfg in enumerate(copy.deepcopy(records)):
            record = init_instance_by_config(cfg, RECORD_MODULE, recorder=rec, _where=f"summary.record.{i}")
            record.generate()
        rec.flush()
    return {"stage": SUMMARY_STAGE, "key": stage_key, "path": str(store.path(SUMMARY_STAGE, stage_key))}


def _summary_task(group: str, refresh: bool) -> Any:
    return task(_summary_fn, name="rolling-summary", task_run_name=f"summary-{group}",
                cache_policy=StageCachePolicy(), persist_result=True, result_storage=_results_dir(),
                result_serializer="json", refresh_cache=refresh, retries=0)


# ------------------------------------------------------------------------------------------ MLflow runs
def _publish_window_fn(ref: dict[str, Any], w: WindowSpec | dict[str, Any], state: str, parent_id: str,
                       experiment_id: str, uri: str, run_name: str | None = None) -> str:
    """A new MLflow run for window ``w`` (child of ``parent_id``) holding the window's stage entry."""
    w = _as_window(w)
    from qlib_prefect.orchestration._flow import _publish_fn
    from qlib_prefect.workflow._store import get_client, retry_locked

    client = get_client(uri)
    name = run_name or f"window-{w.index}"
    tags = {PARENT_TAG: parent_id, TEST_SEGMENT_TAG: w.test_label(), GROUP_TAG: w.group, KEY_TAG: w.key,
            "qlib_prefect.rolling.state": state, "mlflow.runName": name}
    if w.index >= 0:
        tags[WINDOW_TAG] = str(w.index)
    run = retry_locked(lambda: client.create_run(experiment_id, tags=tags, run_name=name))
    run_id = run.info.run_id
    try:
        _publish_fn([ref], run_id, uri)
    except BaseException:
        retry_locked(lambda: client.set_terminated(run_id, "FAILED"))
        raise
    retry_locked(lambda: client.set_terminated(run_id, "FINISHED"))
    return run_id


_publish_window = task(_publish_window_fn, name="publish-window", cache_policy=NO_CACHE, persist_result=False)


# ------------------------------------------------------------------------------------------ the flow
def _state_name(state: Any) -> str:
    return getattr(state, "name", None) or str(getattr(state, "type", "?"))


def _run_plan(cfg: Any, plan: _Plan, *, kind: str, experiment_name: str | None, refresh: bool,
              params: dict[str, Any]) -> dict[str, Any]:
    from qlib_prefect._version import __version__
    from qlib_prefect.orchestration._flow import CONFIG_HASH_TAG, VERSION_TAG, _publish_fn
    from qlib_prefect.orchestration._report import key_metrics
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
            state = _state_name(fut.state)
            if not fut.state.is_completed():
                failed.append((w, fut))
                results.append({"window": w.index, "state": state})
                continue
            ref = fut.result()
            results.append({"window": w.index, "group": w.group, "test": w.test_label(), "key": w.key,
                            "state": state, "ref": ref})
            pubs.append(_publish_window.submit(ref, _fields(w), state, parent.id, parent.experiment_id,
                                               parent.uri))
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
            sfut = _summary_task(group, sstale).submit(_fields(ctx), group, refs, plan.summary_records, skey)
            sref = sfut.result()
            summary_states[group] = _state_name(sfut.state)
            if len(plan.summaries) == 1:
                metrics.update(_publish_fn([sref], parent.id, parent.uri))
            else:  # one child run per group; the parent gets the group's metrics prefixed
                gw = WindowSpec(index=-1, group=group, task={"dataset": {"kwargs": {"segments": {
                    "test": (None, None)}}}}, key=skey, until=None, fingerprint="", raw_group=None)
                _publish_window_fn(sref, gw, summary_states[group], parent.id, parent.experiment_id, parent.uri,
                                   run_name=f"summary-{group}")
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
            "metrics": key_metrics(metrics) if len(plan.summaries) == 1 else metrics, "all_metrics": metrics,
        }
        parent.set_tags(**{"qlib_prefect.rolling.trained": str(trained)})
    except BaseException:
        _drop_raw()
        R.end_exp("FAILED")
        raise
    _drop_raw()
    R.end_exp("FINISHED")
    summary["elapsed_s"] = time.perf_counter() - t0
    return summary


def _drop_raw() -> None:
    with _RAW_GUARD:
        _RAW.clear()
        _RAW_LOCKS.clear()


def _rolling(config: Any, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
             experiment_name: str | None = None, refresh: bool = False,
             refit_processors: bool = True) -> dict[str, Any]:
    """Rolling retraining of a qrun task config: one cached task + MLflow run per window, then a summary."""
    gen = lambda t: [("rolling", x) for x in _rolling_tasks(t, step, rtype, trunc_days)]  # noqa: E731
    cfg, plan = _prepare(config, gen, refit_processors)
    params = {"step": step, "rtype": rtype, "trunc_days": trunc_days, "refit_processors": refit_processors}
    return _run_plan(cfg, plan, kind="rolling", experiment_name=experiment_name, refresh=refresh, params=params)


def _multi_horizon(config: Any, horizon: list[int] | tuple[int, ...] = (5,), label_leak_n: int = 2,
                   step: int | None = None, rtype: str = "expanding", trunc_days: int | None = None,
                   experiment_name: str | None = None, refresh: bool = False,
                   refit_processors: bool = True) -> dict[str, Any]:
    """One task per label horizon (:class:`MultiHorizonGen`; rolled with ``step`` when given), a summary each."""
    gen = lambda t: _horizon_tasks(t, list(horizon), label_leak_n, step, rtype, trunc_days)  # noqa: E731
    cfg, plan = _prepare(config, gen, refit_processors)
    params = {"horizon": list(horizon), "label_leak_n": label_leak_n, "step": step, "rtype": rtype,
              "trunc_days": trunc_days, "refit_processors": refit_processors}
    return _run_plan(cfg, plan, kind="multi_horizon", experiment_name=experiment_name, refresh=refresh,
                     params=params)


class _LeanFlow(Flow):
    """Direct calls apply the lean Prefect settings (as ``qlib_workflow``); config errors fail before a run."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from qlib_prefect.orchestration._settings import apply_env_defaults, lean_prefect_settings

        apply_env_defaults()
        config = args[0] if args else kwargs.get("config")
        if config is not None:
            cfg = _load(config)
            import qlib_prefect
            from qlib_prefect.orchestration._flow import _warm_tracking

            qlib_prefect.init(**cfg.qlib_init)
            _warm_tracking()  # opens the MLflow store while the Prefect API server starts
        with lean_prefect_settings():
            return super().__call__(*args, **kwargs)


DEFAULT_MAX_WORKERS = 2

rolling_workflow = _LeanFlow(
    _rolling, name="qlib-rolling", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_MAX_WORKERS),
    persist_result=False, validate_parameters=False, log_prints=False,
    description="Rolling retraining: one cached task and MLflow run per window, merged predictions analysed.",
)
multi_horizon_workflow = _LeanFlow(
    _multi_horizon, name="qlib-multi-horizon",
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

