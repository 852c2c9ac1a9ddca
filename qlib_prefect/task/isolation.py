"""Running a function in a fresh subprocess (qlib's ``call_in_subproc``, ``qlib/utils/paral.py``).

Used by :class:`~qlib_prefect.task.trainer.TrainerR` (``call_in_subproc=True``) and
:func:`~qlib_prefect.task.manage.run_task` (``force_release``); it lives apart from both so that neither imports
the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["call_in_subproc"]


def _init_subprocess(config: dict | None) -> None:
    if config is not None:
        import qlib_prefect

        qlib_prefect.init(**config)


class call_in_subproc:  # qlib's (lower-case) name
    """Run ``func`` in a fresh (spawned) one-process pool, after ``qlib_prefect.init(**config)`` there.

    Memory used by training is released when the subprocess ends. ``func``, its arguments and its result must
    be picklable (module-level functions; recorders are).
    """

    def __init__(self, func: Callable[..., Any], config: dict | None = None) -> None:
        self.func = func
        self.config = None if config is None else dict(config)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_subprocess,
                                 initargs=(self.config,)) as executor:
            return executor.submit(self.func, *args, **kwargs).result()
