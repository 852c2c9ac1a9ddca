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
from typing import NoReturn

from qlib_prefect.config.settings import get_settings

__all__ = ["PRIVATE_FUNCTIONS", "available", "exit_process"]

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
