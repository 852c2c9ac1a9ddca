"""Train task dicts into recorders (qlib's ``qlib/model/trainer.py``).

A *task* is a qlib task dict ``{"model": cfg, "dataset": cfg, "record": [cfg, ...]}`` (e.g. from
:class:`~qlib_prefect.task.gen.RollingGen`). :func:`task_train` runs one task in a new recorder of an experiment:

1. ``_log_task_info``: the flattened task as params, the task itself as the artifact ``task``, a ``hostname`` tag;
2. ``_exe_task``: build model and dataset, ``model.fit(dataset[, reweighter])``, save ``params.pkl`` (the model) and
   ``dataset`` (the dataset config without its data), fill ``<MODEL>`` / ``<DATASET>`` / ``<dotted.path>``
   placeholders, then build and ``generate()`` every record (``SignalRecord`` -> ``pred.pkl``/``label.pkl``,
   ``SigAnaRecord`` -> ``sig_analysis/*``, ...), passing ``model=``/``dataset=`` to the records that accept them.

Trainers train a list of tasks: :class:`TrainerR` (sequential, optionally each task in a fresh subprocess) and
:class:`DelayTrainerR` (``train`` only logs the tasks, ``end_train`` fits them). Both tag every recorder
``train_status`` = ``begin_task_train`` / ``end_task_train``. The MongoDB-backed ``TrainerRM`` /
``DelayTrainerRM`` live in ``qlib_prefect.task.trainer_rm`` and reuse :class:`TrainerR`'s hooks.

Example:
    >>> tasks = RollingGen(step=40).generate(task)  # doctest: +SKIP
    >>> recs = TrainerR(experiment_name="rolling")(tasks)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import logging
import socket
from collections.abc import Callable
from typing import Any

from qlib_prefect.task.isolation import call_in_subproc
from qlib_prefect.utils import flatten_dict, init_instance_by_config
from qlib_prefect.utils.placeholder import fill_placeholder

__all__ = [
    "DelayTrainerR",
    "Trainer",
    "TrainerR",
    "begin_task_train",
    "call_in_subproc",
    "end_task_train",
    "fill_task_placeholders",
    "task_train",
]

logger = logging.getLogger(__name__)

RECORD_MODULE = "qlib_prefect.workflow.record_temp"


def _filter_kwargs(func: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
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


def _copy_containers(obj: Any) -> Any:
    """Copy the dict/list structure (what placeholder filling walks); leaves other objects shared."""
    if isinstance(obj, dict):
        return {k: _copy_containers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_containers(v) for v in obj]
    return obj


def fill_task_placeholders(task_config: dict, model: Any, dataset: Any) -> dict:
    """``fill_placeholder`` of ``<MODEL>``, ``<DATASET>`` and dotted ``<a.b.0>`` paths on a structural copy of the
    task (qlib fills the caller's dict in place, which keeps every trained model and dataset alive in the task
    list; the result is the same)."""
    return fill_placeholder(_copy_containers(task_config), {"<MODEL>": model, "<DATASET>": dataset})


def _log_task_info(task_config: dict) -> None:
    from qlib_prefect.workflow import R

    R.log_params(**flatten_dict(task_config))
    R.save_objects(**{"task": task_config})  # keep the original format and datatypes
    R.set_tags(**{"hostname": socket.gethostname()})


def _exe_task(task_config: dict) -> None:
    from qlib_prefect.data.dataset import Dataset
    from qlib_prefect.model.base import Model
    from qlib_prefect.workflow import R

    rec = R.get_recorder()
    model = init_instance_by_config(task_config["model"], accept_types=Model, _where="task.model")
    dataset = init_instance_by_config(task_config["dataset"], accept_types=Dataset, _where="task.dataset")
    reweighter = task_config.get("reweighter", None)
    model.fit(dataset, **_filter_kwargs(model.fit, {"reweighter": reweighter}))
    R.save_objects(**{"params.pkl": model})
    # saved for online inference: the loaded data is not dumped
    dataset.config(dump_all=False, recursive=True)
    R.save_objects(**{"dataset": dataset})
    task_config = fill_task_placeholders(task_config, model, dataset)
    records = task_config.get("record", [])
    if isinstance(records, dict):  # a single record
        records = [records]
    for i, record in enumerate(records):
        r = init_instance_by_config(
            record,
            default_module=RECORD_MODULE,
            try_kwargs={"model": model, "dataset": dataset},
            recorder=rec,
            _where=f"task.record[{i}]",
        )
        r.generate()


def begin_task_train(task_config: dict, experiment_name: str, recorder_name: str | None = None) -> Any:
    """Start a recorder and log the task (params, ``task`` artifact, hostname); nothing is fitted."""
    from qlib_prefect.workflow import R

    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        _log_task_info(task_config)
        return R.get_recorder()


def end_task_train(rec: Any, experiment_name: str) -> Any:
    """Resume ``rec`` and run the task saved in it (fit, save, records)."""
    from qlib_prefect.workflow import R

    with R.start(experiment_name=experiment_name, recorder_id=rec.info["id"], resume=True):
        task_config = R.load_object("task")
        _exe_task(task_config)
    return rec


def task_train(task_config: dict, experiment_name: str, recorder_name: str | None = None) -> Any:
    """Run one task in a new recorder of ``experiment_name`` and return the (finished) recorder."""
    from qlib_prefect.workflow import R

    with R.start(experiment_name=experiment_name, recorder_name=recorder_name):
        _log_task_info(task_config)
        _exe_task(task_config)
        return R.get_recorder()


class Trainer:
    """Train a list of tasks (``train``) and finish them (``end_train``); ``trainer(tasks)`` does both."""

    def __init__(self) -> None:
        self.delay = False

    def train(self, tasks: list, *args: Any, **kwargs: Any) -> list:
        raise NotImplementedError("Please implement the `train` method.")

    def end_train(self, models: list, *args: Any, **kwargs: Any) -> list:
        return models

    def is_delay(self) -> bool:
        """Whether the real work happens in ``end_train``."""
        return self.delay

    def __call__(self, *args: Any, **kwargs: Any) -> list:
        return self.end_train(self.train(*args, **kwargs))

    def has_worker(self) -> bool:
        return False

    def worker(self) -> None:
        raise NotImplementedError("Please implement the `worker` method")


class TrainerR(Trainer):
    """Train tasks one after another, each into a recorder (qlib's ``TrainerR``).

    Args:
        experiment_name: default experiment.
        train_func: ``f(task, experiment_name, recorder_name=..., **kw) -> recorder`` (default :func:`task_train`).
        call_in_subproc: run every task in a fresh subprocess (forces memory release; needs a config made with
            ``qlib_prefect.init``, which the subprocess repeats).
        default_rec_name: recorder name for every task (``None``: MLflow's default).

    Hooks for subclasses (the MongoDB trainers use them): :meth:`_task_list`, :meth:`_rec_list`,
    :meth:`_resolve`, :meth:`_set_status`, :meth:`_train_one`.
    """

    STATUS_KEY = "train_status"
    STATUS_BEGIN = "begin_task_train"
    STATUS_END = "end_task_train"

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        train_func: Callable[..., Any] = task_train,
        call_in_subproc: bool = False,
        default_rec_name: str | None = None,
    ) -> None:
        super().__init__()
        self.experiment_name = experiment_name
        self.default_rec_name = default_rec_name
        self.train_func = train_func
        self._call_in_subproc = call_in_subproc

    # ---- hooks -------------------------------------------------------------------------------------------------
    @staticmethod
    def _task_list(tasks: Any) -> list:
        """A single task dict -> ``[task]``; ``None`` -> ``[]``."""
        if tasks is None:
            return []
        if isinstance(tasks, dict):
            return [tasks]
        return list(tasks)

    @staticmethod
    def _rec_list(models: Any) -> list:
        """A single recorder -> ``[recorder]``."""
        from qlib_prefect.workflow.recorder import Recorder

        if isinstance(models, Recorder):
            return [models]
        return list(models)

    def _resolve(self, func: Callable[..., Any] | None, default: Callable[..., Any],
                 experiment_name: str | None) -> tuple[Callable[..., Any], str | None]:
        return (default if func is None else func), (self.experiment_name if experiment_name is None
                                                     else experiment_name)

    def _set_status(self, rec: Any, status: str) -> None:
        rec.set_tags(**{self.STATUS_KEY: status})

    def _train_one(self, train_func: Callable[..., Any], task: dict, experiment_name: str | None,
                   **kwargs: Any) -> Any:
        if self._call_in_subproc:
            from qlib_prefect.config.runtime import C

            logger.info("running the task in a subprocess (forces memory release)")
            train_func = call_in_subproc(train_func, dict(C))
        return train_func(task, experiment_name, recorder_name=self.default_rec_name, **kwargs)

    # ---- API ---------------------------------------------------------------------------------------------------
    def train(self, tasks: Any, train_func: Callable[..., Any] | None = None, experiment_name: str | None = None,
              **kwargs: Any) -> list:
        """Train every task (in order) and return their recorders, tagged ``train_status=begin_task_train``."""
        tasks = self._task_list(tasks)
        if not tasks:
            return []
        train_func, experiment_name = self._resolve(train_func, self.train_func, experiment_name)
        recs = []
        for i, task in enumerate(tasks):
            logger.info("train tasks: %d/%d", i + 1, len(tasks))
            rec = self._train_one(train_func, task, experiment_name, **kwargs)
            self._set_status(rec, self.STATUS_BEGIN)
            recs.append(rec)
        return recs

    def end_train(self, models: Any, **kwargs: Any) -> list:
        """Tag the recorders ``train_status=end_task_train``."""
        models = self._rec_list(models)
        for rec in models:
            self._set_status(rec, self.STATUS_END)
        return models


class DelayTrainerR(TrainerR):
    """``train`` only starts recorders and logs the tasks (:func:`begin_task_train`); ``end_train`` fits them
    (:func:`end_task_train`), skipping recorders already tagged ``end_task_train``."""

    def __init__(
        self,
        experiment_name: str | None = None,
        *,
        train_func: Callable[..., Any] = begin_task_train,
        end_train_func: Callable[..., Any] = end_task_train,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, train_func=train_func, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True

    def end_train(self, models: Any, end_train_func: Callable[..., Any] | None = None,
                  experiment_name: str | None = None, **kwargs: Any) -> list:
        """Fit every recorder's saved task (``end_train_func(rec, experiment_name, **kwargs)``) and tag it end."""
        models = self._rec_list(models)
        end_train_func, experiment_name = self._resolve(end_train_func, self.end_train_func, experiment_name)
        for rec in models:
            if rec.list_tags().get(self.STATUS_KEY) == self.STATUS_END:
                continue
            end_train_func(rec, experiment_name, **kwargs)
            self._set_status(rec, self.STATUS_END)
        return models


_RM_CLASSES = ("TrainerRM", "DelayTrainerRM")


def __getattr__(name: str) -> Any:
    """``TrainerRM`` / ``DelayTrainerRM`` (MongoDB task pool) live in ``qlib_prefect.task.trainer_rm``; they are
    reachable here too, so qlib's ``qlib.model.trainer`` class path resolves to them."""
    if name in _RM_CLASSES:
        import importlib

        return getattr(importlib.import_module("qlib_prefect.task.trainer_rm"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
