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
from typing import Any

from qlib_prefect.utils.serial import Serializable

__all__ = ["BaseModel", "Model", "ModelFT", "Serializable"]


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
