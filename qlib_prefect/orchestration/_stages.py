"""What each stage computes (plain functions; the Prefect tasks in ``_flow`` wrap them).

Stages compute into the content store only. Heavy objects stay in this process: the dataset (served by the
on-disk handler cache, memory-mapped) and the fitted model are memoised by stage key, so ``train`` and
``SignalRecord`` share one ``DatasetH`` and another process rebuilds it from the handler cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qlib_prefect.orchestration._cache import StageSpec, resolve_dotted
from qlib_prefect.orchestration._memo import MEMO
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.workflow.pipeline import build_dataset, run_records, save_dataset, task_records, train_model

__all__ = ["RunContext", "clear_memo", "dataset_users", "release", "run_stage"]

logger = logging.getLogger("qlib_prefect.orchestration")

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
    MEMO.drop("dataset", "model")


def get_dataset(ctx: RunContext) -> Any:
    """The run's dataset (memoised; the handler cache makes a rebuild cheap)."""
    key = ctx.plan["dataset"].key
    cfg = ctx.resolved_task()["dataset"]
    return MEMO.get("dataset", key, lambda: build_dataset(cfg))


def get_model(ctx: RunContext) -> Any:
    """The fitted model of the run (memoised, else unpickled from the train stage's ``params.pkl``)."""
    spec = ctx.plan["train"]

    def load() -> Any:
        entry = ctx.store.require(spec.store_stage, spec.key)
        return StoreRecorder(path=entry.path, name="train").load_object("params.pkl")

    return MEMO.get("model", spec.key, load)


def release(ctx: RunContext, name: str) -> None:
    """Stage ``name`` is done (run, cached or failed): drop the memoised dataset once no stage of this run still
    needs it (keeps peak memory down)."""
    users = ctx.extra.get("dataset_users")
    if users is None:
        return
    users.discard(name)
    if not users:
        MEMO.drop("dataset")


def dataset_users(plan: list[StageSpec]) -> set[str]:
    """Names of the stages that read the dataset object (train and records that take model/dataset)."""
    return {s.name for s in plan if s.kind in ("dataset", "train") or s.needs_model}


def _upstream_dirs(ctx: RunContext, spec: StageSpec) -> list[Path]:
    out = []
    for name in spec.ancestors:
        up = ctx.plan[name]
        entry = ctx.store.get(up.store_stage, up.key)
        if entry is not None:
            out.append(entry.path)
    return out


def _run_dataset(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> None:
    # the prepared data goes to the handler cache in the background while training starts (the flow waits for
    # the write before it ends; a process that finds no entry just builds the data again)
    save_dataset(rec, get_dataset(ctx))


def _run_train(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> Any:
    return train_model(ctx.resolved_task(), get_dataset(ctx), rec)


def _run_record(ctx: RunContext, spec: StageSpec, rec: StoreRecorder) -> None:
    from qlib_prefect.orchestration._plots import plot_stage_safely, prewarm_plotting

    if spec.label in ("PortAnaRecord", "SigAnaRecord"):  # records that draw plots: matplotlib loads meanwhile
        prewarm_plotting()
    model = dataset = None
    if spec.needs_model:
        model, dataset = get_model(ctx), get_dataset(ctx)
    run_records(ctx.resolved_task(), rec, model=model, dataset=dataset, only=[spec.index])
    from qlib_prefect.report import find_benchmark

    plot_stage_safely(rec, spec.name, benchmark=find_benchmark(task_records(ctx.resolved_task())[spec.index]))


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
        MEMO.put("model", spec.key, out)
    return {"stage": spec.name, "key": spec.key, "path": str(store.path(spec.store_stage, spec.key))}
