"""``qlib-prefect demo``: the LightGBM + Alpha158 example on the bundled S&P 500 sample, end to end.

Materialises the bundled sample as a qlib-format directory (once), runs
``examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml`` on it as a Prefect flow and prints the
key metrics and the ``mlflow ui`` command. A second ``demo`` is served from the stage cache in seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["example_config", "register"]

EXAMPLE = Path("examples") / "benchmarks" / "LightGBM" / "workflow_config_lightgbm_Alpha158.yaml"


def example_config(name: str = EXAMPLE.name) -> Path:
    """Path of an example config (next to the source checkout, else under the working directory)."""
    rel = EXAMPLE.with_name(name)
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (base / rel).is_file():
            return base / rel
    from qlib_prefect.errors import ConfigError

    raise ConfigError(f"example config {rel} not found (run from the qlib-prefect source checkout)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the LightGBM/Alpha158 example on the bundled sample",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help=f"another example config (default {EXAMPLE})")
    p.add_argument("--refresh", action="store_true", help="recompute every stage")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from qlib_prefect.cli.preflight import route_progress_logs, validate_config

    config = Path(args.config) if args.config else example_config()
    validate_config(config)  # fails before any server starts; materialises the sample when the config uses it
    route_progress_logs()  # before Prefect is imported
    from qlib_prefect.orchestration import apply_env_defaults
    from qlib_prefect.tweaks.prefect_server import print_server_line, start_api_server

    apply_env_defaults()
    if start_api_server():  # boots while the libraries import and the data loads
        print_server_line()
    from qlib_prefect.cli.run import run_and_report
    from qlib_prefect.config.settings import get_settings

    data = get_settings().sample_dir
    print(f"running {config}" + (f" on {data}" if data else ""), flush=True)
    return run_and_report(str(config), experiment_name=None, refresh=args.refresh, json_out=None)
