"""``qlib-prefect task-pool``: inspect and repair a MongoDB task pool (qlib's ``python -m qlib.workflow.task.manage``).

Examples::

    qlib-prefect task-pool list                                  # every pool of the database
    qlib-prefect task-pool rolling task_stat                     # {"waiting": 3, "running": 1, "done": 8}
    qlib-prefect task-pool rolling query '{"status": "running"}' # one JSON line per task
    qlib-prefect task-pool rolling query '{"_id": "615498be837d0053acbc5d58"}'
    qlib-prefect task-pool rolling wait --poll 5                 # block until nothing is waiting/running/part_done
    qlib-prefect task-pool rolling reset_waiting                 # running -> waiting (after crashed workers)
    qlib-prefect task-pool rolling remove '{"status": "done"}'   # an empty query needs --yes

The server comes from ``--url`` / ``--db``, else ``QLIB_PREFECT_MONGO_URL`` / ``QLIB_PREFECT_MONGO_DB``, else
``mongodb://localhost:27017/`` and ``default_task_db``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]

ACTIONS = ("task_stat", "wait", "reset_waiting", "remove", "list", "query")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("task-pool", help="inspect / repair a MongoDB task pool (TaskManager)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              usage="qlib-prefect task-pool [options] (list | POOL ACTION [QUERY])")
    p.add_argument("words", nargs="+", metavar="POOL ACTION [QUERY]",
                   help=f"ACTION is one of {', '.join(ACTIONS)}; QUERY is a MongoDB query as JSON")
    p.add_argument("--url", default=None, help="MongoDB URL (default: config / QLIB_PREFECT_MONGO_URL)")
    p.add_argument("--db", default=None, help="database name (default: config / QLIB_PREFECT_MONGO_DB)")
    p.add_argument("--poll", type=float, default=10.0, help="wait: seconds between checks (default 10)")
    p.add_argument("--timeout", type=float, default=None, help="wait: give up after this many seconds")
    p.add_argument("--raw", action="store_true", help="query: do not unpickle def/res (show their size)")
    p.add_argument("--yes", action="store_true", help="remove: allow an empty query (deletes the whole pool)")
    p.set_defaults(func=_run)


def _parse_words(words: list[str]) -> tuple[str | None, str, dict]:
    from qlib_prefect.errors import ConfigError

    if words == ["list"]:
        return None, "list", {}
    if len(words) < 2 or len(words) > 3:
        raise ConfigError(f"task-pool: expected `list` or `POOL ACTION [QUERY]`, got {' '.join(words)!r}")
    pool, action = words[0], words[1].replace("-", "_")
    if action not in ACTIONS:
        raise ConfigError(f"task-pool: unknown action {words[1]!r}; use one of {', '.join(ACTIONS)}")
    query: Any = {}
    if len(words) == 3:
        try:
            query = json.loads(words[2])
        except json.JSONDecodeError as e:
            raise ConfigError(f"task-pool {action}: QUERY is not valid JSON ({e}): {words[2]!r}") from None
        if not isinstance(query, dict):
            raise ConfigError(f"task-pool {action}: QUERY must be a JSON object, got {words[2]!r}")
    return pool, action, query


def _doc_json(doc: dict) -> str:
    out = {"_id": str(doc.get("_id")), "status": doc.get("status")}
    for k in ("priority", "lease"):
        if k in doc:
            out[k] = doc[k]
    for k, v in doc.items():
        if k not in out and k not in ("filter", "filter_key"):
            out[k] = f"<pickled, {len(v)} bytes>" if isinstance(v, (bytes, bytearray)) else v
    return json.dumps(out, default=str, ensure_ascii=False)


def _run(args: argparse.Namespace) -> int:
    import pymongo.errors

    from qlib_prefect.config.runtime import C
    from qlib_prefect.task.manage import TaskManager, TaskPoolError, mongo_config

    pool, action, query = _parse_words(args.words)
    if args.url or args.db:
        mongo = dict(C.get("mongo") or {})
        if args.url:
            mongo["task_url"] = args.url
        if args.db:
            mongo["task_db_name"] = args.db
        C["mongo"] = mongo
    try:
        if action == "list":
            for name in sorted(TaskManager.list()):
                print(name)
            return 0
        tm = TaskManager(pool)
        if action == "task_stat":
            print(json.dumps(tm.task_stat(query)))
        elif action == "wait":
            tm.wait(query, poll_interval=args.poll, timeout=args.timeout)
            print(json.dumps(tm.task_stat(query)))
        elif action == "reset_waiting":
            print(f"{tm.reset_waiting(query)} task(s) set to waiting")
        elif action == "remove":
            if not query and not args.yes:
                print("error: remove without a QUERY deletes every task of the pool; add --yes to confirm",
                      file=sys.stderr)
                return 2
            print(f"removed {tm.remove(query)} task(s)")
        elif action == "query":
            for doc in tm.query(query, decode=not args.raw):
                print(_doc_json(doc))
    except pymongo.errors.ServerSelectionTimeoutError as e:
        cfg = mongo_config()
        from qlib_prefect.utils.redaction import redact_uri

        url, err = redact_uri(cfg["task_url"]), redact_uri(str(e))
        raise TaskPoolError(f"task-pool: cannot reach MongoDB at {url}: {err}") from None
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
