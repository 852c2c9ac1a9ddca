"""Process ownership tokens: ``p<pid>-<start time>`` names a live process unambiguously (pids are reused).

Temporary folders and journals carry the token of the process that made them, so a later process can tell a
folder of a live writer from the leftover of a killed one (qlib has no such sweep; we add it for crash safety).

Example:
    >>> is_alive(token())
    True
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

__all__ = ["OWNER_FILE", "is_alive", "parse_token", "remove_stale", "stale_children", "token"]

#: a file inside a temporary folder holding its owner's token (when the folder name cannot carry it)
OWNER_FILE = ".owner"
_LEGACY_STALE_SECONDS = 3600.0

_TOKEN = re.compile(r"p(\d+)-(\d+)")


def _start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux ``/proc``); ``None`` if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (IndexError, ValueError):  # pragma: no cover - malformed /proc
        return None


def token(pid: int | None = None) -> str:
    """``p<pid>-<start time>`` of ``pid`` (default: this process); start time 0 where ``/proc`` is absent."""
    pid = os.getpid() if pid is None else pid
    return f"p{pid}-{_start_time(pid) or 0}"


def parse_token(text: str) -> tuple[int, int] | None:
    """The ``(pid, start time)`` of the first token in ``text`` (e.g. a folder name), or ``None``."""
    m = _TOKEN.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_alive(tok: str) -> bool:
    """True if the process named by ``tok`` still runs (same pid and same start time)."""
    parsed = parse_token(tok)
    if parsed is None:
        return False
    pid, start = parsed
    now = _start_time(pid)
    if now is not None:
        return start == 0 or now == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - alive, owned by another user
        return True
    return not os.path.exists("/proc/self")  # /proc exists but has no entry: gone


def _owner_of(path: Path) -> str | None:
    """The owner token of a temporary folder: its :data:`OWNER_FILE`, else a token in its name, else None. A
    marker without a token (read while its writer is between truncating and writing it) does not count: taking
    it for a dead owner would delete a live writer's folder."""
    try:
        text = (path / OWNER_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if parse_token(text):
        return text
    return path.name if parse_token(path.name) else None


def stale_children(folder: Path, prefixes: tuple[str, ...] = (".tmp-", ".old-")) -> list[Path]:
    """Sub-folders of ``folder`` named with one of ``prefixes`` that no live process owns (owner from an
    :data:`OWNER_FILE` or a token in the name; a folder naming no owner is stale after an hour)."""
    try:
        children = [p for p in Path(folder).iterdir() if p.name.startswith(prefixes) and p.is_dir()]
    except OSError:
        return []
    now = time.time()
    out = []
    for p in sorted(children):
        owner = _owner_of(p)
        try:
            if (not is_alive(owner)) if owner is not None else now - p.stat().st_mtime > _LEGACY_STALE_SECONDS:
                out.append(p)
        except OSError:
            pass
    return out


def remove_stale(folder: Path, prefixes: tuple[str, ...] = (".tmp-", ".old-")) -> list[Path]:
    """Delete :func:`stale_children` of ``folder``; the removed folders."""
    removed = []
    for p in stale_children(folder, prefixes):
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed
