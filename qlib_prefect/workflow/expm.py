"""qlib's ``ExpManager`` / ``MLflowExpManager`` on MLflow 3.

``MLflowExpManager(uri=None, default_exp_name="Experiment", *, artifact_location=None, async_logging=True)``:

* ``uri=None`` -> ``$QLIB_PREFECT_MLFLOW_URI`` or ``sqlite:///<abs cwd>/mlruns/mlflow.db`` (resolved on first
  use); artifacts of new experiments go to ``<db folder>/artifacts/<experiment>-<id>`` (or ``artifact_location``);
* experiment creation is get-or-create and safe across processes: a racing creator re-reads the experiment
  (``RESOURCE_ALREADY_EXISTS``), SQLite lock errors are retried;
* one active experiment per manager; state changes are serialised by a lock so worker threads may call ``R``.

Example:
    >>> qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
    ...                                "kwargs": {"uri": "sqlite:////tmp/mlruns/mlflow.db"}})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from typing import Any

from qlib_prefect.errors import ExpAlreadyExistError
from qlib_prefect.workflow._store import artifact_root_for, get_client, resolve_uri, retry_locked
from qlib_prefect.workflow.exp import Experiment, MLflowExperiment, search_runs_all
from qlib_prefect.workflow.recorder import Recorder

__all__ = ["ExpManager", "MLflowExpManager"]

logger = logging.getLogger("qlib_prefect.workflow")


class ExpManager:
    """Experiment manager: default/temporary URI, default experiment name, the active experiment."""

    active_experiment: Experiment | None

    def __init__(self, uri: str | None = None, default_exp_name: str | None = "Experiment", *,
                 artifact_location: str | None = None, async_logging: bool = True) -> None:
        self._default_uri_raw = uri
        self._default_uri: str | None = None
        self._active_exp_uri: str | None = None
        self._default_exp_name = default_exp_name or "Experiment"
        self._artifact_location = artifact_location
        self._async = async_logging
        self.active_experiment = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(uri={self._active_exp_uri or self._default_uri or self._default_uri_raw})"

    # ---- uri -------------------------------------------------------------------------------------------------
    @property
    def default_uri(self) -> str:
        if self._default_uri is None:
            self._default_uri = resolve_uri(self._default_uri_raw)
        return self._default_uri

    @default_uri.setter
    def default_uri(self, value: str | None) -> None:
        self._default_uri_raw = value
        self._default_uri = None

    @property
    def uri(self) -> str:
        return self._active_exp_uri or self.default_uri

    # ---- experiments -----------------------------------------------------------------------------------------
    def start_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | None = None,
        resume: bool = False,
        **kwargs: Any,
    ) -> Experiment:
        with self._lock:
            self._active_exp_uri = resolve_uri(uri) if uri else None
            try:
                return self._start_exp(
                    experiment_id=experiment_id, experiment_name=experiment_name, recorder_id=recorder_id,
                    recorder_name=recorder_name, resume=resume, **kwargs,
                )
            except BaseException:
                if self.active_experiment is None:
                    self._active_exp_uri = None
                raise

    def _start_exp(self, **kwargs: Any) -> Experiment:
        raise NotImplementedError

    def end_exp(self, recorder_status: str = Recorder.STATUS_S, **kwargs: Any) -> None:
        with self._lock:
            self._active_exp_uri = None
            self._end_exp(recorder_status=recorder_status, **kwargs)

    def _end_exp(self, recorder_status: str = Recorder.STATUS_S, **kwargs: Any) -> None:
        raise NotImplementedError

    def create_exp(self, experiment_name: str | None = None) -> Experiment:
        raise NotImplementedError

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _get_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> Experiment:
        raise NotImplementedError

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        raise NotImplementedError

    def list_experiments(self) -> dict[str, Experiment]:
        raise NotImplementedError

    def get_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None, create: bool = True,
                start: bool = False) -> Experiment:
        """qlib semantics: active experiment when no id/name; else get (or create); ``start`` activates it."""
        with self._lock:
            if experiment_id is None and experiment_name is None:
                if self.active_experiment is not None:
                    return self.active_experiment
                experiment_name = self._default_exp_name
            if create:
                exp, _ = self._get_or_create_exp(experiment_id=experiment_id, experiment_name=experiment_name)
            else:
                exp = self._get_exp(experiment_id=experiment_id, experiment_name=experiment_name)
            if self.active_experiment is None and start:
                self.active_experiment = exp
                exp.start()
            return exp

    def _get_or_create_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> tuple:
        try:
            return self._get_exp(experiment_id=experiment_id, experiment_name=experiment_name), False
        except ValueError:
            name = experiment_name or self._default_exp_name
            logger.info("No valid experiment found. Create a new experiment with name %s.", name)
            try:
                return self.create_exp(name), True
            except ExpAlreadyExistError:  # another thread/process won the race
                return self._get_exp(experiment_name=name), False


class MLflowExpManager(ExpManager):
    """The MLflow experiment manager (qlib's class path ``qlib.workflow.expm.MLflowExpManager`` maps here)."""

    @property
    def client(self) -> Any:
        """The cached ``MlflowClient`` of the current URI (qlib built a new one on each access)."""
        return get_client(self.uri)

    def _experiment(self, exp_id: str, name: str, config: Any = None) -> MLflowExperiment:
        return MLflowExperiment(exp_id, name, self.uri, async_logging=self._async, config=config)

    def _start_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None,
                   recorder_id: str | None = None, recorder_name: str | None = None, resume: bool = False,
                   config: Any = None) -> Experiment:
        if experiment_name is None and experiment_id is None:
            experiment_name = self._default_exp_name
        experiment, _ = self._get_or_create_exp(experiment_id=experiment_id, experiment_name=experiment_name)
        experiment._config = config
        self.active_experiment = experiment
        try:
            experiment.start(recorder_id=recorder_id, recorder_name=recorder_name, resume=resume)
        except BaseException:
            self.active_experiment = None
            raise
        return experiment

    def _end_exp(self, recorder_status: str = Recorder.STATUS_S, **kwargs: Any) -> None:
        exp, self.active_experiment = self.active_experiment, None
        if exp is not None:
            exp.end(recorder_status)

    def _new_artifact_location(self, name: str) -> str | None:
        root = artifact_root_for(self.uri, self._artifact_location)
        if root is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.")[:60] or "experiment"
        return f"{root.rstrip('/')}/{slug}-{uuid.uuid4().hex[:8]}"

    def create_exp(self, experiment_name: str | None = None) -> MLflowExperiment:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        if experiment_name is None:
            raise ValueError("create_exp: an experiment name is required")
        location = self._new_artifact_location(experiment_name)
        try:
            exp_id = retry_locked(lambda: self.client.create_experiment(experiment_name, artifact_location=location))
        except MlflowException as e:
            if e.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS) or "already exists" in str(e).lower():
                raise ExpAlreadyExistError(f"experiment {experiment_name!r} already exists at {self.uri}") from e
            raise
        return self._experiment(exp_id, experiment_name)

    def _get_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> MLflowExperiment:
        from mlflow.exceptions import MlflowException

        if experiment_id is None and experiment_name is None:
            raise ValueError("Please input at least one of experiment id or name before retrieving experiment.")
        client = self.client
        if experiment_id is not None:
            try:
                exp = retry_locked(lambda: client.get_experiment(str(experiment_id)))
            except MlflowException as e:
                raise ValueError(f"No valid experiment has been found with id {experiment_id!r} at {self.uri}") from e
        else:
            exp = retry_locked(lambda: client.get_experiment_by_name(experiment_name))
        if exp is None or str(exp.lifecycle_stage).upper() == "DELETED":
            what = f"id {experiment_id!r}" if experiment_id is not None else f"name {experiment_name!r}"
            raise ValueError(f"No valid experiment has been found with {what} at {self.uri}")
        return self._experiment(exp.experiment_id, exp.name)

    def search_records(self, experiment_ids: Any = None, **kwargs: Any) -> Any:
        """``client.search_runs`` over all pages (qlib's default ``max_results=100000`` is honoured by paging)."""
        return search_runs_all(
            self.client,
            experiment_ids,
            kwargs.get("filter_string") or "",
            1 if kwargs.get("run_view_type") is None else kwargs["run_view_type"],
            100000 if kwargs.get("max_results") is None else kwargs["max_results"],
            kwargs.get("order_by"),
        )

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        from mlflow.exceptions import MlflowException

        if experiment_id is None and experiment_name is None:
            raise ValueError("Please input a valid experiment id or name before deleting.")
        try:
            if experiment_id is None:
                exp = retry_locked(lambda: self.client.get_experiment_by_name(experiment_name))
                if exp is None:
                    raise MlflowException(f"No experiment named {experiment_name!r}")
                experiment_id = exp.experiment_id
            eid = str(experiment_id)
            retry_locked(lambda: self.client.delete_experiment(eid))
        except MlflowException as e:
            raise ValueError(
                f"Error: {e}. Something went wrong when deleting experiment. Please check if the name/id of the "
                "experiment is correct."
            ) from e

    def list_experiments(self) -> dict[str, MLflowExperiment]:
        """``{name: experiment}`` of all active experiments (paged)."""
        from mlflow.entities import ViewType

        out: dict[str, MLflowExperiment] = {}
        token = None
        while True:
            page = retry_locked(
                lambda t=token: self.client.search_experiments(
                    view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=t
                )
            )
            for exp in page:
                out[exp.name] = self._experiment(exp.experiment_id, exp.name)
            token = page.token
            if not token:
                return out
