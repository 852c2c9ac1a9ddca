"""Deep-merging a config onto its base (qlib's ``update_config``, used for ``BASE_CONFIG_PATH``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["S_DROP", "update_config"]

#: the value that deletes a key when merging onto a base config (qlib's ``S_DROP``).
S_DROP = "__DROP__"


def update_config(base_config: Mapping[str, Any], ext_config: Any) -> dict[str, Any]:
    """qlib's ``update_config``: deep-merge ``ext_config`` (a dict or a list of dicts) onto a copy of the base.

    Nested dicts merge recursively, other values replace, and the value ``"__DROP__"`` deletes the key.
    """
    out = copy.deepcopy(dict(base_config))
    for ec in ext_config if isinstance(ext_config, (list, tuple)) else [ext_config]:
        for key, val in ec.items():
            if key not in out:
                if not (isinstance(val, str) and val == S_DROP):
                    out[key] = copy.deepcopy(val)
            elif isinstance(out[key], dict) and isinstance(val, dict):
                out[key] = update_config(out[key], val)
            elif isinstance(val, str) and val == S_DROP:
                del out[key]
            else:
                out[key] = copy.deepcopy(val)
    return out
