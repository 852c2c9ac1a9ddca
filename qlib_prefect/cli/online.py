"""``qlib-prefect online``: the daily online routine (qlib's ``qlib.workflow.online`` on Prefect and MLflow).

Examples::

    qlib-prefect online init online.yaml                       # first train: the first rolling windows go online
    qlib-prefect online routine online.yaml [--date 2017-07-05] # ingest the drops, update, retrain when due, signal
    qlib-prefect online simulate online.yaml --start 2017-07-03 --end 2017-09-29
    qlib-prefect online status online.yaml                     # the online models (run id, test segment)
    qlib-prefect online history online.yaml                    # one line per routine day (online models, champion)
    qlib-prefect online portfolio online.yaml [--date D]       # the stored target positions and orders of a day

The config is a qrun-style YAML with ``qlib_init`` (``provider_uri`` = the data directory), ``task`` (the template)
and an ``online`` section: ``name`` (strategy / experiment / registered model), ``source`` (a folder of CSV drops or
one CSV), ``step``, ``rtype``, ``trunc_days``, ``symbol_col``, ``date_col``, ``fields``, and for tomorrow's
portfolio ``strategy`` (e.g. TopkDropoutStrategy with ``topk`` / ``n_drop``), ``account``, ``exchange_kwargs``
(docs/online.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["register"]

ACTIONS = ("init", "routine", "simulate", "status", "history", "portfolio")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("online", help="online serving: init / routine / simulate / status / history / portfolio",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("config", help="the online YAML config")
    p.add_argument("--date", default=None, help="routine / portfolio: the routine day (default: the last calendar "
                   "date / the latest routine day)")
    p.add_argument("--start", default=None, help="simulate: the first day")
    p.add_argument("--end", default=None, help="simulate: the last day")
    p.add_argument("--json", dest="json_out", action="store_true",
                   help="init/routine/simulate/portfolio: print JSON instead of the table")
    p.set_defaults(func=_run)


def _config(path: str) -> dict:
    from qlib_prefect.config.loader import load_config

    return load_config(path, validate="structure").raw


def _run(args: argparse.Namespace) -> int:
    import qlib_prefect
    from qlib_prefect.errors import ConfigError

    cfg = _config(args.config)
    if args.action == "simulate":  # the routine backfilled as a Prefect flow (cached per window), backtested
        from qlib_prefect.orchestration import online_simulate, simulate_text

        if args.start is None:
            raise ConfigError("online simulate: --start is required")
        out = online_simulate(cfg, args.start, args.end)
        print(json.dumps(out, indent=1, default=str) if args.json_out else simulate_text(out))
        return 0
    if args.action in ("init", "routine"):
        from qlib_prefect.orchestration import online_routine, routine_text

        out = online_routine(cfg, args.date if args.action == "routine" else None)
        print(json.dumps(out, indent=1, default=str) if args.json_out else routine_text(out))
        return 0
    qlib_prefect.init(**cfg["qlib_init"])
    from qlib_prefect.orchestration import online_strategy, routine_history

    strategy = online_strategy(cfg)
    if args.action == "status":
        from qlib_prefect.online.strategy import task_test_segment

        online = strategy.tool.online_models()
        if not online:
            print(f"{strategy.name_id}: no online models (run `qlib-prefect online init`)")
            return 1
        for rec in online:
            print(rec.info["id"], *(str(x) for x in task_test_segment(rec)))
        return 0
    if args.action == "portfolio":
        from qlib_prefect.orchestration import portfolio_text, routine_portfolio

        tags, table = routine_portfolio(cfg, args.date)
        if args.json_out:
            print(table.to_json(orient="records", indent=1))
        else:
            print(portfolio_text(tags, table))
        return 0
    hist = routine_history(cfg)
    if hist.empty:
        print(f"{strategy.name_id}: no routine day recorded (run `qlib-prefect online init`)")
        return 1
    print(hist.to_string(index=False))
    return 0
