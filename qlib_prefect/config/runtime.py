"""Process-wide runtime configuration, qlib's ``C``: the config half of ``qlib.init``.

:func:`configure` records the provider URI, region defaults and the experiment-manager config in ``C``; nothing
else. ``qlib_prefect.init`` (the package root) calls it and then rebuilds ``R`` from ``C["exp_manager"]``
(:func:`qlib_prefect.workflow.rebuild_recorder`). Layers above read ``C`` and :func:`generation`: the data layer's
provider registry (:mod:`qlib_prefect.data.registry`) rebuilds its provider when the generation changes. This
module imports nothing of the package above ``qlib_prefect.errors``.

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

__all__ = [
    "REGION_DEFAULTS",
    "C",
    "configure",
    "generation",
    "is_initialized",
    "mark_initialized",
    "provider_path",
    "reset",
]

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
_state: dict[str, Any] = {"initialized": False, "generation": 0}


def configure(
    provider_uri: str | Path | None = None,
    region: str | None = None,
    exp_manager: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Set ``C`` for the process (qlib's ``qlib.init`` signature); use ``qlib_prefect.init`` to also rebuild ``R``.

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
        _state["generation"] += 1
        _state["initialized"] = True


def generation() -> int:
    """A number that changes with every :func:`configure` / :func:`reset`: state derived from ``C`` (the data
    provider, a memo of the last ``qlib_init``) is stale when the generation it was built for differs."""
    return int(_state["generation"])


def is_initialized() -> bool:
    return bool(_state["initialized"])


def mark_initialized() -> None:
    """Count the process as initialised without changing ``C`` (a provider installed directly, e.g. in tests)."""
    with _lock:
        _state["initialized"] = True


def reset() -> None:
    """Back to the defaults, not initialised (tests)."""
    with _lock:
        C.reset()
        _state["generation"] += 1
        _state["initialized"] = False


def provider_path() -> Path:
    """The resolved provider directory (``~`` expanded)."""
    uri = C["provider_uri"]
    if isinstance(uri, dict):  # qlib allows {freq: uri}
        uri = uri.get(C.get("freq", "day")) or next(iter(uri.values()))
    return Path(str(uri)).expanduser().resolve()

