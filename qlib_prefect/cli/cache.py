"""``qlib-prefect gc`` / ``doctor`` / ``cache ls|prune``: clean up after killed runs, list and evict caches.

Usage::

    qlib-prefect doctor                       # report runs left RUNNING by killed processes, stale temp folders
    qlib-prefect gc --uri sqlite:///mlruns/mlflow.db   # mark those MLflow runs KILLED and flow runs Crashed,
                                                       # remove those folders
    qlib-prefect cache ls
    qlib-prefect cache prune --older-than 14d --max-size 20G [--dry-run]
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from qlib_prefect.errors import ConfigError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"--max-size {text!r}: use e.g. 500M, 20G")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _age(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"--older-than {text!r}: use e.g. 12h, 7d, 2w")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def register(subparsers: Any) -> None:
    for name, fix in (("gc", True), ("doctor", False)):
        p = subparsers.add_parser(
            name,
            help=("mark MLflow runs of killed processes KILLED, their Prefect flow runs Crashed, and remove their "
                  "temp folders" if fix
                  else "report MLflow runs and Prefect flow runs of killed processes and stale temp folders "
                  "(changes nothing)"),
        )
        p.add_argument("--uri", default=None, help="MLflow tracking URI (default: $QLIB_PREFECT_MLFLOW_URI or "
                                                   "./mlruns/mlflow.db)")
        p.set_defaults(func=_cmd_gc, fix=fix)
    c = subparsers.add_parser("cache", help="list or evict the caches under $QLIB_PREFECT_HOME")
    sub = c.add_subparsers(dest="cache_cmd", required=True)
    ls = sub.add_parser("ls", help="cache entries with size and age")
    ls.set_defaults(func=_cmd_ls)
    pr = sub.add_parser("prune", help="remove old entries, then the oldest until the rest fits --max-size")
    pr.add_argument("--older-than", type=_age, default=None, help="e.g. 12h, 7d, 2w")
    pr.add_argument("--max-size", type=_size, default=None, help="e.g. 500M, 20G")
    pr.add_argument("--dry-run", action="store_true")
    pr.set_defaults(func=_cmd_prune)


def _home() -> Any:
    from qlib_prefect.config.settings import home_dir

    return home_dir()


def _cmd_gc(args: argparse.Namespace) -> int:
    from qlib_prefect.orchestration.housekeeping import stale_temp_dirs, sweep_flow_runs, sweep_temp_dirs
    from qlib_prefect.workflow.sweeper import sweep_store

    home = _home()
    runs = sweep_store(args.uri, fix=args.fix)
    flow_runs = sweep_flow_runs(fix=args.fix)
    if args.fix:
        temps, freed = sweep_temp_dirs(home)
    else:
        temps = stale_temp_dirs(home)
        freed = 0
    verb = "marked KILLED" if args.fix else "left RUNNING by a killed process"
    for rid in runs:
        print(f"MLflow run {rid}: {verb}")
    flow_verb = "marked Crashed" if args.fix else "left Running by a killed process"
    for fid in flow_runs:
        print(f"Prefect flow run {fid}: {flow_verb}")
    for t in temps:
        print(f"temp folder {t}: {'removed' if args.fix else 'stale'}")
    found = runs or flow_runs or temps
    print(f"{len(runs)} MLflow run(s) {verb}; {len(flow_runs)} Prefect flow run(s) {flow_verb}; "
          f"{len(temps)} stale temp folder(s)"
          + (f" removed ({_human(freed)})" if args.fix else "")
          + ("" if args.fix or not found else "; run `qlib-prefect gc` to fix"))
    return 1 if (not args.fix and found) else 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from qlib_prefect.orchestration.housekeeping import cache_entries

    entries = cache_entries(_home())
    now = time.time()
    for e in entries:
        age = (now - e.created) / 86400
        print(f"{e.kind:8} {e.stage or '-':28} {e.key[:16]}  {_human(e.size):>10}  {age:6.1f} d")
    print(f"{len(entries)} entries, {_human(sum(e.size for e in entries))} under {_home()}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from qlib_prefect.orchestration.housekeeping import prune

    if args.older_than is None and args.max_size is None:
        raise ConfigError("cache prune: give --older-than and/or --max-size")
    dropped = prune(_home(), older_than=args.older_than, max_size=args.max_size, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for e in dropped:
        print(f"{verb} {e.kind} {e.stage or '-'} {e.key[:16]} ({_human(e.size)})")
    print(f"{verb} {len(dropped)} entries, {_human(sum(e.size for e in dropped))}")
    return 0
