"""Model interfaces (qlib/model/base.py).

Models are :class:`~qlib_prefect.utils.serial.Serializable` (qlib's pickling rules) and keep their fitted state in
public attributes (``LGBModel.model`` holds the booster), so ``pickle.dumps(model)`` -- what
``R.save_objects(**{"params.pkl": model})`` does -- keeps it.

Example:
    >>> class Const(Model):
    ...     def fit(self, dataset, reweighter=None):
    ...         self.value = 1.0
    ...     def predict(self, dataset, segment="test"):
    ...         return self.value
    >>> m = Const(); m.fit(None); m(None)
    1.0
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from qlib_prefect.utils.serial import Serializable

__all__ = [
    "BaseModel",
    "MetricsLogger",
    "Model",
    "ModelFT",
    "Serializable",
    "active_metrics_logger",
    "set_metrics_logger_source",
]


@runtime_checkable
class MetricsLogger(Protocol):
    """Where a model logs training metrics (a recorder: ``R``'s, an MLflow or a content-store recorder)."""

    def log_metrics(self, step: int | None = None, **metrics: Any) -> None: ...


_metrics_source: dict[str, Callable[[], MetricsLogger | None] | None] = {"source": None}
_metrics_lock = threading.Lock()


def set_metrics_logger_source(source: Callable[[], MetricsLogger | None] | None) -> None:
    """Install ``source() -> logger | None``: where :func:`active_metrics_logger` finds the active run's recorder.

    qlib's models log to ``R``; the model layer cannot import the workflow layer, so the workflow layer installs
    ``R.active_recorder`` when it builds ``R`` (before that no run can be active). ``None`` uninstalls.
    """
    with _metrics_lock:
        _metrics_source["source"] = source


def active_metrics_logger() -> MetricsLogger | None:
    """The recorder of the active run (see :func:`set_metrics_logger_source`), or None."""
    source = _metrics_source["source"]
    return source() if source is not None else None


class BaseModel(Serializable, metaclass=abc.ABCMeta):
    """Anything that predicts; calling the model predicts."""

    @abc.abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Make predictions."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.predict(*args, **kwargs)


class Model(BaseModel):
    """A learnable model: ``fit(dataset)`` then ``predict(dataset, segment="test")``.

    Fitted state must live in public attributes so that it survives pickling.
    """

    def fit(self, dataset: Any, reweighter: Any = None) -> Any:
        """Learn from ``dataset`` (a ``DatasetH``)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement fit()")

    @abc.abstractmethod
    def predict(self, dataset: Any, segment: str | slice = "test") -> Any:
        """Predict the ``segment`` of ``dataset``."""


class ModelFT(Model):
    """A model that can be fine-tuned from its fitted state."""

    @abc.abstractmethod
    def finetune(self, dataset: Any) -> None:
        """Continue training on ``dataset``."""
