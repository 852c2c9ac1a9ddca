"""Trainers backed by the MongoDB task pool (qlib's ``TrainerRM`` / ``DelayTrainerRM`` of ``qlib/model/trainer.py``).

``TrainerRM.train(tasks)`` stores the tasks in a pool (dedupe: a task already there is reused, and if it is done its
stored recorder is returned without training again), runs the waiting ones in this process with
:func:`~qlib_prefect.task.manage.run_task`, waits for those other workers are running, and returns one recorder
per task, in order, tagged ``train_status=begin_task_train`` and ``_id in TaskManager=<task _id>``.
``trainer.worker()`` runs waiting tasks of the same pool from any other process or machine that shares the MongoDB
and the MLflow tracking URI. ``DelayTrainerRM`` splits this into ``train`` (``begin_task_train``: log the task,
status ``part_done``) and ``end_train`` (``end_task_train``: fit, status ``done``).

Example:
    >>> trainer = TrainerRM(experiment_name="rolling", task_pool="rolling_tasks")  # doctest: +SKIP
    >>> recs = trainer(tasks)  # doctest: +SKIP
    >>> TrainerRM(experiment_name="rolling", task_pool="rolling_tasks").worker()  # on other machines  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qlib_prefect.errors import ConfigError
from qlib_prefect.task.manage import TaskManager, TaskPoolError, run_task
from qlib_prefect.task.trainer import TrainerR, begin_task_train, end_task_train, task_train

__all__ = ["DelayTrainerRM", "TrainerRM"]


class TrainerRM(TrainerR):
    """Train tasks through a MongoDB task pool, so several processes / machines can share the work.

    Args:
        experiment_name: default experiment.
        task_pool: pool (collection) name; ``None`` uses the experiment name.
        train_func: ``f(task, experiment_name, recorder_name=..., **kw) -> recorder`` (default ``task_train``).
        skip_run_task: only create the tasks and wait: the training is left to ``worker()`` processes.
        default_rec_name: recorder name for every task.
        lease_seconds: lease of the fetched tasks (``None``: the ``C["mongo"]`` setting, default 60).
        poll_interval: seconds between checks while waiting for other workers (qlib: 10).
    """

    TM_ID = "_id in TaskManager"

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        *,
        train_func: Callable[..., Any] = task_train,
        skip_run_task: bool = False,
        default_rec_name: str | None = None,
        lease_seconds: float | None = None,
        poll_interval: float = 10.0,
    ) -> None:
        super().__init__(experiment_name, train_func=train_func, default_rec_name=default_rec_name)
        self.task_pool = task_pool
        self.skip_run_task = skip_run_task
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval

    def _tm(self, experiment_name: str | None) -> TaskManager:
        pool = self.task_pool if self.task_pool is not None else experiment_name
        if not pool:
            raise ConfigError(f"{type(self).__name__}: give a task_pool or an experiment_name (the default pool)")
        return TaskManager(pool, lease_seconds=self.lease_seconds)

    def _results(self, tm: TaskManager, ids: list) -> list:
        recs = []
        for _id in ids:
            doc = tm.re_query(_id)
            if "res" not in doc:
                raise TaskPoolError(f"task pool {tm.pool_name!r}: task {_id} has no result (status {doc['status']})")
            recs.append(doc["res"])
        return recs

    def train(
        self,
        tasks: Any,
        train_func: Callable[..., Any] | None = None,
        experiment_name: str | None = None,
        before_status: str = TaskManager.STATUS_WAITING,
        after_status: str = TaskManager.STATUS_DONE,
        default_rec_name: str | None = None,
        **kwargs: Any,
    ) -> list:
        """Create the tasks in the pool, run the waiting ones here (unless ``skip_run_task``), wait for the rest and
        return their recorders in task order, tagged ``begin_task_train`` and ``_id in TaskManager``."""
        tasks = self._task_list(tasks)
        if not tasks:
            return []
        train_func, experiment_name = self._resolve(train_func, self.train_func, experiment_name)
        if default_rec_name is None:
            default_rec_name = self.default_rec_name
        tm = self._tm(experiment_name)
        ids = tm.create_task(tasks)  # tasks already in the pool are reused
        query = {"_id": {"$in": ids}}
        if not self.skip_run_task:
            run_task(train_func, tm, query=query, experiment_name=experiment_name, before_status=before_status,
                     after_status=after_status, recorder_name=default_rec_name, **kwargs)
        if not self.is_delay():
            tm.wait(query=query, poll_interval=self.poll_interval)
        else:  # tasks begun by other workers: wait until they are at least part_done (qlib raises a KeyError)
            tm.wait(query={**query, "status": {"$in": [tm.STATUS_WAITING, tm.STATUS_RUNNING]}},
                    poll_interval=self.poll_interval)
        recs = self._results(tm, ids)
        for _id, rec in zip(ids, recs):
            self._set_status(rec, self.STATUS_BEGIN)
            rec.set_tags(**{self.TM_ID: str(_id)})
        return recs

    def worker(self, train_func: Callable[..., Any] | None = None, experiment_name: str | None = None) -> bool:
        """Run every waiting task of the pool (call it in other processes or machines); whether any ran."""
        train_func, experiment_name = self._resolve(train_func, self.train_func, experiment_name)
        return run_task(train_func, self._tm(experiment_name), experiment_name=experiment_name)

    def has_worker(self) -> bool:
        return True


class DelayTrainerRM(TrainerRM):
    """``train`` begins the tasks (``begin_task_train``, status ``part_done``); ``end_train`` fits them
    (``end_task_train`` on the begun recorders, status ``done``), here and in ``worker()`` processes.

    ``skip_run_task`` only affects ``end_train`` (the preparation always runs here, as in qlib).
    """

    def __init__(
        self,
        experiment_name: str | None = None,
        task_pool: str | None = None,
        *,
        train_func: Callable[..., Any] = begin_task_train,
        end_train_func: Callable[..., Any] = end_task_train,
        skip_run_task: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(experiment_name, task_pool, train_func=train_func, skip_run_task=skip_run_task, **kwargs)
        self.end_train_func = end_train_func
        self.delay = True

    def train(self, tasks: Any, train_func: Callable[..., Any] | None = None, experiment_name: str | None = None,
              **kwargs: Any) -> list:
        """:meth:`TrainerRM.train` with ``after_status=part_done`` (always run here)."""
        tasks = self._task_list(tasks)
        if not tasks:
            return []
        kwargs.pop("after_status", None)
        skip, self.skip_run_task = self.skip_run_task, False
        try:
            return super().train(tasks, train_func=train_func, experiment_name=experiment_name,
                                 after_status=TaskManager.STATUS_PART_DONE, **kwargs)
        finally:
            self.skip_run_task = skip

    def end_train(self, models: Any, end_train_func: Callable[..., Any] | None = None,
                  experiment_name: str | None = None, **kwargs: Any) -> list:
        """Fit the begun tasks of ``models`` (``end_train_func(rec, experiment_name, **kw)``) here (unless
        ``skip_run_task``) and in workers, wait for all, and tag the recorders ``end_task_train``."""
        models = self._rec_list(models)
        end_train_func, experiment_name = self._resolve(end_train_func, self.end_train_func, experiment_name)
        tm = self._tm(experiment_name)
        ids = []
        for rec in models:
            tags = rec.list_tags()
            if self.TM_ID not in tags:
                raise ConfigError(f"{type(self).__name__}.end_train: recorder {rec.info['id']} has no "
                                  f"{self.TM_ID!r} tag (was it made by {type(self).__name__}.train?)")
            ids.append(tags[self.TM_ID])
        query = {"_id": {"$in": ids}}
        if not self.skip_run_task:
            run_task(end_train_func, tm, query=query, experiment_name=experiment_name,
                     before_status=TaskManager.STATUS_PART_DONE, **kwargs)
        tm.wait(query=query, poll_interval=self.poll_interval)
        for rec in models:
            self._set_status(rec, self.STATUS_END)
        return models

    def worker(self, end_train_func: Callable[..., Any] | None = None, experiment_name: str | None = None) -> bool:
        """Fit every part_done task of the pool (call it in other processes or machines); whether any ran."""
        end_train_func, experiment_name = self._resolve(end_train_func, self.end_train_func, experiment_name)
        return run_task(end_train_func, self._tm(experiment_name), experiment_name=experiment_name,
                        before_status=TaskManager.STATUS_PART_DONE)
