"""What keyword arguments a class constructor accepts, for checking a config's ``kwargs`` before a run.

qlib itself checks nothing: a misspelled kwarg fails (or is silently ignored) deep inside the run. Here a class's
``**kwargs`` is followed up its MRO, and a registered pass-through (LGBModel -> LightGBM) adds that library's
parameter names and aliases.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["SignatureInfo", "lightgbm_param_names", "signature_info"]


@functools.lru_cache(maxsize=1)
def _bundled_lightgbm_names() -> frozenset[str]:
    """The LightGBM 4.7 parameter names and aliases shipped with the package (no lightgbm import)."""
    from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

    return frozenset(LIGHTGBM_PARAM_ALIASES) | {a for v in LIGHTGBM_PARAM_ALIASES.values() for a in v}


@functools.lru_cache(maxsize=1)
def lightgbm_param_names() -> frozenset[str]:
    """Every LightGBM parameter name and alias (from the installed lightgbm, else the bundled 4.7 list)."""
    aliases: Mapping[str, Any]
    try:
        from lightgbm.basic import _ConfigAliases

        aliases = _ConfigAliases._get_all_param_aliases()
    except Exception:  # private API: fall back to the list generated from lightgbm 4.7.0
        from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

        aliases = LIGHTGBM_PARAM_ALIASES
    names = set(aliases)
    for v in aliases.values():
        names.update(v)
    return frozenset(names)


# ------------------------------------------------------------------------------------------ signatures
#: (module, class) whose ``**kwargs`` is a pass-through to another library: label, a cheap names function (checked
#: first) and the full names function (asked only for a name the cheap one lacks: importing lightgbm costs ~0.7 s).
_KWARGS_SINKS: dict[tuple[str, str], tuple[str, Any, Any]] = {
    ("qlib_prefect.model.gbdt", "LGBModel"): ("LightGBM", _bundled_lightgbm_names, lightgbm_param_names),
}


class SignatureInfo(typing.NamedTuple):
    """The keyword arguments a constructor accepts (:func:`signature_info`)."""

    accepted: frozenset[str]
    required: frozenset[str]
    open: bool  # accepts any keyword (unknown **kwargs target)
    sink: str | None  # label of a pass-through (e.g. "LightGBM")
    sink_names: frozenset[str]
    sink_all: Any = None  # () -> every name of the pass-through, for names not in ``sink_names``

    def accepts(self, key: str) -> bool:
        if key in self.accepted or key in self.sink_names:
            return True
        return self.sink_all is not None and key in self.sink_all()


def _params_of(fn: Any, skip_first: bool) -> tuple[list[inspect.Parameter], bool] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if skip_first and params:
        params = params[1:]
    has_var = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, has_var


@functools.lru_cache(maxsize=512)
def signature_info(cls: type) -> SignatureInfo:
    """What keyword arguments ``cls(...)`` accepts.

    qlib-prefect classes forward ``**kwargs`` to their base class, so their ``**kwargs`` is followed up the MRO
    (a root ``**kwargs`` is checked by the class itself and counts as closed); a registered pass-through
    (LGBModel -> LightGBM) adds that library's names. A foreign class with ``**kwargs`` accepts anything.
    """
    own = cls.__module__.startswith("qlib_prefect")
    if not own:
        info = _params_of(cls, skip_first=False)
        if info is None:
            return SignatureInfo(frozenset(), frozenset(), True, None, frozenset())
        named, has_var = info
        required = frozenset(p.name for p in named if p.default is p.empty)
        return SignatureInfo(frozenset(p.name for p in named), required, has_var, None, frozenset())
    accepted: set[str] = set()
    required: frozenset[str] | None = None
    is_open = False
    for klass in cls.__mro__:
        if klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        info = _params_of(init, skip_first=True)
        if info is None:
            is_open = True
            break
        named, has_var = info
        accepted.update(p.name for p in named)
        if required is None:
            required = frozenset(p.name for p in named if p.default is p.empty)
        sink = _KWARGS_SINKS.get((klass.__module__, klass.__name__))
        if sink is not None and has_var:
            return SignatureInfo(frozenset(accepted), required, False, sink[0], frozenset(sink[1]()), sink[2])
        if not has_var:
            break
        if not klass.__module__.startswith("qlib_prefect"):
            is_open = True
            break
    return SignatureInfo(frozenset(accepted), required or frozenset(), is_open, None, frozenset())
