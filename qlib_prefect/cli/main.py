"""``qlib-prefect`` entry point.

Each sub-command lives in its own module of this package exposing ``register(subparsers)``;
modules are imported lazily so ``qlib-prefect --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: sub-command modules (``qlib_prefect.cli.<name>``), each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ("data", "dataset", "demo", "run", "rolling", "task_pool", "serve")


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
