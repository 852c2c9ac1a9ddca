"""What each stage computes (plain functions; the Prefect tasks in ``_flow`` wrap them).

Stages compute into the content store only. Heavy objects stay in this process: the dataset (served by the
on-disk handler cache, memory-mapped) and the fitted model are memoised by stage key, so ``train`` and
``SignalRecord`` share one ``DatasetH`` and another process rebuilds it from the handler cache.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlib_prefect.orchestration._cache import RECORD_MODULE, StageSpec, resolve_dotted
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.orchestration._store import ContentStore

__all__ = ["RunContext", "clear_memo", "dataset_users", "release", "run_stage"]

logger = logging.getLogger("qlib_prefect.orchestration")

_MEMO: dict[tuple[str, str], Any] = {}
_MEMO_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_MEMO_GUARD = threading.Lock()


@dataclass
class RunContext:
    """Everything a stage needs (small; shared by the tasks of one flow run)."""

    task: dict[str, Any]
    plan: dict[str, StageSpec]
    store_root: str
    experiment_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> ContentStore:
        return ContentStore(root=self.store_root)

    def resolved_task(self) -> dict[str, Any]:
        return resolve_dotted(self.task)


def clear_memo() -> None:
    """Drop the in-process dataset/model memo (frees memory at the end of a flow run)."""
    with _MEMO_GUARD:
        _MEMO.clear()
        _MEMO_LOCKS.clear()


def _memo(kind: str, key: str, build: Any) -> Any:
    mk = (kind, key)
    with _MEMO_GUARD:
        if mk in _MEMO:
            return _MEMO[mk]
        lock = _MEMO_LOCKS.setdefault(mk, threading.Lock())
    with lock:
        if mk in _MEMO:
            return _MEMO[mk]
        obj = build()
        with _MEMO_GUARD:
            for other in [k for k in _MEMO if k[0] == kind]:  # keep one object per kind
                del _MEMO[other]
            _MEMO[mk] = obj
        return obj


def get_dataset(ctx: RunContext) -> Any:
    """The run's dataset (memoised; the handler cache makes a rebuild cheap)."""
    from qlib_prefect.data.dataset import Dataset
    from qlib_prefect.utils import init_instance_by_config

    key = ctx.plan["dataset"].key
    cfg = ctx.resolved_task()["dataset"]
    return _memo("dataset", key, lambda: init_instance_by_config(
        cfg, "qlib_prefect.data.dataset", accept_types=Dataset, _where="task.dataset"))


def get_model(ctx: RunContext) -> Any:
    """The fitted model of the run (memoised, else unpickled from the train stage's ``params.pkl``)."""
    spec = ctx.plan["train"]

    def load() -> Any:
        entry = ctx.store.require(spec.store_stage, spec.key)
        return StoreRecorder(path=entry.path, name="train").load_object("params.pkl")

    return _memo("model", spec.key, load)


def release(ctx: RunContext, name: str) -> None:
    """Stage ``name`` is done (run, cached or failed): drop the memoised dataset once no stage of this run still
    needs it (keeps peak memory down)."""
    users = ctx.extra.get("dataset_users")
    if users is None:
        return
    with _MEMO_GUARD:
        users.discard(name)
        if not users:
            for k in [k for k in _MEMO if k[0] == "dataset"]:
                del _MEMO[k]


def dataset_users(plan: list[StageSpec]) -> set[str]:
    """Names of the stages that read the dataset object (train and records that take model/dataset)."""
    return {s.name for s in plan if s.kind in ("dataset", "train") or s.needs_model}


def _light_dataset(dataset: Any) -> Any:
    """A copy of ``dataset`` without its loaded frames (qlib saves ``dataset`` with ``dump_all=False``)."""
    ds = copy.copy(dataset)
    handler = getattr(ds, "handler", None)
    if handler is not None:
        h = copy.copy(handler)
        for attr in getattr(h, "ATTR_MAP", {}).values():
            if hasattr(h, attr):
                setattr(h, attr, None)
        ds.handler = h
    return ds


