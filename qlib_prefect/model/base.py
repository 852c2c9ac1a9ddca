"""Model interfaces (qlib/model/base.py) and qlib's ``Serializable`` pickling rules.

``Serializable`` decides which attributes survive pickling (qlib/utils/serial.py), highest priority first:
names in ``config_attr`` are dropped; in the include list kept; in the exclude list dropped; public names kept;
``_private`` names kept only when ``dump_all``. Models keep their fitted state in public attributes (``LGBModel.model``
holds the booster), so ``pickle.dumps(model)`` -- what ``R.save_objects(**{"params.pkl": model})`` does -- keeps it.

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
import pickle
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["BaseModel", "Model", "ModelFT", "Serializable"]


class Serializable:
    """Pickle only the attributes qlib would keep (see the module docstring)."""

    pickle_backend: ClassVar[str] = "pickle"
    default_dump_all: ClassVar[bool] = False
    config_attr: ClassVar[list[str]] = ["_include", "_exclude"]
    exclude_attr: ClassVar[list[str]] = []
    include_attr: ClassVar[list[str]] = []
    FLAG_KEY: ClassVar[str] = "_qlib_serial_flag"

    @property
    def dump_all(self) -> bool:
        """Whether ``_private`` attributes are pickled too."""
        return bool(getattr(self, "_dump_all", self.default_dump_all))

    def _get_attr_list(self, attr_type: str) -> list[str]:
        if hasattr(self, f"_{attr_type}"):
            res = getattr(self, f"_{attr_type}", [])
        else:
            res = getattr(type(self), f"{attr_type}_attr", [])
        return list(res or [])

    def _is_kept(self, key: str) -> bool:
        if key in self.config_attr:
            return False
        if key in self._get_attr_list("include"):
            return True
        if key in self._get_attr_list("exclude"):
            return False
        return self.dump_all or not key.startswith("_")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if self._is_kept(k)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def config(self, recursive: bool = False, **kwargs: Any) -> None:
        """Set ``dump_all`` / ``exclude`` / ``include`` (optionally on nested Serializable attributes)."""
        for k, v in kwargs.items():
            if k not in {"dump_all", "exclude", "include"}:
                raise KeyError(f"Unknown parameter: {k}")
            setattr(self, f"_{k}", v)
        if recursive:
            self.__dict__[self.FLAG_KEY] = True
            try:
                for obj in list(self.__dict__.values()):
                    if isinstance(obj, Serializable) and self.FLAG_KEY not in obj.__dict__:
                        obj.config(recursive=True, **kwargs)
            finally:
                del self.__dict__[self.FLAG_KEY]

    def to_pickle(self, path: str | Path, **kwargs: Any) -> None:
        """Pickle ``self`` to ``path`` atomically (temp file + rename); kwargs as in :meth:`config`."""
        self.config(**kwargs)
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(self, f, protocol=4)
        tmp.replace(path)

    @classmethod
    def load(cls, filepath: str | Path) -> Any:
        """Unpickle an instance of ``cls`` from ``filepath`` (TypeError if it is something else)."""
        with Path(filepath).open("rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, cls):
            raise TypeError(f"{filepath}: the pickled {type(obj).__name__} is not a {cls.__name__}")
        return obj


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
