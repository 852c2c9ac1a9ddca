"""Housekeeping of ``$QLIB_PREFECT_HOME``: temp folders of killed processes, cache listing and eviction.

* Temporary folders (``store/<stage>/.tmp-*`` / ``.old-*``, ``handler_cache/.tmp-*``) name their owner process
  (an ``.owner`` file or ``p<pid>-<start time>`` in the name, :mod:`qlib_prefect.utils.owner`); a folder whose
  owner is gone is stale. A folder naming no owner (older versions) is stale after an hour.
* Cache entries: complete content-store entries (``store/<stage>/<key>``) and handler-cache entries
  (``handler_cache/<key>``), with size and creation time; :func:`prune` removes entries older than a given age
  and then the oldest until the total fits a size (a content-store entry loses its ``_COMPLETE`` marker first, so
  a concurrent reader never takes half an entry for done).

* Prefect flow runs: every flow run of a :class:`~qlib_prefect.orchestration.LeanFlow` carries the tags
  ``qlib-prefect``, ``qlib-prefect-owner:p<pid>-<start time>`` and ``qlib-prefect-host:<hostname>``
  (:func:`flow_run_owner_tags`). A flow run left Running/Pending by a killed process (kill -9 ends no Prefect
  state) is set Crashed by the next flow call on the same host (:func:`crash_dangling_flow_runs`), as the next
  MLflow recorder marks that process' MLflow run KILLED (:mod:`qlib_prefect.workflow.sweeper`).

qlib has no cache of its own to manage; the CLI is ``qlib-prefect gc``, ``doctor`` and ``cache ls|prune``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from qlib_prefect.orchestration._settings import SERVER_TIMEOUT_TEXT, apply_env_defaults, lean_prefect_settings
from qlib_prefect.utils.owner import is_alive, stale_children, token

__all__ = ["OWN_FLOW_RUN_TAG", "CacheEntry", "cache_entries", "crash_dangling_flow_runs", "flow_run_owner_tags",
           "prune", "stale_temp_dirs", "sweep_flow_runs", "sweep_temp_dirs"]

logger = logging.getLogger("qlib_prefect.orchestration")

#: the tag on every flow run of ours; owner and host tags carry these prefixes
OWN_FLOW_RUN_TAG = "qlib-prefect"
_OWNER_PREFIX = "qlib-prefect-owner:"
_HOST_PREFIX = "qlib-prefect-host:"

_COMPLETE = "_COMPLETE"


@dataclass(frozen=True)
class CacheEntry:
    """One cache entry: ``kind`` is ``store`` or ``handler``; ``stage`` is empty for handler entries."""

    kind: str
    stage: str
    key: str
    path: Path
    size: int
    created: float


def _size(path: Path) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def _temp_parents(home: Path) -> list[Path]:
    store = home / "store"
    stages = sorted(p for p in store.iterdir() if p.is_dir()) if store.is_dir() else []
    return [*stages, home / "handler_cache"]


def stale_temp_dirs(home: Path) -> list[Path]:
    """Temporary folders under ``home`` that no live process owns."""
    return [p for parent in _temp_parents(home) for p in stale_children(parent)]


def sweep_temp_dirs(home: Path) -> tuple[list[Path], int]:
    """Remove :func:`stale_temp_dirs`; ``(removed folders, bytes freed)``."""
    removed, freed = [], 0
    for p in stale_temp_dirs(home):
        size = _size(p)
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
            freed += size
    return removed, freed


def cache_entries(home: Path) -> list[CacheEntry]:
    """Every complete cache entry under ``home``, oldest first."""
    out: list[CacheEntry] = []
    store = home / "store"
    if store.is_dir():
        for stage in sorted(p for p in store.iterdir() if p.is_dir()):
            for e in stage.iterdir():
                marker = e / _COMPLETE
                if e.is_dir() and not e.name.startswith(".") and marker.is_file():
                    out.append(CacheEntry("store", stage.name, e.name, e, _size(e), marker.stat().st_mtime))
    hc = home / "handler_cache"
    if hc.is_dir():
        for e in hc.iterdir():
            if e.is_dir() and not e.name.startswith("."):
                out.append(CacheEntry("handler", "", e.name, e, _size(e), e.stat().st_mtime))
    out.sort(key=lambda c: c.created)
    return out


def prune(
    home: Path, *, older_than: float | None = None, max_size: int | None = None, dry_run: bool = False
) -> list[CacheEntry]:
    """Remove entries created more than ``older_than`` seconds ago, then the oldest until the rest fits in
    ``max_size`` bytes; the removed (or, with ``dry_run``, the would-be removed) entries."""
    entries = cache_entries(home)
    now = time.time()
    drop = [e for e in entries if older_than is not None and now - e.created > older_than]
    keep = [e for e in entries if e not in drop]
    if max_size is not None:
        total = sum(e.size for e in keep)
        for e in list(keep):  # oldest first
            if total <= max_size:
                break
            drop.append(e)
            keep.remove(e)
            total -= e.size
    if not dry_run:
        for e in drop:
            if e.kind == "store":
                (e.path / _COMPLETE).unlink(missing_ok=True)
            shutil.rmtree(e.path, ignore_errors=True)
    return drop


def flow_run_owner_tags() -> list[str]:
    """The tags naming this process (owner token and host) for the flow runs it starts."""
    return [OWN_FLOW_RUN_TAG, f"{_OWNER_PREFIX}{token()}", f"{_HOST_PREFIX}{socket.gethostname()}"]


def _tag_value(tags: list[str], prefix: str) -> str | None:
    return next((t[len(prefix):] for t in tags if t.startswith(prefix)), None)


def crash_dangling_flow_runs(limit: int = 200, *, fix: bool = True) -> list[str]:
    """Set Crashed every Running/Pending flow run of ours on this host whose owner process is gone; their ids.

    Flow runs of other hosts, of live processes and without our tags are left alone. ``fix=False`` only lists
    them (``qlib-prefect doctor``). Errors (an API that refuses the query) are logged at debug level and left to the
    next call: housekeeping never stops a run from starting.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    host = socket.gethostname()
    done: list[str] = []
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING,
                                                                                StateType.PENDING])),
                    tags=FlowRunFilterTags(all_=[OWN_FLOW_RUN_TAG]),
                ),
                limit=limit,
            )
            for fr in runs:
                owner = _tag_value(list(fr.tags), _OWNER_PREFIX)
                if not owner or _tag_value(list(fr.tags), _HOST_PREFIX) != host or is_alive(owner):
                    continue
                if fix:
                    client.set_flow_run_state(
                        fr.id, Crashed(message=f"owner process {owner} is gone (killed); marked by the next run"),
                        force=True,
                    )
                done.append(str(fr.id))
    except Exception as e:  # an API refusing the query: the next run retries
        if isinstance(e, RuntimeError) and SERVER_TIMEOUT_TEXT in str(e):
            # Prefect's temporary server did not start: starting it again for the flow would orphan the first
            # server process (SubprocessASGIServer.start keeps no handle on it); the caller reports the timeout
            raise
        logger.debug("flow-run housekeeping skipped: %s", e)
    return done


def sweep_flow_runs(*, fix: bool) -> list[str]:
    """:func:`crash_dangling_flow_runs` outside a flow (``qlib-prefect gc``/``doctor``): with the package's Prefect
    settings (a temporary API server on ``PREFECT_HOME``'s database unless ``PREFECT_API_URL`` is set)."""
    apply_env_defaults()
    with lean_prefect_settings():
        return crash_dangling_flow_runs(fix=fix)
