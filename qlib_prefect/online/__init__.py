"""Online serving (qlib's ``qlib.workflow.online``): which models are online on which day, their predictions kept
up to date, new rolling windows trained when due, and the trading signal.

* :class:`~qlib_prefect.online.manager.OnlineManager`: ``first_train``, ``routine``, ``simulate``, ``history``,
  ``prepare_signals`` / ``get_signals``;
* :class:`~qlib_prefect.online.strategy.RollingStrategy`: the latest rolling window(s) are online;
* :class:`~qlib_prefect.online.utils.OnlineToolR`: the ``online_status`` tag of MLflow runs;
* :class:`~qlib_prefect.online.update.PredUpdater` / :class:`~qlib_prefect.online.update.LabelUpdater`: extend a
  run's ``pred.pkl`` / ``label.pkl`` to new dates with the stored model and processor state.

Layer: above ``task`` and ``workflow``, below ``orchestration`` (no Prefect here). qlib's class paths
(``qlib.workflow.online.manager.OnlineManager``, ...) resolve to these classes. Where we differ from qlib 0.9.7
(its defects) is listed in docs/online.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DSBasedUpdater",
    "LabelUpdater",
    "OnlineManager",
    "OnlineStrategy",
    "OnlineTool",
    "OnlineToolR",
    "PredUpdater",
    "RMDLoader",
    "RecordUpdater",
    "RollingStrategy",
]

_LAZY = {
    "OnlineManager": "qlib_prefect.online.manager",
    "OnlineStrategy": "qlib_prefect.online.strategy",
    "RollingStrategy": "qlib_prefect.online.strategy",
    "OnlineTool": "qlib_prefect.online.utils",
    "OnlineToolR": "qlib_prefect.online.utils",
    "RMDLoader": "qlib_prefect.online.update",
    "RecordUpdater": "qlib_prefect.online.update",
    "DSBasedUpdater": "qlib_prefect.online.update",
    "PredUpdater": "qlib_prefect.online.update",
    "LabelUpdater": "qlib_prefect.online.update",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
