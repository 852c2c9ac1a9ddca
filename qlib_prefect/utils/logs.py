"""qlib's logging helpers (``qlib.log``): ``get_module_logger`` and ``TimeInspector``.

Loggers are plain :mod:`logging` loggers named ``qlib_prefect.<module>`` (qlib: ``qlib.<module>``,
wrapped in its own class); no handler is installed here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import time
from typing import ClassVar

__all__ = ["TimeInspector", "get_module_logger"]


def get_module_logger(module_name: str, level: int | None = None) -> logging.Logger:
    """The logger ``qlib_prefect.<module_name>``; ``level`` sets its level (qlib's signature)."""
    logger = logging.getLogger(f"qlib_prefect.{module_name}")
    if level is not None:
        logger.setLevel(level)
    return logger


class TimeInspector:
    """A stack of time marks: ``set_time_mark`` / ``get_cost_time`` / ``log_cost_time`` and ``with logt(name):``.

    Deliberate difference: the stack is per thread (qlib shares one list between threads).
    """

    timer_logger: ClassVar[logging.Logger] = get_module_logger("timer")
    _local: ClassVar[threading.local] = threading.local()

    @classmethod
    def _marks(cls) -> list[float]:
        marks = getattr(cls._local, "marks", None)
        if marks is None:
            marks = cls._local.marks = []
        return marks

    @classmethod
    def set_time_mark(cls) -> float:
        t = time()
        cls._marks().append(t)
        return t

    @classmethod
    def pop_time_mark(cls) -> float:
        return cls._marks().pop()

    @classmethod
    def get_cost_time(cls) -> float:
        return time() - cls._marks().pop()

    @classmethod
    def log_cost_time(cls, info: str = "Done") -> None:
        cls.timer_logger.info("Time cost: %.3fs | %s", cls.get_cost_time(), info)

    @classmethod
    @contextmanager
    def logt(cls, name: str = "", show_start: bool = False) -> Iterator[None]:
        if show_start:
            cls.timer_logger.info("%s Begin", name)
        cls.set_time_mark()
        try:
            yield None
        finally:
            cls.log_cost_time(info=f"{name} Done")
