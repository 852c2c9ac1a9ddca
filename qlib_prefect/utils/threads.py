"""CPU count and contiguous-chunk threading for numpy work that releases the GIL (copies, takes).

Example:
    >>> out = np.empty_like(a, order="C")  # doctest: +SKIP
    >>> run_chunks(len(a), lambda lo, hi: np.copyto(out[lo:hi], a[lo:hi]), name="copy")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

__all__ = ["run_chunks", "usable_cpus"]


def usable_cpus(limit: int = 4) -> int:
    """The CPUs this process may run on (its affinity mask), at most ``limit``, at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(limit, n))


def run_chunks(n: int, fn: Callable[[int, int], object], *, threads: int | None = None, name: str = "work") -> None:
    """Call ``fn(lo, hi)`` on ``threads`` (default :func:`usable_cpus`) contiguous chunks covering ``range(n)``,
    on a thread pool when more than one; exceptions propagate."""
    n_thr = max(1, min(usable_cpus() if threads is None else threads, n))
    bounds = [n * i // n_thr for i in range(n_thr + 1)]
    if n_thr == 1:
        fn(0, n)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n_thr, thread_name_prefix=f"qlib-prefect-{name}") as pool:
        for f in [pool.submit(fn, lo, hi) for lo, hi in itertools.pairwise(bounds)]:
            f.result()
