"""Progress of long report work: a rich progress bar in a terminal, log lines otherwise (Prefect's logs)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["progress"]

logger = logging.getLogger("qlib_prefect.report")
T = TypeVar("T")


def progress(items: Iterable[T], *, description: str, total: int, key: Callable[[T], Any] = str,
             log_every: int = 0) -> Iterator[T]:
    """Yield ``items``; show ``description`` with a bar on a terminal (stderr), else log every ``log_every``
    items (default: about every 10%) and at the end."""
    every = log_every or max(1, total // 10)
    if sys.stderr.isatty():
        from rich.progress import track

        yield from track(items, description=description, total=total, transient=True)
        return
    done = 0
    for item in items:
        yield item
        done += 1
        if done % every == 0 or done == total:
            logger.info("%s: %d/%d (%s)", description, done, total, key(item))
