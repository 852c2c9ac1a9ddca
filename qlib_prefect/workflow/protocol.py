"""The recorder seam: what models, record templates and trainers need from a recorder.

:class:`RecorderProtocol` is met by the MLflow recorder (:class:`~qlib_prefect.workflow.recorder.MLflowRecorder`),
the content-store recorder of the cached stages (``qlib_prefect.orchestration``'s ``StoreRecorder``) and ``R``
(:class:`~qlib_prefect.workflow.QlibRecorder`, which forwards to the active run). qlib has no such type (its
records take any ``Recorder`` subclass); qlib's ``Recorder`` base class is kept as
:class:`qlib_prefect.workflow.recorder.Recorder`. Models need only ``log_metrics``
(:class:`qlib_prefect.model.base.MetricsLogger`, which this protocol extends).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from qlib_prefect.model.base import MetricsLogger

__all__ = ["RecorderProtocol"]


@runtime_checkable
class RecorderProtocol(MetricsLogger, Protocol):
    """Save and load artifacts, log params/metrics/tags of one run (qlib's ``Recorder`` methods that records use)."""

    def save_objects(self, local_path: Any = None, artifact_path: str | None = None, **kwargs: Any) -> None:
        """Pickle ``name=obj`` pairs (or copy the file/directory ``local_path``) under ``artifact_path``."""

    def load_object(self, name: str) -> Any:
        """Unpickle the artifact ``name`` (``LoadObjectError`` when it is missing)."""

    def log_artifact(self, local_path: Any, artifact_path: str | None = None) -> None:
        """Copy one local file under ``artifact_path``."""

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        """Artifact paths directly under ``artifact_path`` (the whole run when None)."""

    def log_params(self, **kwargs: Any) -> None:
        """Log run parameters (stringified)."""

    def set_tags(self, **kwargs: Any) -> None:
        """Set run tags (stringified)."""
