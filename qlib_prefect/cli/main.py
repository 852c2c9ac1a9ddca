"""``qlib-prefect`` entry point.

Each sub-command lives in its own module of this package exposing ``register(subparsers)``;
modules are imported lazily so ``qlib-prefect --help`` stays fast.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence

__all__ = ["entry", "main"]

#: set to ``0`` to let the interpreter finalise normally at the end of a command
FAST_EXIT_ENV = "QLIB_PREFECT_FAST_EXIT"

#: sub-command modules (``qlib_prefect.cli.<name>``), each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ("data", "dataset", "demo", "run", "rolling", "task_pool", "serve", "report")


#: ``qlib-prefect --help``: what the tool is, then the commands a new user starts with.
DESCRIPTION = """\
Qlib's quant-research workflow (qrun YAML configs) as Prefect 3 flows with MLflow 3 tracking:
cached stages, one MLflow run per workflow, qlib's artifact names and numbers.

examples:
  qlib-prefect demo                                   # LightGBM + Alpha158 on the bundled S&P 500 sample
  qlib-prefect run workflow_config_lightgbm_Alpha158.yaml
  qlib-prefect run workflow.yaml --plan               # stages, cache keys and status, without running
  qlib-prefect rolling workflow.yaml --step 40        # rolling retraining, one cached task per window
  qlib-prefect data import prices.csv --to ~/qlib_data/us --symbol-col Name
  qlib-prefect data check ~/qlib_data/us              # data quality report (written to ./quality/)
  qlib-prefect dataset dump workflow.yaml out.parquet # a config's features and labels as parquet

'qlib-prefect COMMAND --help' describes each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlib-prefect", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"qlib_prefect.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"qlib_prefect.cli.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from qlib_prefect.cli.preflight import start_clock
    from qlib_prefect.errors import QlibPrefectError

    start_clock()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except QlibPrefectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return int(rc or 0)


def entry() -> None:
    """Console-script entry: :func:`main`, then a quick exit.

    Non-daemon threads are joined and the ``atexit`` handlers run (Prefect flushes its logs and events, the
    temporary API server stops) exactly as at a normal exit; only the interpreter's final teardown of every
    loaded module (about 1 s with Prefect, MLflow and pandas loaded) is skipped.
    """
    rc = main()
    if os.environ.get(FAST_EXIT_ENV, "1").strip().lower() in ("0", "false", "no"):
        sys.exit(rc)
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter does first at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()
