"""qlib's ``fill_placeholder``: replace ``"<MODEL>"``-style strings inside a nested config.

Two kinds of placeholder are understood (qlib/utils/__init__.py semantics):

* user-defined values: ``fill_placeholder(cfg, {"<MODEL>": model, "<DATASET>": dataset})`` replaces every string
  equal to a key of the mapping;
* dotted paths into the config itself: ``"<dataset.kwargs.segments.train.0>"`` is replaced by that value
  (dict keys / list indices). A path that does not resolve leaves the string unchanged (logged at INFO).

Matching follows qlib exactly: ``re.match`` (a prefix match, so ``"<a.b>tail"`` is replaced as a whole), only dicts
and lists are descended (tuples are leaves), and the config is modified **in place** and returned.

Example:
    >>> cfg = {"seg": {"train": ["2013-01-01", "2015-12-31"]}, "fit_end": "<seg.train.1>", "sig": "<PRED>"}
    >>> fill_placeholder(cfg, {"<PRED>": 42})["fit_end"], cfg["sig"]
    ('2015-12-31', 42)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from qlib_prefect.errors import ConfigError

__all__ = ["fill_placeholder", "get_item_from_obj"]

logger = logging.getLogger(__name__)
_PLACEHOLDER = re.compile(r"<(?P<name_path>[^<>]+)>")


def get_item_from_obj(config: Any, name_path: str) -> Any:
    """Follow the dotted ``name_path`` through dicts (keys) and lists (integer indices).

    Raises ``KeyError``/``IndexError``/``ValueError`` like qlib's ``get_item_from_obj``.
    """
    cur = config
    for k in name_path.split("."):
        if isinstance(cur, dict):
            cur = cur[k]
        elif k.isdigit():
            cur = cur[int(k)]
        else:
            raise ValueError(f"cannot get {k!r} from a {type(cur).__name__} (path {name_path!r})")
    return cur


def fill_placeholder(config: Any, config_extend: Mapping[str, Any]) -> Any:
    """Replace placeholders in ``config`` (in place, breadth first) and return it."""
    for placeholder in config_extend:
        if not isinstance(placeholder, str) or not _PLACEHOLDER.match(placeholder):
            raise ConfigError(f"fill_placeholder: {placeholder!r} is not a placeholder of the form '<name>'")

    def _replace(value: str) -> Any:
        if value in config_extend:
            return config_extend[value]
        m = _PLACEHOLDER.match(value)
        if m is not None:
            try:
                return get_item_from_obj(config, m.group("name_path"))
            except (KeyError, ValueError, IndexError, TypeError):
                logger.info("%s looks like a placeholder, but it can't match to any given values", value)
        return value

    queue: list[Any] = [config]
    top = 0
    while top < len(queue):
        item = queue[top]
        top += 1
        if isinstance(item, list):
            keys: Any = range(len(item))
        elif isinstance(item, dict):
            keys = list(item.keys())
        else:
            continue
        for key in keys:
            value = item[key]
            if isinstance(value, (list, dict)):
                queue.append(value)
            elif isinstance(value, str):
                item[key] = _replace(value)
    return config
