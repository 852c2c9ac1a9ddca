"""Measure a command in a subprocess: wall time and peak memory (shared by the benchmark scripts).

Peak memory is reported two ways:

* ``max_rss_mb``: the kernel's ``ru_maxrss`` from ``os.wait4`` (peak RSS of the largest single process of the
  tree, exact);
* ``peak_tree_mb``: the peak of the summed PSS (proportional set size, so pages shared by forked workers are not
  counted twice; RSS where PSS is unavailable) of the whole process tree, sampled from ``/proc`` every
  ``interval`` seconds — the honest figure for multi-process programs (a spike between two samples can be missed).

``cpu_s`` is user + system CPU time of the tree (from ``os.wait4``), a figure less sensitive to a busy machine
than wall time.

Example:
    >>> r = measure([sys.executable, "-c", "print('{\\"x\\": 1}')"])  # doctest: +SKIP
    >>> r["result"], r["returncode"]  # doctest: +SKIP
    ({'x': 1}, 0)
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["disk_settle", "machine_info", "measure", "utc_now", "write_section"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(p.name))
    return kids


def _mem_bytes(pid: int) -> int:
    """PSS of ``pid`` (RSS if smaps_rollup is unreadable), 0 if it is gone."""
    try:
        for line in (Path("/proc") / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        return int((Path("/proc") / str(pid) / "statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _tree_rss(root: int) -> int:
    kids = _children_map()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _mem_bytes(pid)
        stack.extend(kids.get(pid, []))
    return total


def measure(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            interval: float = 0.05, timeout: float | None = None) -> dict:
    """Run ``cmd``; return wall seconds, peak memory, return code, stderr tail and the last JSON line of stdout."""
    load0 = round(os.getloadavg()[0], 2)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            done.wait(interval)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.append(s.read()), daemon=True)
               for s, b in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
    for r in readers:
        r.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = "".join(out_chunks)
    result = None
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except ValueError:
                continue
    return {"wall_s": round(wall, 3), "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "max_rss_mb": round(ru.ru_maxrss / 1024, 1), "peak_tree_mb": round(peak[0] / 2**20, 1),
            "returncode": proc.returncode, "result": result, "loadavg_1min_start": load0,
            "stderr_tail": "".join(err_chunks)[-2000:]}


def _disk_counters() -> tuple[str, ...]:
    try:
        return tuple(" ".join(line.split()[3:]) for line in Path("/proc/diskstats").read_text().splitlines()
                     if line.split()[2].startswith(("vd", "sd", "nvme", "xvd")))
    except OSError:
        return ()


def disk_settle(quiet_s: float = 3.0, timeout_s: float = 120.0) -> float:
    """Flush dirty pages and wait until no disk counter changed for ``quiet_s`` seconds (at most ``timeout_s``);
    returns the seconds waited. On a file system mounted with ``discard`` the deletion of a previous run's
    gigabytes issues TRIMs that stall the next run's writes for seconds: a run should not pay for the one before."""
    t0 = time.perf_counter()
    os.sync()
    prev, quiet = _disk_counters(), 0.0
    while quiet < quiet_s and time.perf_counter() - t0 < timeout_s:
        time.sleep(0.5)
        cur = _disk_counters()
        quiet = quiet + 0.5 if cur == prev else 0.0
        prev = cur
    return time.perf_counter() - t0


def machine_info() -> dict:
    """nproc, CPU model, RAM, load average, OS and Python (for BENCHMARKS.md)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"nproc": nproc, "cpu": model, "ram_gb": ram_gb,
            "loadavg": [round(x, 2) for x in os.getloadavg()], "os": platform.platform(),
            "python": sys.version.split()[0]}


def utc_now() -> str:
    """The date and time for a BENCHMARKS.md section, e.g. ``2026-11-28 00:53 UTC``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of ``path`` (BENCHMARKS.md) with ``section``
    (which carries the markers), or append it; written to a temporary file and renamed into place."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
