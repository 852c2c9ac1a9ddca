"""Process-wide runtime configuration, the equivalent of qlib's ``C`` and ``qlib.init``.

``init()`` records the provider URI, region defaults and the experiment-manager config.
Nothing heavy happens here: the data provider and the experiment manager are built lazily
on first use (``get_provider()``, ``qlib_prefect.workflow.R``).

Example:
    >>> import qlib_prefect
    >>> qlib_prefect.init(provider_uri="~/.qlib/qlib_data/cn_data", region="cn")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError

__all__ = ["REGION_DEFAULTS", "C", "get_provider", "init", "is_initialized", "register_init_hook"]

REGION_CN, REGION_US, REGION_TW = "cn", "us", "tw"

#: Region-dependent trading defaults (qlib/config.py ``_default_region_config``).
REGION_DEFAULTS: dict[str, dict[str, Any]] = {
    REGION_CN: {"trade_unit": 100, "limit_threshold": 0.095, "deal_price": "close"},
    REGION_US: {"trade_unit": 1, "limit_threshold": None, "deal_price": "close"},
    REGION_TW: {"trade_unit": 1000, "limit_threshold": 0.1, "deal_price": "close"},
}

_DEFAULTS: dict[str, Any] = {
    "provider_uri": "~/.qlib/qlib_data/cn_data",
    "region": REGION_CN,
    "exp_manager": None,  # None -> qlib_prefect.workflow decides (SQLite store under ./mlruns)
    "mongo": {"task_url": "mongodb://localhost:27017/", "task_db_name": "default_task_db"},
    "dump_protocol_version": 4,
    "freq": "day",
}


class _Config(dict):
    """A dict with attribute access, like qlib's ``C``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e

    def reset(self) -> None:
        self.clear()
        self.update(copy.deepcopy(_DEFAULTS))
        self.update(copy.deepcopy(REGION_DEFAULTS[REGION_CN]))


C = _Config()
C.reset()
_lock = threading.RLock()
_state: dict[str, Any] = {"initialized": False, "provider": None}
_init_hooks: list[Any] = []


def register_init_hook(fn: Any) -> None:
    """Register ``fn(C)`` to be called at the end of every ``init()`` (used by the workflow layer)."""
    if fn not in _init_hooks:
        _init_hooks.append(fn)


def init(
    provider_uri: str | Path | None = None,
    region: str | None = None,
    exp_manager: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Configure the process (qlib's ``qlib.init`` signature).

    Args:
        provider_uri: qlib-format data directory. ``None`` keeps the default
            (``~/.qlib/qlib_data/cn_data``).
        region: ``cn``, ``us`` or ``tw``; sets trade unit, limit threshold and deal price defaults.
        exp_manager: qlib-style ``{"class", "module_path", "kwargs": {"uri", "default_exp_name"}}``.
        **kwargs: any other qlib config key (unknown keys are kept, as qlib does).
    """
    with _lock:
        C.reset()
        region = (region or REGION_CN).lower()
        if region not in REGION_DEFAULTS:
            raise ConfigError(f"qlib_init.region: unknown region {region!r}; use one of {sorted(REGION_DEFAULTS)}")
        C["region"] = region
        C.update(copy.deepcopy(REGION_DEFAULTS[region]))
        if provider_uri is not None:
            C["provider_uri"] = provider_uri
        if exp_manager is not None:
            C["exp_manager"] = copy.deepcopy(exp_manager)
        kwargs.pop("default_conf", None)
        kwargs.pop("skip_if_reg", None)
        kwargs.pop("clear_mem_cache", None)
        C.update(kwargs)
        from qlib_prefect.data.expression.operators import register_ops  # data layer, lazily (as get_provider)

        register_ops(C.get("custom_ops"))  # qlib's register_all_ops: built-ins + custom_ops
        _state["provider"] = None
        _state["initialized"] = True
        for hook in list(_init_hooks):
            hook(C)


def is_initialized() -> bool:
    return bool(_state["initialized"])


def provider_path() -> Path:
    """The resolved provider directory (``~`` expanded)."""
    uri = C["provider_uri"]
    if isinstance(uri, dict):  # qlib allows {freq: uri}
        uri = uri.get(C.get("freq", "day")) or next(iter(uri.values()))
    return Path(str(uri)).expanduser().resolve()


def get_provider() -> Any:
    """The process-wide data provider for ``C['provider_uri']`` (built on first use)."""
    with _lock:
        if _state["provider"] is None:
            from qlib_prefect.data.provider import LocalProvider

            _state["provider"] = LocalProvider(provider_path())
        return _state["provider"]


def set_provider(provider: Any) -> None:
    """Install a provider object directly (tests, in-memory data)."""
    with _lock:
        _state["provider"] = provider
        _state["initialized"] = True
