"""``qlib-prefect data``: import CSVs, check a data directory, materialise the bundled sample.

Examples::

    qlib-prefect data import prices.csv.gz --to ~/qlib_data/us --symbol-col Name --market sp500=all-but:SPX
    qlib-prefect data import new_rows.csv --to ~/qlib_data/us --symbol-col Name --append
    qlib-prefect data check ~/qlib_data/us                       # report in ./quality/
    qlib-prefect data check ~/qlib_data/us --report reports/us   # report in reports/us/
    qlib-prefect data sample
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _market(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=SPEC (e.g. sp500=all-but:SPX), got {text!r}")
    return name.strip(), spec.strip()


def _fields(text: str) -> dict[str, str]:
    """``open,close,volume`` or ``open=Open,close=Adj Close``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        f, sep, col = part.partition("=")
        out[f.strip()] = col.strip() if sep else f.strip()
    if not out:
        raise argparse.ArgumentTypeError("--fields needs at least one field")
    return out


#: ``--jump-threshold`` of ``import`` and ``check`` (the quality report's ``jump`` issue)
JUMP_HELP = ("quality report: flag a close-to-close move larger than R (0.5 = 50%%; a missed split or a bad "
             "price; default 0.5)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="import CSV data, check a data directory, get the sample dataset",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    imp = sub.add_parser("import", help="CSV file/directory -> qlib-format directory")
    imp.add_argument("src", help="a CSV (.csv/.csv.gz) with a symbol column, or a directory of per-symbol CSVs")
    imp.add_argument("--to", dest="dest", required=True, help="target qlib data directory")
    imp.add_argument("--symbol-col", default=None, help="symbol column (default: auto, else the file stem)")
    imp.add_argument("--date-col", default="date", help="date column (default: date)")
    imp.add_argument("--date-format", default=None, help="strftime format of the dates (default: inferred)")
    imp.add_argument("--fields", type=_fields, default=None,
                     help="fields to import: 'open,close' or 'open=Open,close=Close' (default: OHLCV)")
    imp.add_argument("--market", action="append", type=_market, default=[], metavar="NAME=SPEC",
                     help="extra market file: SPEC is all, all-but:A,B or A,B,C (repeatable)")
    imp.add_argument("--append", action="store_true", help="add dates after the stored calendar end")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing non-empty directory")
    imp.add_argument("--no-normalize", action="store_true", help="keep symbols as written (no upper/._ mapping)")
    imp.add_argument("--jump-threshold", type=float, default=0.5, metavar="R", help=JUMP_HELP)
    imp.set_defaults(func=_cmd_import)

    chk = sub.add_parser("check", help="data quality report of a qlib-format directory")
    chk.add_argument("path", help="qlib data directory")
    chk.add_argument("--jump-threshold", type=float, default=0.5, metavar="R",
                     help=JUMP_HELP)
    chk.add_argument("--spike-threshold", type=float, default=0.25, metavar="R",
                     help="flag a one-day spike: a move larger than R in log terms (0.25 ~ 25%%) into a day and "
                          "back out of it the next day, net move under R/2 (a bad print; default 0.25)")
    chk.add_argument("--report", default=None, metavar="DIR",
                     help="directory for the report files (default ./quality/ in the working directory; the "
                          "data directory is never written to)")
    chk.add_argument("--no-save", action="store_true", help="print the report only, write no files")
    chk.add_argument("--max-issues", type=int, default=20, help="issue rows to print")
    chk.add_argument("--benchmark", default=None, help="also require this benchmark symbol (listed, with close data)")
    chk.set_defaults(func=_cmd_check)

    smp = sub.add_parser("sample", help="materialise the bundled S&P 500 sample and print its directory")
    smp.add_argument("--path", default=None, help="target directory (default: $QLIB_PREFECT_HOME/sample/...)")
    smp.set_defaults(func=_cmd_sample)


def _cmd_import(args: argparse.Namespace) -> int:
    from rich.console import Console

    from qlib_prefect.data.importer import import_csv
    from qlib_prefect.errors import DestinationNotEmptyError

    try:
        res = import_csv(
            args.src, args.dest, symbol_col=args.symbol_col, date_col=args.date_col, date_format=args.date_format,
            fields=args.fields, markets=dict(args.market), append=args.append, overwrite=args.overwrite,
            normalize_symbols=not args.no_normalize, jump_threshold=args.jump_threshold,
        )
    except DestinationNotEmptyError as e:
        raise DestinationNotEmptyError(e.dest, options="--append or --overwrite") from None
    con = Console()
    if res.quality is not None:
        res.quality.render(con, max_issues=10)
    msg = (f"{'appended to' if args.append else 'wrote'} {res.path}: {res.n_instruments} instruments x "
           f"{res.n_dates} dates ({res.new_dates} new), fields {', '.join(res.fields)}, markets "
           f"{', '.join(res.markets)}")
    if res.skipped_rows:
        msg += f"; skipped {res.skipped_rows} rows dated on or before the stored calendar end"
    print(msg)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Structural problems (damaged files, a missing benchmark) -> listed on stderr, exit 1; else the report."""
    from qlib_prefect.data.integrity import problems
    from qlib_prefect.data.quality import check_dir

    found = problems(args.path, benchmark=args.benchmark)
    if found:
        for msg in found:
            print(msg, file=sys.stderr)
        print(f"{args.path}: {len(found)} structural problem(s); fix them before using the directory", file=sys.stderr)
        return 1

    out = Path(args.report).expanduser() if args.report else Path.cwd() / "quality"
    rep = check_dir(args.path, jump_threshold=args.jump_threshold, spike_threshold=args.spike_threshold,
                    save=not args.no_save, out_dir=out)
    rep.render(max_issues=args.max_issues)
    if not args.no_save:
        print(f"report saved to {out}/")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from qlib_prefect.data.sample import sample_data_dir

    print(sample_data_dir(args.path))
    return 0
