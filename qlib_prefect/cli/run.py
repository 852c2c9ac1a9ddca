"""``qlib-prefect run``: run a qrun-format workflow config as a Prefect flow (cached stages, one MLflow run).

Examples::

    qlib-prefect run examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml
    qlib-prefect run workflow.yaml --experiment-name lgb --refresh
    qlib-prefect run workflow.yaml --plan        # stages, keys and cache status, without running

Each stage (dataset, train, one per record) is a Prefect task whose cache key is built from the config it
depends on, its upstream stages, the data fingerprint and the package version: an identical re-run is served
from cache; change only the strategy and only the backtest recomputes. ``--refresh`` recomputes everything.
``{{ QLIB_PREFECT_SAMPLE_DIR }}`` in a config is the bundled sample (materialised on first use) unless set.
The config is validated before anything starts: a typo fails at once with its file, key and a suggestion.
``elapsed`` is the wall time from the command's start (start-up included: what you waited).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run a qrun-format workflow config as a cached Prefect flow",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="workflow YAML (qrun format)")
    p.add_argument("--experiment-name", "--experiment_name", dest="experiment_name", default=None,
                   help="MLflow experiment (default 'workflow'; the config's experiment_name wins, as in qrun)")
    p.add_argument("--refresh", action="store_true", help="recompute every stage (ignore and overwrite caches)")
    p.add_argument("--plan", action="store_true", help="print each stage, its key and whether it is cached; exit")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE",
                   help="also write the run summary (stages, states, metrics, run id) as JSON")
    p.set_defaults(func=_cmd_run)


def print_plan(config: str) -> None:
    from qlib_prefect.orchestration import plan_workflow

    rows = plan_workflow(config)
    print(f"{'stage':<34} {'cached':<7} {'key':<16}  upstream")
    for r in rows:
        print(f"{r['stage']:<34} {'yes' if r['stored'] else 'no':<7} {r['key'][:16]}  {', '.join(r['upstream'])}")


def run_and_report(config: str, *, experiment_name: str | None, refresh: bool, json_out: str | None) -> int:
    from qlib_prefect.cli.preflight import command_elapsed
    from qlib_prefect.orchestration import qlib_workflow, text_report

    summary = qlib_workflow(config, experiment_name=experiment_name, refresh=refresh)
    summary = {**summary, "flow_elapsed_s": summary.get("elapsed_s"), "elapsed_s": command_elapsed()}
    print(text_report(summary))
    if json_out:
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, default=str)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qlib_prefect.cli.preflight import route_progress_logs, validate_config

    validate_config(args.config)  # a typo or a missing file fails here, before any server or heavy import
    route_progress_logs()  # before Prefect is imported
    from qlib_prefect.orchestration import apply_env_defaults
    from qlib_prefect.tweaks.prefect_server import print_server_line, start_api_server

    apply_env_defaults()  # before prefect is imported / the ephemeral server starts
    if args.plan:
        print_plan(args.config)
        return 0
    if start_api_server():  # boots while the libraries import and the data loads
        print_server_line()
    try:
        return run_and_report(args.config, experiment_name=args.experiment_name, refresh=args.refresh,
                              json_out=args.json_out)
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130
