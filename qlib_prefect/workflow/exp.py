"""qlib's ``Experiment`` / ``MLflowExperiment`` on MLflow 3.

``list_recorders`` pushes every filter (``status``, ``tags``, ``params``, ``filter_string``) into MLflow's
``search_runs`` (an indexed SQL query on a database store) instead of filtering in Python, and pages through
results, so there is no 50,000-run cap.

Example:
    >>> exp = R.get_exp(experiment_name="demo")  # doctest: +SKIP
    >>> exp.list_recorders(status="FINISHED", tags={"model": "lgb"})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Literal

from qlib_prefect.workflow._store import get_client, retry_locked
from qlib_prefect.workflow.recorder import MLflowRecorder, Recorder

__all__ = ["Experiment", "MLflowExperiment", "build_filter", "lean_list", "search_runs_all"]

logger = logging.getLogger("qlib_prefect.workflow")

_PAGE = 50000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD


def _quote(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _key(key: str) -> str:
    return '"' + str(key).replace('"', '\\"') + '"'


def build_filter(
    filter_string: str | None = "",
    *,
    status: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> str:
    """Combine a raw MLflow filter string with equality filters on status, run name, tags and params.

    >>> build_filter(status="FINISHED", tags={"a.b": "x"})
    'attributes.status = \\'FINISHED\\' and tags."a.b" = \\'x\\''
    """
    parts = [filter_string.strip()] if filter_string and filter_string.strip() else []
    if status is not None:
        parts.append(f"attributes.status = {_quote(status)}")
    if name is not None:
        parts.append(f"attributes.run_name = {_quote(name)}")
    for k, v in (tags or {}).items():
        parts.append(f"tags.{_key(k)} = {_quote(v)}")
    for k, v in (params or {}).items():
        parts.append(f"params.{_key(k)} = {_quote(v)}")
    return " and ".join(parts)


def search_runs_all(
    client: Any,
    experiment_ids: Any,
    filter_string: str = "",
    run_view_type: int = 1,
    max_results: int | None = None,
    order_by: list[str] | None = None,
) -> list[Any]:
    """``client.search_runs`` through every page, up to ``max_results`` runs (``None`` = all)."""
    from mlflow.store.entities.paged_list import PagedList

    if isinstance(experiment_ids, (str, int)):
        experiment_ids = [str(experiment_ids)]
    runs: list[Any] = []
    token = None
    while True:
        want = _PAGE if max_results is None else min(_PAGE, max_results - len(runs))
        if want <= 0:
            break
        page = retry_locked(
            lambda w=want, t=token: client.search_runs(
                experiment_ids, filter_string or "", run_view_type, w, order_by, page_token=t
            )
        )
        runs.extend(page)
        token = page.token
        if not token or len(page) == 0:
            break
    return PagedList(runs, None)


def lean_list(
    client: Any,
    experiment_id: str,
    *,
    status: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    max_results: int | None = None,
) -> list[Any] | None:
    """Run infos (no params/metrics/tags) of active runs straight from a SQL tracking store, newest first.

    Listing recorders needs only id, name, status, times and artifact URI; MLflow's ``search_runs`` also loads
    every param, metric and tag of every match. Equality filters become indexed ``EXISTS`` sub-queries.
    Returns ``None`` (caller falls back to ``search_runs``) for non-SQL stores or if MLflow's schema moved.
    """
    try:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlParam, SqlRun, SqlTag

        from qlib_prefect.tweaks.mlflow_store import sql_store

        store = sql_store(client)
        if store is None:
            return None
        cols = (SqlRun.run_uuid, SqlRun.name, SqlRun.experiment_id, SqlRun.status, SqlRun.start_time,
                SqlRun.end_time, SqlRun.artifact_uri)

        def query() -> list[Any]:
            with store.ManagedSessionMaker() as session:
                q = session.query(*cols).filter(
                    SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active"
                )
                if status is not None:
                    q = q.filter(SqlRun.status == str(status))
                if name is not None:
                    q = q.filter(SqlRun.name == str(name))
                for model, items in ((SqlTag, tags), (SqlParam, params)):
                    for k, v in (items or {}).items():
                        q = q.filter(
                            sa.exists().where(
                                model.run_uuid == SqlRun.run_uuid, model.key == str(k), model.value == str(v)
                            )
                        )
                q = q.order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)
                if max_results is not None:
                    q = q.limit(int(max_results))
                return [tuple(r) for r in q.all()]

        rows = retry_locked(query)
    except Exception as e:  # internal API drift: use the public search instead
        logger.debug("lean run listing unavailable (%s); using search_runs", e)
        return None
    return [
        SimpleNamespace(
            info=SimpleNamespace(run_id=r[0], run_name=r[1], experiment_id=str(r[2]), status=r[3], start_time=r[4],
                                 end_time=r[5], artifact_uri=r[6], lifecycle_stage="active"),
            data=SimpleNamespace(tags={"mlflow.runName": r[1]}),
        )
        for r in rows
    ]


class Experiment:
    """Base experiment: id, name, at most one active recorder."""

    RT_D = "dict"
    RT_L = "list"

    def __init__(self, id: str | None, name: str | None) -> None:
        self.id = id
        self.name = name
        self.active_recorder: Recorder | None = None
        self._default_rec_name = "abstract_recorder"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, name={self.name})"

    def __str__(self) -> str:
        return str(self.info)

    @property
    def info(self) -> dict[str, Any]:
        recorders = self.list_recorders()
        return {
            "class": "Experiment",
            "id": self.id,
            "name": self.name,
            "active_recorder": self.active_recorder.id if self.active_recorder is not None else None,
            "recorders": list(recorders.keys()),
        }

    def start(self, *, recorder_id: str | None = None, recorder_name: str | None = None, resume: bool = False) -> Any:
        raise NotImplementedError

    def end(self, recorder_status: str = Recorder.STATUS_S) -> None:
        raise NotImplementedError

    def create_recorder(self, recorder_name: str | None = None) -> Recorder:
        raise NotImplementedError

    def _get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> Recorder:
        raise NotImplementedError

    def list_recorders(self, rtype: Literal["dict", "list"] = RT_D, **flt_kwargs: Any) -> Any:
        raise NotImplementedError

    def get_recorder(
        self, recorder_id: str | None = None, recorder_name: str | None = None, create: bool = True,
        start: bool = False,
    ) -> Recorder:
        """qlib semantics: active recorder if no id/name; else get (or create, and start only if new)."""
        if recorder_id is None and recorder_name is None:
            if self.active_recorder is not None:
                return self.active_recorder
            recorder_name = self._default_rec_name
        if create:
            recorder, is_new = self._get_or_create_rec(recorder_id=recorder_id, recorder_name=recorder_name)
        else:
            recorder, is_new = self._get_recorder(recorder_id=recorder_id, recorder_name=recorder_name), False
        if is_new and start:
            self.active_recorder = recorder
            recorder.start_run()
        return recorder

    def _get_or_create_rec(self, recorder_id: str | None = None, recorder_name: str | None = None) -> tuple:
        if recorder_id is None and recorder_name is None:
            recorder_name = self._default_rec_name
        try:
            return self._get_recorder(recorder_id=recorder_id, recorder_name=recorder_name), False
        except ValueError:
            name = recorder_name or self._default_rec_name
            logger.info("No valid recorder found. Create a new recorder with name %s.", name)
            return self.create_recorder(name), True


class MLflowExperiment(Experiment):
    """An MLflow experiment (qlib's ``MLflowExperiment(id, name, uri)``)."""

    UNLIMITED = None  # no cap: results are paged

    def __init__(self, id: str | None, name: str | None, uri: str, *, async_logging: bool = True,
                 config: Any = None) -> None:
        super().__init__(id, name)
        self._uri = uri
        self._default_rec_name = "mlflow_recorder"
        self._async = async_logging
        self._config = config

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def _client(self) -> Any:
        return get_client(self._uri)

    def start(self, *, recorder_id: str | None = None, recorder_name: str | None = None,
              resume: bool = False) -> MLflowRecorder:
        """Start a new recorder (``resume=False`` always creates a new run, as qlib), or resume by id/name."""
        logger.info("Experiment %s starts running ...", self.id)
        if recorder_name is None:
            recorder_name = self._default_rec_name
        if resume:
            recorder, _ = self._get_or_create_rec(recorder_id=recorder_id, recorder_name=recorder_name)
        else:
            recorder = self.create_recorder(recorder_name)
        self.active_recorder = recorder
        recorder.start_run()
        return recorder

    def end(self, recorder_status: str = Recorder.STATUS_S) -> None:
        rec, self.active_recorder = self.active_recorder, None
        if rec is not None:
            rec.end_run(recorder_status)

    def create_recorder(self, recorder_name: str | None = None) -> MLflowRecorder:
        """A recorder object; the MLflow run is created by ``start_run``."""
        return MLflowRecorder(
            self.id, self._uri, recorder_name or self._default_rec_name, async_logging=self._async,
            config=self._config,
        )

    def _wrap(self, run: Any) -> MLflowRecorder:
        return MLflowRecorder(self.id, self._uri, mlflow_run=run, async_logging=self._async)

    def _get_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> MLflowRecorder:
        from mlflow.exceptions import MlflowException

        if recorder_id is None and recorder_name is None:
            raise ValueError("Please input at least one of recorder id or name before retrieving recorder.")
        if recorder_id is not None:
            try:
                run = retry_locked(lambda: self._client.get_run(recorder_id))
            except MlflowException as e:
                raise ValueError(
                    f"No valid recorder has been found for id {recorder_id!r} in experiment {self.name!r}"
                ) from e
            if run.info.lifecycle_stage == "deleted":
                raise ValueError(f"Recorder {recorder_id!r} was deleted")
            return self._wrap(run)
        runs = lean_list(self._client, self.id, name=recorder_name, max_results=1)
        if runs is None:
            runs = search_runs_all(
                self._client, [self.id], build_filter(name=recorder_name), 1, 1, ["attributes.start_time DESC"]
            )
        if not runs:
            raise ValueError(
                f"No valid recorder has been found with name {recorder_name!r} in experiment {self.name!r}"
            )
        return self._wrap(runs[0])

    def search_records(self, **kwargs: Any) -> Any:
        """qlib's ``search_records`` for this experiment: a list of MLflow ``Run`` objects."""
        return search_runs_all(
            self._client,
            [self.id],
            kwargs.get("filter_string") or "",
            1 if kwargs.get("run_view_type") is None else kwargs["run_view_type"],
            kwargs.get("max_results"),
            kwargs.get("order_by"),
        )

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        from mlflow.exceptions import MlflowException

        if recorder_id is None and recorder_name is None:
            raise ValueError("Please input a valid recorder id or name before deleting.")
        try:
            if recorder_id is None:
                recorder_id = self._get_recorder(recorder_name=recorder_name).id
            rid = recorder_id
            retry_locked(lambda: self._client.delete_run(rid))
        except MlflowException as e:
            raise ValueError(
                f"Error: {e}. Something went wrong when deleting recorder. Please check if the name/id of the "
                "recorder is correct."
            ) from e

    def list_recorders(
        self,
        rtype: Literal["dict", "list"] = Experiment.RT_D,
        max_results: int | None = UNLIMITED,
        status: str | None = None,
        filter_string: str = "",
        *,
        tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        order_by: list[str] | None = None,
    ) -> dict[str, MLflowRecorder] | list[MLflowRecorder]:
        """Active runs of this experiment (newest first), filtered by MLflow itself.

        Args:
            rtype: ``"dict"`` (``{run_id: recorder}``) or ``"list"``.
            max_results: cap (``None``: all runs, paged).
            status: e.g. ``"FINISHED"`` (pushed into the query, qlib filtered in Python).
            filter_string: MLflow search syntax, e.g. ``params."x" = 'a' and tags."y" = 'b'``.
            tags / params: equality filters, combined with ``and``.
        """
        if rtype not in (Experiment.RT_D, Experiment.RT_L):
            raise NotImplementedError("This type of input is not supported")
        runs = None
        if not (filter_string or "").strip() and not order_by:
            runs = lean_list(self._client, self.id, status=status, tags=tags, params=params, max_results=max_results)
        if runs is None:
            flt = build_filter(filter_string, status=status, tags=tags, params=params)
            runs = search_runs_all(self._client, [self.id], flt, 1, max_results, order_by)
        recorders = [self._wrap(r) for r in runs]
        if rtype == Experiment.RT_D:
            return {r.id: r for r in recorders}
        return recorders
