"""Interpreter tweak: end a command without CPython's module teardown (``threading._shutdown``,
``atexit._run_exitfuncs``, ``os._exit``).

A normal exit joins non-daemon threads, runs the ``atexit`` handlers (Prefect flushes its logs and events, the
temporary API server stops), then tears down every loaded module: about 1 s with Prefect, MLflow and pandas loaded
(commit 2145567). :func:`exit_process` does the first two steps exactly as the interpreter does and skips the third.
After an interrupt it also skips joining the worker threads (a stage still computing would otherwise hold the exit
until it finishes): the ``atexit`` handlers still run.

Switch: ``QLIB_PREFECT_FAST_EXIT=0`` (then ``sys.exit``). Fallback: when this Python lacks one of the private
functions (logged at debug), ``sys.exit``: slower, same result. Imports only the standard library.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from qlib_prefect.config.settings import get_settings

__all__ = ["ABORT_GRACE", "PRIVATE_FUNCTIONS", "abort_soon", "arm_abort_exit", "available", "exit_process"]

logger = logging.getLogger(__name__)

#: (module, name) of every private function used (``tests/tweaks`` asserts each on the running Python)
PRIVATE_FUNCTIONS = ((threading, "_shutdown"), (atexit, "_run_exitfuncs"), (os, "_exit"))


def available() -> bool:
    """Whether this Python has every private function used."""
    missing = [f"{m.__name__}.{n}" for m, n in PRIVATE_FUNCTIONS if not callable(getattr(m, n, None))]
    if missing:
        logger.debug("fast exit unavailable (no %s): normal interpreter exit", ", ".join(missing))
    return not missing


def exit_process(rc: int, *, interrupted: bool = False) -> NoReturn:
    """Exit with ``rc``: join threads (not after an interrupt), run the ``atexit`` handlers, flush the standard
    streams, ``os._exit``. Falls back to ``sys.exit(rc)`` when switched off or unavailable."""
    if not get_settings().fast_exit or not available():
        sys.exit(rc)
    if not interrupted:
        threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does first at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


#: seconds an interrupted command may take to unwind before :func:`abort_soon` ends it
ABORT_GRACE = 5.0
_ABORT: dict[str, bool] = {"armed": False, "started": False}


def arm_abort_exit() -> None:
    """Let :func:`abort_soon` end this process (the CLI calls it; library users keep Python's behaviour)."""
    _ABORT["armed"] = True


def abort_soon(rc: int, before_exit: Callable[[], None] | None = None, *, grace: float = ABORT_GRACE) -> bool:
    """After an interrupt: if this process is still running ``grace`` seconds later (Prefect's task runner waits
    for the stage threads, which cannot be stopped), call ``before_exit`` and :func:`exit_process` ``(rc,
    interrupted=True)`` from a watchdog thread. Only when armed (:func:`arm_abort_exit`); returns whether it was
    started."""
    if not _ABORT["armed"] or _ABORT["started"]:
        return False
    _ABORT["started"] = True

    def _watch() -> None:
        time.sleep(grace)
        if before_exit is not None:
            try:
                before_exit()
            except Exception as e:  # exit anyway
                logger.debug("abort clean-up failed: %s", e)
        print("interrupted: not waiting for the running stages", file=sys.stderr, flush=True)
        exit_process(rc, interrupted=True)

    threading.Thread(target=_watch, name="qlib-prefect-abort", daemon=True).start()
    return True
