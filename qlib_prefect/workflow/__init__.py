"""Experiment recording: ``R`` and qlib's ExpManager / Experiment / Recorder classes on MLflow 3.

``from qlib_prefect.workflow import R`` behaves like ``from qlib.workflow import R``. One difference: ``R`` works
before any ``qlib_prefect.init()`` (qlib raised "Please run qlib.init() first") - it then uses
``$QLIB_PREFECT_MLFLOW_URI`` or a SQLite store at ``./mlruns/mlflow.db`` with artifacts in ``./mlruns/artifacts``.
``qlib_prefect.init(exp_manager={...})`` rebuilds it from qlib-style config (qlib's class paths are accepted).

Importing this package does not import MLflow; that happens on the first call that needs it.

Example:
    >>> from qlib_prefect.workflow import R  # doctest: +SKIP
    >>> with R.start(experiment_name="demo"):  # doctest: +SKIP
    ...     R.log_params(lr=0.1)
    ...     R.log_metrics(step=0, loss=0.5)
    ...     rec = R.get_recorder()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from qlib_prefect.errors import RecorderError

if TYPE_CHECKING:
    from qlib_prefect.workflow.exp import Experiment
    from qlib_prefect.workflow.expm import ExpManager
    from qlib_prefect.workflow.recorder import Recorder

__all__ = [
    "ExpManager",
    "Experiment",
    "MLflowExpManager",
    "MLflowExperiment",
    "MLflowRecorder",
    "QlibRecorder",
    "R",
    "Recorder",
    "RecorderProtocol",
    "RecorderWrapper",
    "build_exp_manager",
    "rebuild_recorder",
]

_LAZY = {
    "ExpManager": "qlib_prefect.workflow.expm",
    "MLflowExpManager": "qlib_prefect.workflow.expm",
    "Experiment": "qlib_prefect.workflow.exp",
    "MLflowExperiment": "qlib_prefect.workflow.exp",
    "Recorder": "qlib_prefect.workflow.recorder",
    "RecorderProtocol": "qlib_prefect.workflow.protocol",
    "MLflowRecorder": "qlib_prefect.workflow.recorder",
}

_FI, _FA, _S = "FINISHED", "FAILED", "SCHEDULED"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class QlibRecorder:
    """qlib's ``QlibRecorder``: every method forwards to the experiment manager with qlib's defaults."""

    def __init__(self, exp_manager: ExpManager) -> None:
        self.exp_manager = exp_manager

    def __repr__(self) -> str:
        return f"{type(self).__name__}(manager={self.exp_manager})"

    @contextmanager
    def start(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | None = None,
        resume: bool = False,
        config: Any = None,
    ) -> Iterator[Experiment]:
        """Start an experiment + recorder; yields the Experiment. Ends FINISHED, or FAILED and re-raises on an
        ``Exception``. ``config`` (optional, not in qlib) is hashed into the run's ``qlib_prefect.config_hash`` tag."""
        run = self.start_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, recorder_id=recorder_id,
            recorder_name=recorder_name, uri=uri, resume=resume, config=config,
        )
        try:
            yield run
        except Exception:
            self.end_exp(_FA)
            raise
        self.end_exp(_FI)

    def start_exp(
        self,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        recorder_id: str | None = None,
        recorder_name: str | None = None,
        uri: str | None = None,
        resume: bool = False,
        config: Any = None,
    ) -> Experiment:
        """Get-or-create the experiment, make it active and start (or resume) a recorder in it."""
        if self.exp_manager.active_experiment is not None:
            active = self.exp_manager.active_experiment
            raise RecorderError(
                f"start_exp: experiment {active.name!r} is already active in this process (run "
                f"{getattr(active.active_recorder, 'id', None)}); end it with R.end_exp() before starting another"
            )
        return self.exp_manager.start_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, recorder_id=recorder_id,
            recorder_name=recorder_name, uri=uri, resume=resume, config=config,
        )

    def end_exp(self, recorder_status: str = _FI) -> None:
        self.exp_manager.end_exp(recorder_status)

    def search_records(self, experiment_ids: Any, **kwargs: Any) -> Any:
        return self.exp_manager.search_records(experiment_ids, **kwargs)

    def list_experiments(self) -> dict[str, Experiment]:
        return self.exp_manager.list_experiments()

    def list_recorders(self, experiment_id: str | None = None, experiment_name: str | None = None,
                       **filters: Any) -> dict[str, Recorder]:
        """``{run_id: recorder}``; extra ``filters`` (status, tags, params, filter_string) go to MLflow's search."""
        return self.get_exp(experiment_id=experiment_id, experiment_name=experiment_name).list_recorders(**filters)

    def get_exp(self, *, experiment_id: str | None = None, experiment_name: str | None = None, create: bool = True,
                start: bool = False) -> Experiment:
        return self.exp_manager.get_exp(
            experiment_id=experiment_id, experiment_name=experiment_name, create=create, start=start
        )

    def delete_exp(self, experiment_id: str | None = None, experiment_name: str | None = None) -> None:
        self.exp_manager.delete_exp(experiment_id, experiment_name)

    def get_uri(self) -> str:
        return self.exp_manager.uri

    def set_uri(self, uri: str | None) -> None:
        """Set the default tracking URI (``None``: back to the env var / ``./mlruns`` default)."""
        self.exp_manager.default_uri = uri

    @contextmanager
    def uri_context(self, uri: str) -> Iterator[None]:
        prev = self.exp_manager._default_uri_raw
        self.exp_manager.default_uri = uri
        try:
            yield
        finally:
            self.exp_manager.default_uri = prev

    def get_recorder(self, *, recorder_id: str | None = None, recorder_name: str | None = None,
                     experiment_id: str | None = None, experiment_name: str | None = None) -> Recorder:
        return self.get_exp(experiment_name=experiment_name, experiment_id=experiment_id, create=False).get_recorder(
            recorder_id, recorder_name, create=False, start=False
        )

    def delete_recorder(self, recorder_id: str | None = None, recorder_name: str | None = None) -> None:
        self.get_exp().delete_recorder(recorder_id, recorder_name)

    def save_objects(self, local_path: str | None = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        if local_path is not None and kwargs:
            raise ValueError(
                "You can choose only one of `local_path`(save the files in a path) or `kwargs`(pass in the objects "
                "directly)"
            )
        self.get_exp().get_recorder(start=True).save_objects(local_path, artifact_path, **kwargs)

    def load_object(self, name: str) -> Any:
        return self.get_exp().get_recorder(start=True).load_object(name)

    def log_params(self, **kwargs: Any) -> None:
        self.get_exp(start=True).get_recorder(start=True).log_params(**kwargs)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        self.get_exp(start=True).get_recorder(start=True).log_metrics(step, **kwargs)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self.get_exp(start=True).get_recorder(start=True).log_artifact(local_path, artifact_path)

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        """Artifacts of the active run (not in qlib's ``R``; makes ``R`` a full
        :class:`~qlib_prefect.workflow.protocol.RecorderProtocol`)."""
        return self.get_exp(start=True).get_recorder(start=True).list_artifacts(artifact_path)

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        """Returns the local path (qlib's wrapper dropped it)."""
        return self.get_exp(start=True).get_recorder(start=True).download_artifact(path, dst_path)

    def set_tags(self, **kwargs: Any) -> None:
        self.get_exp(start=True).get_recorder(start=True).set_tags(**kwargs)


def build_exp_manager(config: Any = None) -> ExpManager:
    """Build a manager from qlib's ``exp_manager`` config (``None`` -> default MLflowExpManager)."""
    from qlib_prefect.workflow.expm import ExpManager, MLflowExpManager

    if config is None:
        return MLflowExpManager(uri=None, default_exp_name="Experiment")
    if isinstance(config, ExpManager):
        return config
    from qlib_prefect.utils import init_instance_by_config

    cfg = dict(config)
    cfg.setdefault("class", "MLflowExpManager")
    cfg.setdefault("module_path", "qlib_prefect.workflow.expm")
    return init_instance_by_config(cfg, accept_types=ExpManager)


class RecorderWrapper:
    """The global ``R``: forwards attributes to a :class:`QlibRecorder` built on first use."""

    def __init__(self) -> None:
        object.__setattr__(self, "_provider", None)
        object.__setattr__(self, "_lock", threading.RLock())

    def is_built(self) -> bool:
        return self._provider is not None

    def register(self, provider: QlibRecorder) -> None:
        """Install a recorder; refused while an experiment is active (qlib's RecorderInitializationError)."""
        with self._lock:
            old = self._provider
            if old is not None and old.exp_manager.active_experiment is not None:
                raise RecorderError(
                    "Please don't reinitialize qlib_prefect while an experiment is active (R.end_exp() first); "
                    "otherwise the experiment's storage location would change under it."
                )
            object.__setattr__(self, "_provider", provider)
        from qlib_prefect.model.base import set_metrics_logger_source
        from qlib_prefect.workflow.exit_handler import experiment_exit_handler

        set_metrics_logger_source(self.active_recorder)  # models log their training metrics to R's active run
        experiment_exit_handler(self)

    def active_recorder(self) -> Recorder | None:
        """The recorder of the active run, or None (never builds ``R`` just to look)."""
        prov = self._provider
        if prov is None:
            return None
        try:
            exp = prov.exp_manager.active_experiment
            return exp.active_recorder if exp is not None else None
        except Exception:  # R not usable -> no active run
            return None

    def _get(self) -> QlibRecorder:
        prov = self._provider
        if prov is None:
            with self._lock:
                if self._provider is None:
                    from qlib_prefect.config.runtime import C

                    self.register(QlibRecorder(build_exp_manager(C.get("exp_manager"))))
                prov = self._provider
        return prov

    def reset(self) -> None:
        """Forget the recorder (it is rebuilt from the current config on next use); ends nothing."""
        with self._lock:
            object.__setattr__(self, "_provider", None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return f"RecorderWrapper({self._provider!r})"


R = RecorderWrapper()


def rebuild_recorder(exp_manager: Any = None) -> None:
    """Rebuild ``R`` from qlib's ``exp_manager`` config (``None`` -> the default store); ``qlib_prefect.init``
    calls it after configuring ``C``, as ``qlib.init`` does. An explicit tracking URI is checked now (no side
    effects: e.g. ``file:`` fails here, with advice); refused while an experiment is active."""
    manager = build_exp_manager(exp_manager)
    raw = getattr(manager, "_default_uri_raw", None)
    if raw:
        from qlib_prefect.workflow._store import resolve_uri

        resolve_uri(raw, create=False)
    R.register(QlibRecorder(manager))
