"""qlib-compatible helpers: ``init_instance_by_config``, ``flatten_dict``.

Example:
    >>> from qlib_prefect.utils import flatten_dict
    >>> flatten_dict({"a": {"b": 1}, "c": [1, 2]})
    {'a.b': 1, 'c': [1, 2]}
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from qlib_prefect.config.classpath import resolve_class
from qlib_prefect.errors import ConfigError

__all__ = ["flatten_dict", "get_callable_kwargs", "init_instance_by_config"]


def get_callable_kwargs(config: Any, default_module: str | None = None, *, where: str = "config") -> tuple[Any, dict]:
    """Split a qlib class config into ``(class, kwargs)``.

    Accepts ``{"class": ..., "module_path": ..., "kwargs": {...}}``, ``"module.Class"`` / ``"Class"`` strings,
    or a class object.
    """
    if isinstance(config, Mapping):
        if "class" not in config:
            raise ConfigError(f"{where}: a class config needs a 'class' key (got keys {sorted(config)})")
        unknown = set(config) - {"class", "module_path", "kwargs", "model_path"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: class, module_path, kwargs")
        cls_spec = config["class"]
        kwargs = dict(config.get("kwargs") or {})
        if isinstance(cls_spec, type):
            return cls_spec, kwargs
        module_path = config.get("module_path", default_module)
        if "module_path" not in config and isinstance(cls_spec, str) and "." in cls_spec:  # "qlib.x.y.Class"
            module_path, _, cls_spec = cls_spec.rpartition(".")
        if isinstance(module_path, str) or module_path is None:
            return resolve_class(str(cls_spec), module_path, where=f"{where}.class"), kwargs
        return getattr(module_path, cls_spec), kwargs  # a module object
    if isinstance(config, str):
        if "." in config:
            mod, _, name = config.rpartition(".")
            return resolve_class(name, mod, where=where), {}
        return resolve_class(config, default_module, where=where), {}
    if isinstance(config, type):
        return config, {}
    raise ConfigError(f"{where}: cannot build an instance from {type(config).__name__}")


def init_instance_by_config(
    config: Any,
    default_module: str | None = None,
    accept_types: type | tuple[type, ...] = (),
    try_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Build an object from a qlib-style config (qlib's ``init_instance_by_config``).

    ``config`` may already be an instance of ``accept_types`` (returned as is). ``try_kwargs``
    are passed first and dropped if the constructor rejects them with a ``TypeError``.
    A qlib ``module_path`` such as ``qlib.contrib.data.handler`` resolves to our class of the same name.
    """
    if accept_types and isinstance(config, accept_types):
        return config
    if isinstance(config, str) and config.startswith("file://"):
        import pickle
        from pathlib import Path

        with Path(config[len("file://"):]).open("rb") as f:
            return pickle.load(f)
    where = kwargs.pop("_where", "config")
    cls, cls_kwargs = get_callable_kwargs(config, default_module, where=where)
    if isinstance(default_module, str) and default_module.startswith("qlib_prefect"):
        importlib.import_module(default_module)
    try_kwargs = try_kwargs or {}
    if try_kwargs:
        try:
            return cls(**cls_kwargs, **try_kwargs, **kwargs)
        except TypeError:
            pass
    return cls(**cls_kwargs, **kwargs)


def flatten_dict(d: Mapping[str, Any], parent_key: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten nested mappings with dotted keys; lists stay values (qlib's ``flatten_dict``)."""
    items: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{parent_key}{sep}{k}" if parent_key else str(k)
        if isinstance(v, Mapping):
            items.update(flatten_dict(v, key, sep=sep))
        else:
            items[key] = v
    return items
