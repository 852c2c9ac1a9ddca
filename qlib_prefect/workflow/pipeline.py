"""The one pipeline that turns a task config into a fitted model and its records (qlib's ``_exe_task``).

qlib's ``qlib.model.trainer._exe_task`` builds the model and the dataset, calls ``model.fit(dataset,
reweighter=...)``, saves ``params.pkl`` and ``dataset``, fills ``<MODEL>`` / ``<DATASET>`` / ``<dotted.path>``
placeholders and builds and ``generate()``-s every record. Every runner of this package goes through the
functions here, so those steps exist once:

* the trainers (``TrainerR``, ``DelayTrainerR``, ``TrainerRM``, ``DelayTrainerRM``): :func:`execute_task`;
* the cached stages of the Prefect workflow (dataset, train, one task per record): :func:`build_dataset`,
  :func:`save_dataset`, :func:`train_model`, :func:`run_records` (``only=`` one record);
* the rolling / multi-horizon windows and the deployment window flow: :func:`execute_task` with the window's
  dataset built from the shared raw features.

Deliberate differences from qlib: the task is not filled in place (a structural copy is, so a task list does
not keep every trained model and dataset alive); the saved ``dataset`` is a light copy (qlib calls
``dataset.config(dump_all=False, recursive=True)`` on the live dataset, which changes the caller's object; the
pickled artifact is the same); a dict ``reweighter`` config is built into an instance.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from qlib_prefect.utils import init_instance_by_config
from qlib_prefect.utils.placeholder import fill_placeholder

__all__ = [
    "DATASET_MODULE",
    "MODEL_MODULE",
    "RECORD_MODULE",
    "build_dataset",
    "build_model",
    "execute_task",
    "fill_task_placeholders",
    "filter_kwargs",
    "light_dataset",
    "run_records",
    "save_dataset",
    "task_records",
    "train_model",
]

logger = logging.getLogger(__name__)

DATASET_MODULE = "qlib_prefect.data.dataset"
MODEL_MODULE = "qlib_prefect.model.gbdt"
RECORD_MODULE = "qlib_prefect.workflow.record_temp"


def filter_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """qlib's ``auto_filter_kwargs``: drop (with a warning) keyword arguments ``func`` does not accept."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    kept = {}
    for k, v in kwargs.items():
        if k in params and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY:
            kept[k] = v
        else:
            (logger.warning if v is not None else logger.debug)("The parameter `%s` with value `%s` is ignored.", k, v)
    return kept


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _copy_containers(obj: Any) -> Any:
    """Copy the dict/list structure (what placeholder filling walks); leaves other objects shared."""
    if isinstance(obj, dict):
        return {k: _copy_containers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_containers(v) for v in obj]
    return obj


def fill_task_placeholders(task: dict, model: Any, dataset: Any) -> dict:
    """``fill_placeholder`` of ``<MODEL>``, ``<DATASET>`` and dotted ``<a.b.0>`` paths on a structural copy of the
    task (qlib fills the caller's dict in place; the result is the same)."""
    return fill_placeholder(_copy_containers(task), {"<MODEL>": model, "<DATASET>": dataset})


def task_records(task: dict) -> list[Any]:
    """The task's record configs as a list (qlib accepts a single record as well)."""
    records = task.get("record") or []
    return records if isinstance(records, list) else [records]


def build_dataset(config: Any) -> Any:
    """The task's dataset (``task.dataset``; a ready :class:`Dataset` is returned as is)."""
    from qlib_prefect.data.dataset import Dataset

    return init_instance_by_config(config, DATASET_MODULE, accept_types=Dataset, _where="task.dataset")


def build_model(config: Any) -> Any:
    """The task's (unfitted) model (``task.model``)."""
    from qlib_prefect.model.base import Model

    return init_instance_by_config(config, MODEL_MODULE, accept_types=Model, _where="task.model")


def light_dataset(dataset: Any) -> Any:
    """A copy of ``dataset`` without its loaded frames (what qlib saves with ``dump_all=False``); the live dataset
    is left as it is."""
    ds = copy.copy(dataset)
    handler = getattr(ds, "handler", None)
    if handler is not None:
        h = copy.copy(handler)
        for attr in getattr(h, "ATTR_MAP", {}).values():
            if hasattr(h, attr):
                setattr(h, attr, None)
        ds.handler = h
    return ds


def save_dataset(recorder: Any, dataset: Any) -> None:
    """Save the ``dataset`` artifact (for online inference: the loaded data is not dumped). An unpicklable
    custom dataset only costs the artifact (a warning)."""
    try:
        recorder.save_objects(dataset=light_dataset(dataset))
    except Exception as e:
        logger.warning("cannot save the 'dataset' artifact (%s)", e)


def train_model(task: dict, dataset: Any, recorder: Any) -> Any:
    """Build ``task.model``, fit it on ``dataset`` (``reweighter`` and ``recorder`` passed when ``fit`` takes
    them) and save it as ``params.pkl``; returns the fitted model."""
    from qlib_prefect.data.cache import wait_for_pending_writes

    model = build_model(task["model"])
    reweighter = task.get("reweighter")
    if isinstance(reweighter, dict):
        reweighter = init_instance_by_config(reweighter, _where="task.reweighter")
    kwargs = filter_kwargs(model.fit, {"reweighter": reweighter})
    if _accepts(model.fit, "recorder"):
        kwargs["recorder"] = recorder
    # a dataset whose frames are still being written to the handler cache is swapped for its memory-mapped
    # copies once written: fitting after that keeps the anonymous frames out of the fit's peak memory
    wait_for_pending_writes()
    model.fit(dataset, **kwargs)
    recorder.save_objects(**{"params.pkl": model})
    return model


def run_records(task: dict, recorder: Any, *, model: Any = None, dataset: Any = None,
                only: Iterable[int] | None = None) -> list[Any]:
    """Build and ``generate()`` the task's records (all, or the indices in ``only``) into ``recorder``.

    Placeholders are filled with ``model``/``dataset``; records that accept ``model=``/``dataset=`` get them.
    """
    filled = fill_task_placeholders(task, model, dataset)
    records = task_records(filled)
    try_kwargs = {k: v for k, v in (("model", model), ("dataset", dataset)) if v is not None}
    out = []
    for i in (range(len(records)) if only is None else only):
        record = init_instance_by_config(records[i], RECORD_MODULE, try_kwargs=try_kwargs, recorder=recorder,
                                         _where=f"task.record.{i}")
        record.generate()
        out.append(record)
    return out


def execute_task(task: dict, recorder: Any, *, dataset: Any = None) -> tuple[Any, Any]:
    """The whole pipeline into ``recorder``: dataset (``task.dataset`` unless given), fit, ``params.pkl``,
    ``dataset``, records. Returns ``(model, dataset)``."""
    dataset = build_dataset(task["dataset"]) if dataset is None else dataset
    model = train_model(task, dataset, recorder)
    save_dataset(recorder, dataset)
    run_records(task, recorder, model=model, dataset=dataset)
    return model, dataset