def _upstream_dirs(ctx: RunContext, spec: StageSpec) -> list[Path]:
    out = []
    for name in spec.ancestors:
        up = ctx.plan[name]
        entry = ctx.store.get(up.store_stage, up.key)
        if entry is not None:
            out.append(entry.path)
    return out


def _accepts(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _run_dataset(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> None:
    # the prepared data goes to the handler cache in the background while training starts (the flow waits for
    # the write before it ends; a process that finds no entry just builds the data again)
    dataset = get_dataset(ctx)
    try:
        rec.save_objects(dataset=_light_dataset(dataset))
    except Exception as e:  # an unpicklable custom dataset: the run just lacks the ``dataset`` artifact
        logger.warning("dataset stage: cannot save the 'dataset' artifact (%s)", e)


def _run_train(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> Any:
    from qlib_prefect.model.base import Model
    from qlib_prefect.utils import init_instance_by_config

    task = ctx.resolved_task()
    model = init_instance_by_config(task["model"], "qlib_prefect.model.gbdt", accept_types=Model,
                                    _where="task.model")
    dataset = get_dataset(ctx)
    kwargs: dict[str, Any] = {}
    reweighter = task.get("reweighter")
    if reweighter is not None:
        if isinstance(reweighter, dict):
            reweighter = init_instance_by_config(reweighter, _where="task.reweighter")
        kwargs["reweighter"] = reweighter
    if _accepts(model.fit, "recorder"):
        kwargs["recorder"] = rec
    kwargs = {k: v for k, v in kwargs.items() if _accepts(model.fit, k) or k == "recorder"}
    from qlib_prefect.data.cache import wait_for_pending_writes

    # the dataset's frames are being written to the handler cache, then swapped for their memory-mapped copies:
    # fitting after that keeps ~780 MB (Alpha158) of anonymous frames out of the fit's peak memory
    wait_for_pending_writes()
    model.fit(dataset, **kwargs)
    rec.save_objects(**{"params.pkl": model})
    return model


def _run_record(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> None:
    from qlib_prefect.utils import init_instance_by_config
    from qlib_prefect.utils.placeholder import fill_placeholder

    task = ctx.resolved_task()
    try_kwargs: dict[str, Any] = {}
    if spec.needs_model:
        model, dataset = get_model(ctx), get_dataset(ctx)
        fill_placeholder(task, {"<MODEL>": model, "<DATASET>": dataset})
        try_kwargs = {"model": model, "dataset": dataset}
    records = task.get("record") or []
    if not isinstance(records, list):
        records = [records]
    cfg = records[spec.index]
    record = init_instance_by_config(cfg, RECORD_MODULE, recorder=rec, try_kwargs=try_kwargs,
                                     _where=f"task.record.{spec.index}")
    record.generate()
    try:
        from qlib_prefect.orchestration._plots import plot_stage
        from qlib_prefect.report import find_benchmark

        plot_stage(rec, benchmark=find_benchmark(cfg))
    except Exception as e:  # plots are a convenience: never fail a stage because of them
        logger.warning("%s: plots skipped (%s)", spec.name, e)


_RUNNERS = {"dataset": _run_dataset, "train": _run_train, "record": _run_record}


def run_stage(ctx: RunContext, spec: StageSpec) -> dict[str, Any]:
    """Compute ``spec`` into the content store; returns the small reference ``{stage, key, path}``."""
    store = ctx.store
    with store.build(spec.store_stage, spec.key, meta={"name": spec.name, "label": spec.label},
                     overwrite=bool(ctx.extra.get("refresh"))) as tmp:
        rec = StoreRecorder(path=tmp, upstream=_upstream_dirs(ctx, spec), name=spec.name,
                            experiment_id=ctx.experiment_id)
        out = _RUNNERS[spec.kind](ctx, spec, rec)
        rec.flush()
    if spec.kind == "train" and out is not None:
        _memo("model", spec.key, lambda: out)
    return {"stage": spec.name, "key": spec.key, "path": str(store.path(spec.store_stage, spec.key))}
