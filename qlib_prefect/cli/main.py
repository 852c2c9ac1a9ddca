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
COMMAND_MODULES: tuple[str, ...] = ("data", "dataset", "demo", "run", "rolling", "task_pool", "serve", "online")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qlib-prefect", description=__doc__.splitlines()[0])
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
    from qlib_prefect.errors import QlibPrefectError

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
