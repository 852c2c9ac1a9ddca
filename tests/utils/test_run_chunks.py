"""run_chunks covers range(n) exactly once in contiguous chunks, on threads, and re-raises their errors."""

from __future__ import annotations

import threading

import pytest

from qlib_prefect.utils.threads import run_chunks, usable_cpus


@pytest.mark.parametrize(("n", "threads"), [(0, 2), (1, 4), (7, 1), (159, 2), (10, 4)])
def test_chunks_cover_the_range_once(n: int, threads: int) -> None:
    seen: list[tuple[int, int, str]] = []
    run_chunks(n, lambda lo, hi: seen.append((lo, hi, threading.current_thread().name)), threads=threads)
    spans = sorted((lo, hi) for lo, hi, _ in seen)
    assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(n))
    assert len(spans) == max(1, min(threads, n))
    if len(spans) > 1:
        assert all(name.startswith("qlib-prefect-work") for *_, name in seen)


def test_errors_propagate_and_cpus_are_bounded() -> None:
    def boom(lo: int, hi: int) -> None:
        if lo > 0:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        run_chunks(10, boom, threads=2)
    assert 1 <= usable_cpus() <= 4 and usable_cpus(1) == 1
