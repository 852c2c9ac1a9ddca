"""MLflow runs left ``RUNNING`` by a killed process are marked ``KILLED`` (qlib leaves them running forever).

Every run our recorders start carries the tag ``qlib_prefect.owner`` = ``p<pid>-<start time>`` of the process
(:mod:`qlib_prefect.utils.owner`). A ``RUNNING`` run whose owner process is gone -- on this host; runs of other
hosts are left alone -- is ended as ``KILLED`` with the tag ``qlib_prefect.killed_by`` saying why. This happens
when a recorder starts a new run in the same experiment, and for every experiment with ``qlib-prefect gc``.

Example:
    >>> mark_dangling_runs(get_client(uri))  # doctest: +SKIP
    ['4f1c...']
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from qlib_prefect.utils.owner import is_alive

__all__ = ["HOST_TAG", "OWNER_TAG", "dangling_runs", "mark_dangling_runs", "owner_tags", "sweep_store"]

OWNER_TAG = "qlib_prefect.owner"
HOST_TAG = "qlib_prefect.host"


def owner_tags() -> dict[str, str]:
    """The owner tags of a run started by this process."""
    from qlib_prefect.utils.owner import token

    return {OWNER_TAG: token(), HOST_TAG: socket.gethostname()}


def dangling_runs(client: Any, experiment_ids: Sequence[str] | None = None) -> list[Any]:
    """``RUNNING`` runs of this host whose owner process is gone (all experiments when ``experiment_ids`` is None)."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    runs = client.search_runs(list(experiment_ids), filter_string="attributes.status = 'RUNNING'", max_results=1000)
    host = socket.gethostname()
    out = []
    for run in runs:
        tags = run.data.tags
        owner = tags.get(OWNER_TAG)
        if owner and tags.get(HOST_TAG, host) == host and not is_alive(owner):
            out.append(run)
    return out


def mark_dangling_runs(client: Any, experiment_ids: Sequence[str] | None = None) -> list[str]:
    """End every :func:`dangling_runs` run as ``KILLED``; their ids. Errors are left to the next attempt."""
    done: list[str] = []
    try:
        runs = dangling_runs(client, experiment_ids)
    except Exception:  # a tracking server refusing the search must not stop a run from starting
        return done
    for run in runs:
        rid = run.info.run_id
        try:
            client.set_tag(rid, "qlib_prefect.killed_by", "owner process gone (killed); marked by the next run / gc")
            client.set_terminated(rid, status="KILLED")
        except Exception:  # pragma: no cover - a concurrent sweeper or a locked store: the next one retries
            continue
        done.append(rid)
    return done


def sweep_store(uri: str | None = None, *, fix: bool) -> list[str]:
    """Ids of the dangling runs of the store ``uri`` (default: the default store), marked ``KILLED`` with ``fix``.

    A SQLite store that does not exist yet has none (it is not created).
    """
    from qlib_prefect.workflow._store import get_client, resolve_uri, sqlite_path

    uri = resolve_uri(uri, create=False)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    client = get_client(uri)
    return mark_dangling_runs(client) if fix else [r.info.run_id for r in dangling_runs(client)]
