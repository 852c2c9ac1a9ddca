"""``qlib-prefect serve``: serve the qlib-workflow, rolling-retrain (and online-routine) deployments from one process.

Examples::

    prefect server start &                                  # UI + API at http://127.0.0.1:4200
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    qlib-prefect serve --config examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml
    prefect deployment run 'qlib-workflow/qlib-workflow' --param config=my_workflow.yaml --watch
    qlib-prefect serve --online-config online.yaml          # + online-routine (weekdays 17:30 New York time)

The process registers the deployments (rolling-retrain and online-routine with their cron schedules unless
``--no-schedule``; online-routine only with ``--online-config`` or ``--only online-routine``), then
polls the API and runs their flow runs as subprocesses until Ctrl-C: no work pool or worker needed. The same
deployments for a process work pool are in ``deployments/prefect.yaml`` (``prefect deploy --all``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "serve_from_args"]


def register(subparsers: Any) -> None:
    from qlib_prefect.orchestration import DEPLOYMENTS, ONLINE_CRON, ROLLING_CRON, ROLLING_TIMEZONE

    p = subparsers.add_parser("serve", help="serve the qlib-workflow / rolling-retrain deployments (no worker)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None,
                   help="default workflow config of the deployments (default: the bundled LightGBM example)")
    p.add_argument("--rolling-config", dest="rolling_config", default=None,
                   help="default config of rolling-retrain (default: --config)")
    p.add_argument("--step", type=int, default=None, help="rolling-retrain default step (trading days)")
    p.add_argument("--rtype", default=None, choices=["expanding", "sliding"], help="rolling-retrain default rtype")
    p.add_argument("--cron", default=ROLLING_CRON, help=f"rolling-retrain schedule (default {ROLLING_CRON!r})")
    p.add_argument("--timezone", default=ROLLING_TIMEZONE, help=f"schedule time zone (default {ROLLING_TIMEZONE})")
    p.add_argument("--online-config", dest="online_config", default=None,
                   help="the online YAML of online-routine (serves online-routine too)")
    p.add_argument("--online-cron", dest="online_cron", default=ONLINE_CRON,
                   help=f"online-routine schedule (default {ONLINE_CRON!r})")
    p.add_argument("--no-schedule", dest="no_schedule", action="store_true",
                   help="register rolling-retrain and online-routine without their schedules")
    p.add_argument("--only", action="append", choices=list(DEPLOYMENTS), default=None,
                   help="serve only this deployment (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="at most this many concurrent flow runs")
    p.set_defaults(func=_cmd_serve)


def _abs_if_file(path: str | None) -> str | None:
    """Relative config paths are made absolute (flow runs may start in another directory)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_file():
        return str(p.resolve())
    from qlib_prefect.errors import ConfigError

    raise ConfigError(f"serve: config file {path!r} not found")


def serve_from_args(args: argparse.Namespace) -> int:
    """Build the deployments from ``args`` and serve them until interrupted."""
    from qlib_prefect.config.settings import get_settings
    from qlib_prefect.orchestration import build_deployments, serve_deployments

    config = _abs_if_file(args.config)
    if config is None:
        from qlib_prefect.cli.demo import example_config

        config = str(example_config())
    from qlib_prefect.orchestration import DEPLOYMENTS

    online_config = _abs_if_file(getattr(args, "online_config", None))
    names = args.only or [n for n in DEPLOYMENTS if n != "online-routine" or online_config]
    deployments = build_deployments(
        config=config, rolling_config=_abs_if_file(args.rolling_config), step=args.step, rtype=args.rtype,
        cron=None if args.no_schedule else args.cron, timezone=args.timezone, names=names,
        online_config=online_config,
        online_cron=None if args.no_schedule else getattr(args, "online_cron", None),
    )
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"serving {names} against {get_settings().prefect_api_url}", flush=True)
    serve_deployments(deployments, limit=args.limit)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from qlib_prefect.cli.preflight import route_progress_logs
    from qlib_prefect.config.settings import get_settings

    route_progress_logs()  # the served runs' training progress into their task logs
    if not get_settings().prefect_api_url:
        print("warning: PREFECT_API_URL is not set: the deployments go to a temporary API server that "
              "`prefect deployment run` cannot reach; start `prefect server start` and export "
              "PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr)
    try:
        return serve_from_args(args)
    except KeyboardInterrupt:  # pragma: no cover
        return 130
