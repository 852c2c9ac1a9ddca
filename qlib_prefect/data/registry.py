"""The process-wide data provider (qlib's ``D`` backend, set up by ``qlib.init(provider_uri=...)``).

The data layer owns it: :func:`get_provider` builds a :class:`~qlib_prefect.data.provider.LocalProvider` for
``C["provider_uri"]`` on first use and again after every ``init()`` (the config generation changed, see
:func:`qlib_prefect.config.runtime.generation`); :func:`set_provider` installs any
:class:`~qlib_prefect.data.base.Provider` directly (tests, in-memory data) until the next ``init()``.
Config only records the URI; it never imports this module.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from qlib_prefect.config import runtime

if TYPE_CHECKING:
    from qlib_prefect.data.base import Provider

__all__ = ["get_provider", "set_provider"]

_lock = threading.RLock()
#: the provider and the config generation it belongs to.
_current: dict[str, Any] = {"provider": None, "generation": None}


def get_provider() -> Provider:
    """The process-wide data provider for ``C['provider_uri']`` (built on first use and after each ``init()``)."""
    with _lock:
        gen = runtime.generation()
        if _current["provider"] is None or _current["generation"] != gen:
            from qlib_prefect.data.provider import LocalProvider

            _current.update(provider=LocalProvider(runtime.provider_path()), generation=gen)
        return _current["provider"]


def set_provider(provider: Provider | None) -> None:
    """Install a provider object directly (tests, in-memory data); ``None`` -> rebuilt from ``C`` on next use.

    Counts the process as initialised (like qlib after ``qlib.init``); the next ``init()`` replaces it.
    """
    with _lock:
        _current.update(provider=provider, generation=runtime.generation())
        runtime.mark_initialized()
