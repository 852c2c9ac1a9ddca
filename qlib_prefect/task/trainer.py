"""Train task dicts into recorders (qlib's ``qlib/model/trainer.py``).

A *task* is a qlib task dict ``{"model": cfg, "dataset": cfg, "record": [cfg, ...]}`` (e.g. from
:class:`~qlib_prefect.task.gen.RollingGen`). :func:`task_train` runs one task in a new recorder of an experiment:

1. ``_log_task_info``: the flattened task as params, the task itself as the artifact ``task``, a ``hostname`` tag;
2. ``_exe_task``: the one pipeline of :func:`qlib_prefect.workflow.pipeline.execute_task` (build model and
   dataset, fit, save ``params.pkl`` and ``dataset``, fill placeholders, build and ``generate()`` every record)
   in the active recorder.

Trainers train a list of tasks: :class:`TrainerR` (sequential, optionally each task in a fresh subprocess) and
:class:`DelayTrainerR` (``train`` only logs the tasks, ``end_train`` fits them). Both tag every recorder
``train_status`` = ``begin_task_train`` / ``end_task_train``. The MongoDB-backed ``TrainerRM`` /
``DelayTrainerRM`` live in ``qlib_prefect.task.trainer_rm`` and reuse :class:`TrainerR`'s hooks.

Example:
    >>> tasks = RollingGen(step=40).generate(task)  # doctest: +SKIP
    >>> recs = TrainerR(experiment_name="rolling")(tasks)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from qlib_prefect.task.isolation import call_in_subproc
from qlib_prefect.utils import flatten_dict
from qlib_prefect.workflow.pipeline import fill_task_placeholders

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

def _log_task_info(task_config: dict) -> None:
    from qlib_prefect.workflow import R

    R.log_params(**flatten_dict(task_config))
    R.save_objects(**{"task": task_config})  # keep the original format and datatypes
    R.set_tags(**{"hostname": socket.gethostname()})


def _exe_task(task_config: dict) -> None:
    from qlib_prefect.workflow import R
    from qlib_prefect.workflow.pipeline import execute_task

    rec = R.get_recorder()
    execute_task(task_config, rec)
    from qlib_prefect.report import build_run_report

    build_run_report(rec, strict=False)  # report.html + ledgers + MLflow 3 entries of the run


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
