"""End the active run when the process ends (qlib's ``experiment_exit_handler``).

* an uncaught exception (``sys.excepthook``) ends the active run ``FAILED``, then the previous hook prints it;
* ``Ctrl-C`` (an uncaught ``KeyboardInterrupt``) also ends it ``FAILED``, like qlib (MLflow's ``KILLED`` is
  available as ``Recorder.STATUS_K`` for code that wants to mark interrupted runs itself);
* a normal interpreter exit (including ``sys.exit``) ends it ``FINISHED`` (``atexit``).

Installed once, the first time ``R`` is used or ``qlib_prefect.init`` runs; repeated calls are no-ops. Exceptions in
Prefect worker threads are not affected (they go through ``threading.excepthook``, and the flow decides).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from types import TracebackType
from typing import Any

__all__ = ["experiment_exception_hook", "experiment_exit_handler", "is_installed"]

logger = logging.getLogger("qlib_prefect.workflow")
_state: dict[str, Any] = {"installed": False, "previous_hook": None, "recorder": None}
_lock = threading.Lock()


def _end_active(status: str) -> None:
    rec = _state["recorder"]
    if rec is None or not rec.is_built():
        return
    try:
        rec.end_exp(recorder_status=status)
    except Exception as e:  # never mask the original exception / exit status
        logger.error("could not end the active recorder with status %s: %s", status, e)


def experiment_exception_hook(exc_type: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    """``sys.excepthook``: end the active run FAILED, then delegate to the previous hook (prints the traceback)."""
    logger.error("An exception has been raised[%s: %s].", exc_type.__name__, value)
    _end_active("FAILED")
    previous = _state["previous_hook"] or sys.__excepthook__
    previous(exc_type, value, tb)


def _at_exit() -> None:
    _end_active("FINISHED")


def experiment_exit_handler(recorder: Any) -> None:
    """Install the excepthook and the atexit handler (idempotent); they end ``recorder``'s (``R``'s) active run."""
    with _lock:
        _state["recorder"] = recorder
        if _state["installed"]:
            return
        if sys.excepthook is not experiment_exception_hook:
            _state["previous_hook"] = sys.excepthook
            sys.excepthook = experiment_exception_hook
        atexit.register(_at_exit)
        _state["installed"] = True


def is_installed() -> bool:
    return bool(_state["installed"])
