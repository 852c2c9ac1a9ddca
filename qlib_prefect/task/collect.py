"""Collect results from recorders and post-process them (qlib's ``qlib/workflow/task/collect.py``).

* :class:`Collector`: ``collect() -> {key: value}`` then pipes every value through ``process_list``
  (e.g. ``[RollingGroup(), ...]``); calling the collector does both.
* :class:`MergeCollector`: runs several collectors and re-keys their results ``(collector_key, key)``.
* :class:`RecorderCollector`: loads artifacts (default ``pred.pkl``) of an experiment's recorders into
  ``{artifact_key: {rec_key: object}}``.

What runs where (``RecorderCollector``): the ``status`` filter (default: only ``FINISHED`` runs) and any
``list_kwargs`` (``filter_string``, ``tags``, ``params``, ``max_results``) go into the tracking store's query
(one indexed SQL query on a database store, e.g. ``attributes.status = 'FINISHED'``); only ``rec_filter_func``
(arbitrary Python on each recorder) and ``rec_key_func`` run client-side, on the runs the store returned.

Example:
    >>> def rec_key(rec):  # doctest: +SKIP
    ...     task = rec.load_object("task")
    ...     return task["model"]["class"], task["dataset"]["kwargs"]["segments"]["test"]
    >>> preds = RecorderCollector("rolling", process_list=RollingGroup(), rec_key_func=rec_key)()  # doctest: +SKIP
    >>> preds["pred"][("LGBModel",)]  # one prediction frame over all rolling windows  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError, LoadObjectError
from qlib_prefect.model.base import Serializable

__all__ = ["Collector", "MergeCollector", "RecorderCollector"]

logger = logging.getLogger(__name__)

_STATUSES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")


def _as_list(process_list: Any) -> list:
    if process_list is None:
        return []
    if isinstance(process_list, (list, tuple)):
        return list(process_list)
    return [process_list]


class Collector(Serializable):
    """Collect results (``collect``) and process them (``process_list``); ``collector()`` does both.

    Args:
        process_list: a callable or a list of callables, each ``f(value, *args, **kwargs) -> value``, applied in
            order to every collected value (e.g. ``[RollingGroup(), AverageEnsemble()]``).

    Pickled with cloudpickle by :meth:`to_pickle` (qlib uses dill) so lambdas in ``process_list`` survive.
    """

    pickle_backend = "cloudpickle"

    def __init__(self, *, process_list: Any = None) -> None:
        self.process_list = _as_list(process_list)

    def collect(self) -> dict:
        """``{key: value}`` (e.g. ``{"pred": {rec_key: pd.DataFrame}}``)."""
        raise NotImplementedError("Please implement the `collect` method.")

    @staticmethod
    def process_collect(collected_dict: dict, process_list: Any = None, *args: Any, **kwargs: Any) -> dict:
        """Pipe every value of ``collected_dict`` through ``process_list`` (in order)."""
        processes = _as_list(process_list)
        for process in processes:
            if not callable(process):
                raise NotImplementedError(f"{type(process)} is not supported in `process_collect`.")
        result = {}
        for key, value in collected_dict.items():
            for process in processes:
                value = process(value, *args, **kwargs)
            result[key] = value
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        return self.process_collect(self.collect(), self.process_list, *args, **kwargs)

    def to_pickle(self, path: str | Path, **kwargs: Any) -> None:
        """Pickle with cloudpickle (functions and lambdas by value) atomically; :meth:`load` reads it back."""
        import cloudpickle

        self.config(**kwargs)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            cloudpickle.dump(self, f, protocol=pickle.DEFAULT_PROTOCOL)
        tmp.replace(path)


class MergeCollector(Collector):
    """Run several collectors and merge their results.

    Args:
        collector_dict: ``{collector_key: Collector}``; each one is called (so its own ``process_list`` runs).
        process_list: processing of the merged dict's values.
        merge_func: ``f(collector_key, key) -> new key``; default: the tuple ``(collector_key, key)``.
    """

    def __init__(self, collector_dict: Mapping[str, Collector], *, process_list: Any = None,
                 merge_func: Callable[[Any, Any], Any] | None = None) -> None:
        super().__init__(process_list=process_list)
        self.collector_dict = collector_dict
        self.merge_func = merge_func

    def collect(self) -> dict:
        collect_dict: dict[Any, Any] = {}
        for collector_key, collector in self.collector_dict.items():
            for key, value in collector().items():
                new_key = (collector_key, key) if self.merge_func is None else self.merge_func(collector_key, key)
                collect_dict[new_key] = value
        return collect_dict


def _default_rec_key(rec: Any) -> Any:
    return rec.info["id"]


def _norm_status(status: Any) -> frozenset[str] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str) else list(status)
    bad = [s for s in items if s not in _STATUSES]
    if bad:
        raise ConfigError(f"RecorderCollector.status: unknown status {bad} (use a subset of {list(_STATUSES)} "
                          "or None for all)")
    return frozenset(items)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class RecorderCollector(Collector):
    """Collect artifacts of an experiment's recorders: ``{artifact_key: {rec_key: object}}``.

    Args:
        experiment: an experiment name (resolved with ``R.get_exp`` when collecting, created if missing, as in
            qlib), an ``Experiment``, or a callable returning a list of recorders.
        process_list: processing of every ``{rec_key: object}`` dict (e.g. ``RollingGroup()``).
        rec_key_func: ``f(recorder) -> key``; default the run id.
        rec_filter_func: ``f(recorder) -> bool``; runs client-side on every listed recorder.
        artifacts_path: ``{artifact_key: artifact path}``; default ``{"pred": "pred.pkl"}``.
        artifacts_key: the key (or keys) to collect; default all keys of ``artifacts_path``.
            :attr:`ART_KEY_RAW` (``"__raw"``) collects the recorder object itself.
        list_kwargs: extra arguments of ``Experiment.list_recorders`` (``filter_string``, ``tags``, ``params``,
            ``max_results``), evaluated by the tracking store.
        status: statuses to collect (default only ``{"FINISHED"}``; ``None``: all). Evaluated by the store.
    """

    ART_KEY_RAW = "__raw"

    def __init__(
        self,
        experiment: Any,
        *,
        process_list: Any = None,
        rec_key_func: Callable[[Any], Any] | None = None,
        rec_filter_func: Callable[[Any], bool] | None = None,
        artifacts_path: Mapping[str, str] | None = None,
        artifacts_key: str | Iterable[str] | None = None,
        list_kwargs: Mapping[str, Any] | None = None,
        status: Iterable[str] | str | None = frozenset({"FINISHED"}),
    ) -> None:
        super().__init__(process_list=process_list)
        from qlib_prefect.workflow.exp import Experiment

        if not isinstance(experiment, (str, Experiment)) and not callable(experiment):
            raise ConfigError(f"RecorderCollector.experiment: an experiment name, an Experiment or a callable "
                              f"returning recorders, got {type(experiment).__name__}")
        self.experiment = experiment
        self.artifacts_path = dict({"pred": "pred.pkl"} if artifacts_path is None else artifacts_path)
        self.rec_key_func = _default_rec_key if rec_key_func is None else rec_key_func
        self.artifacts_key = list(self.artifacts_path) if artifacts_key is None else artifacts_key
        self.rec_filter_func = rec_filter_func
        self.list_kwargs = dict(list_kwargs or {})
        self.status = _norm_status(status)

    # ------------------------------------------------------------------------------------------ listing
    def get_experiment(self) -> Any:
        """The experiment object (a name is resolved with ``R.get_exp``, which creates it if missing)."""
        if isinstance(self.experiment, str):
            from qlib_prefect.workflow import R

            return R.get_exp(experiment_name=self.experiment)
        return self.experiment

    def get_exp_name(self) -> str:
        return self.experiment if isinstance(self.experiment, str) else self.experiment.name

    def _list_from_experiment(self, exp: Any) -> list[Any]:
        kwargs = dict(self.list_kwargs)
        kwargs.pop("rtype", None)
        statuses = self.status
        asked = kwargs.pop("status", None)
        if asked is not None:  # list_kwargs narrows the status further
            statuses = frozenset({asked}) if statuses is None or asked in statuses else frozenset()
        if statuses is None:
            return list(exp.list_recorders(**kwargs).values())
        if not statuses:
            return []
        if len(statuses) == 1:
            return list(exp.list_recorders(status=next(iter(statuses)), **kwargs).values())
        # MLflow has no IN / OR for the status attribute: exclude the complement instead (one query, store order)
        flt = " and ".join(f"attributes.status != {_quote(s)}" for s in _STATUSES if s not in statuses)
        user = (kwargs.pop("filter_string", "") or "").strip()
        flt = f"{user} and {flt}" if user and flt else (user or flt)
        return list(exp.list_recorders(filter_string=flt, **kwargs).values())

    def list_recorders(self, rec_filter_func: Callable[[Any], bool] | None = None) -> list[Any]:
        """The recorders to collect from, after the status / ``list_kwargs`` query and ``rec_filter_func``."""
        if rec_filter_func is None:
            rec_filter_func = self.rec_filter_func
        t0 = time.perf_counter()
        if isinstance(self.experiment, str) or not callable(self.experiment):
            exp = self.get_experiment()
            recs = self._list_from_experiment(exp)
            logger.info("Time to `list_recorders` in RecorderCollector (%s): %.3fs", exp.name,
                        time.perf_counter() - t0)
        else:
            recs = list(self.experiment())
        # the status re-check is free (already applied by the store) and needed for callables
        recs = [
            rec for rec in recs
            if (self.status is None or rec.status in self.status) and (rec_filter_func is None or rec_filter_func(rec))
        ]
        logger.info("Number of recorders after filter: %s", dict(Counter(r.status for r in recs)))
        return recs

    # ------------------------------------------------------------------------------------------ collecting
    def collect(self, artifacts_key: str | Iterable[str] | None = None,
                rec_filter_func: Callable[[Any], bool] | None = None, only_exist: bool = True) -> dict:
        """``{artifact_key: {rec_key: object}}``.

        Args:
            artifacts_key: override of the default keys.
            rec_filter_func: override of the default filter.
            only_exist: skip (with a warning) a recorder whose artifact cannot be loaded; ``False`` re-raises the
                :class:`~qlib_prefect.errors.LoadObjectError`.

        A repeated ``rec_key`` logs a warning and the later recorder (in listing order: newest first) wins.
        """
        keys = self.artifacts_key if artifacts_key is None else artifacts_key
        keys = [keys] if isinstance(keys, str) else list(keys)
        unknown = [k for k in keys if k != self.ART_KEY_RAW and k not in self.artifacts_path]
        if unknown:
            raise ConfigError(f"RecorderCollector: artifact key(s) {unknown} not in artifacts_path "
                              f"{self.artifacts_path} (or {self.ART_KEY_RAW!r} for the recorder itself)")
        collect_dict: dict[str, dict[Any, Any]] = {}
        for rec in self.list_recorders(rec_filter_func):
            rec_key = self.rec_key_func(rec)
            for key in keys:
                if key == self.ART_KEY_RAW:
                    artifact = rec
                else:
                    try:
                        artifact = rec.load_object(self.artifacts_path[key])
                    except LoadObjectError as e:
                        if only_exist:
                            logger.warning("Fail to load %s of recorder %s and it is ignored (%s)",
                                           self.artifacts_path[key], rec.info["id"], e)
                            continue
                        raise
                cdd = collect_dict.setdefault(key, {})
                if rec_key in cdd:
                    logger.warning("key %r is duplicated. Previous value will be overridden. Please check your "
                                   "`rec_key_func`", rec_key)
                cdd[rec_key] = artifact
        return collect_dict
