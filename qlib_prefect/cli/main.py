"""``qlib-prefect`` entry point.

Each sub-command lives in its own module of this package exposing ``register(subparsers)``;
modules are imported lazily so ``qlib-prefect --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import traceback
from collections.abc import Sequence

__all__ = ["entry", "main"]

#: sub-command modules (``qlib_prefect.cli.<name>``), each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ("data", "dataset", "demo", "run", "rolling", "task_pool", "serve", "report",
                                     "cache", "online")


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
    parser.add_argument("--traceback", action="store_true",
                        help="on an error, print the full Python traceback (default: a one-paragraph message; "
                             "exit code 2 for configuration, data and stage errors)")
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
    show_traceback = bool(getattr(args, "traceback", False))
    if not show_traceback:
        quiet_own_tracebacks()
    try:
        rc = args.func(args)
    except QlibPrefectError as e:
        if show_traceback:
            traceback.print_exc(file=sys.stderr)
        print(error_paragraph(e, hint=not show_traceback), file=sys.stderr)
        return ERROR_EXIT_CODE
    return int(rc or 0)


#: exit code of a command ended by one of our own errors (:class:`~qlib_prefect.errors.QlibPrefectError`: a bad
#: config, bad data, a stage's wrapped library error); 1 is left to commands reporting findings (``doctor``)
ERROR_EXIT_CODE = 2

#: the loggers Prefect's engines report a failed flow or task run on (with the traceback)
_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


def error_paragraph(exc: BaseException, *, hint: bool = True) -> str:
    """``error: <message>`` (the message names the file, key or date: what to change) and, with ``hint``, how to
    see the traceback, as one paragraph."""
    text = str(exc).strip() or type(exc).__name__
    return f"error: {text}" + ("\n(rerun with --traceback for the full Python traceback)" if hint else "")


def _own_error(exc: BaseException | None) -> bool:
    from qlib_prefect.errors import QlibPrefectError

    return isinstance(exc, QlibPrefectError)


class _OwnErrorFilter(logging.Filter):
    """Drops the traceback from Prefect's "task/flow run failed" log lines when the error is one of ours (its
    message already says what and where); the line itself stays. Library errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        if info and info is not True and _own_error(info[1]):
            record.exc_info, record.exc_text = None, None
            record.msg = f"{record.msg} (traceback: rerun with --traceback)"
        return True


def quiet_own_tracebacks() -> None:
    """Install :class:`_OwnErrorFilter` on Prefect's engine loggers (plain :mod:`logging`; imports no Prefect)."""
    for name in _ENGINE_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _OwnErrorFilter) for f in log.filters):
            log.addFilter(_OwnErrorFilter())


def entry() -> None:
    """Console-script entry: :func:`main`, then a quick exit (:mod:`qlib_prefect.tweaks.interpreter`).

    SIGTERM is turned into an interrupt (Prefect's own handler takes over while a flow runs), so Ctrl-C and
    SIGTERM both end the command promptly with the runs marked failed/crashed (rc 130 / 143).
    """
    from qlib_prefect.tweaks.interpreter import arm_abort_exit, exit_process

    signal.signal(signal.SIGTERM, _terminate)
    arm_abort_exit()
    try:
        rc = main()
    except KeyboardInterrupt as e:
        print("interrupted", file=sys.stderr)
        rc = 143 if isinstance(e, Terminated) else 130
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as e:  # a signal turned into an exception by a library (Prefect's TerminationSignal)
        print(f"terminated ({type(e).__name__})", file=sys.stderr)
        rc = 143
    exit_process(rc, interrupted=rc in (130, 143))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` in the main thread."""


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(f"signal {signum}")


if __name__ == "__main__":  # pragma: no cover
    entry()
