"""``qlib-prefect report``: the research report of a run, run comparison, per-factor analysis.

Examples::

    qlib-prefect report RUN_ID                      # (re)build report.html + ledgers of a run and log them into it
    qlib-prefect report RUN_ID --out ./rep --no-log # only write them to ./rep
    qlib-prefect report compare RUN_A RUN_B --out compare.html
    qlib-prefect report compare --experiment workflow --tag qlib_prefect.version=0.4.0
    qlib-prefect report factors examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml --out factors

``--uri`` is the MLflow tracking URI (default: ``$QLIB_PREFECT_MLFLOW_URI`` or ``./mlruns/mlflow.db``). A run's
report needs the run's data for its IC-decay section: the data directory comes from the run's ``config``
artifact (``qlib_init.provider_uri``) or ``--provider-uri``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_SAMPLE_ENV = "QLIB_PREFECT_SAMPLE_DIR"


def _init_data(provider_uri: str | None, qlib_init: dict[str, Any] | None = None) -> bool:
    """Initialise the data provider (no experiment manager); False when there is no usable data directory."""
    import qlib_prefect

    init = {k: v for k, v in (qlib_init or {}).items() if k in ("provider_uri", "region")}
    if provider_uri:
        init["provider_uri"] = provider_uri
    uri = init.get("provider_uri")
    if not uri or not Path(str(uri)).expanduser().is_dir():
        return False
    qlib_prefect.init(**init)
    return True


def _cmd_run(args: argparse.Namespace) -> int:
    from qlib_prefect.report import build_run_report
    from qlib_prefect.workflow import MLflowRecorder

    rec = MLflowRecorder.from_run_id(args.run_id, args.uri, async_logging=False)
    config = None
    try:
        config = rec.load_object("config")
    except Exception:  # runs made by the trainer keep only the task
        config = None
    qlib_init = config.get("qlib_init") if isinstance(config, dict) else None
    if not _init_data(args.provider_uri, qlib_init):
        print("note: no data directory (--provider-uri): the IC-decay section will be empty", file=sys.stderr)
    path = build_run_report(rec, config=config, output=args.out, log=not args.no_log)
    print(f"report: {path}")
    if not args.no_log:
        from qlib_prefect.report import report_link

        print(f"logged into run {rec.id}: {report_link(rec)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from qlib_prefect.errors import ConfigError
    from qlib_prefect.report.compare import compare_runs, select_recorders

    if not args.run_ids and args.experiment is None and not args.tag:
        raise ConfigError("report compare: give RUN_IDs, --experiment or --tag")
    recs = select_recorders(run_ids=args.run_ids, experiment=args.experiment, tags=args.tag, uri=args.uri)
    out = compare_runs(recs, args.out)
    print(f"comparison of {len(recs)} runs: {out}")
    return 0


def _cmd_factors(args: argparse.Namespace) -> int:
    from qlib_prefect.config.loader import load_config
    from qlib_prefect.data.dataset import DatasetH
    from qlib_prefect.errors import ConfigError
    from qlib_prefect.report.factors import write_factor_report
    from qlib_prefect.utils import init_instance_by_config

    path = Path(args.config).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if _SAMPLE_ENV not in os.environ and _SAMPLE_ENV in path.read_text(encoding="utf-8"):
        from qlib_prefect.data.sample import sample_data_dir

        os.environ[_SAMPLE_ENV] = str(sample_data_dir())
    cfg = load_config(path, validate="structure")
    if not _init_data(args.provider_uri, dict(cfg.raw.get("qlib_init") or {})):
        raise ConfigError(f"{path}: qlib_init.provider_uri is not a data directory (or give --provider-uri)")
    ds = init_instance_by_config(cfg.task["dataset"], "qlib_prefect.data.dataset", _where="task.dataset")
    if not isinstance(ds, DatasetH):
        raise ConfigError(f"{path}: task.dataset is a {type(ds).__name__}, not a DatasetH")
    horizons = [int(h) for h in args.horizons.split(",")]
    paths = write_factor_report(ds, args.out, segment=args.segment, horizons=horizons,
                                title=f"Factor analysis: {path.name} ({args.segment})")
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0


def _parsers() -> dict[str, argparse.ArgumentParser]:
    uri = {"help": "MLflow tracking URI (default: $QLIB_PREFECT_MLFLOW_URI or ./mlruns/mlflow.db)"}
    run = argparse.ArgumentParser(prog="qlib-prefect report", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("run_id", metavar="RUN_ID", help="MLflow run id")
    run.add_argument("--uri", **uri)
    run.add_argument("--out", metavar="DIR", help="also keep report.html and ledgers/ in DIR")
    run.add_argument("--no-log", action="store_true", help="do not log the files into the run")
    run.add_argument("--provider-uri", help="data directory (default: the run's qlib_init.provider_uri)")
    run.set_defaults(func=_cmd_run)
    cmp = argparse.ArgumentParser(prog="qlib-prefect report compare",
                                  description="Metrics side by side and overlaid curves of several runs.")
    cmp.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="MLflow run ids")
    cmp.add_argument("--experiment", help="every run of this experiment (filtered by --tag)")
    cmp.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="runs with this tag")
    cmp.add_argument("--uri", **uri)
    cmp.add_argument("--out", default="compare.html", metavar="FILE.html", help="output file (compare.html)")
    cmp.set_defaults(func=_cmd_compare)
    fac = argparse.ArgumentParser(prog="qlib-prefect report factors",
                                  description="IC, Rank IC and IC decay of every feature column of a config's "
                                              "handler: factors.csv, factors.parquet, factors.html.")
    fac.add_argument("config", metavar="CONFIG", help="qrun workflow YAML")
    fac.add_argument("--segment", default="test", help="dataset segment to analyse (test)")
    fac.add_argument("--horizons", default="1,2,3,5,10,20", help="label horizons in days (1,2,3,5,10,20)")
    fac.add_argument("--out", default="factors", metavar="DIR", help="output folder (factors)")
    fac.add_argument("--provider-uri", help="override qlib_init.provider_uri")
    fac.set_defaults(func=_cmd_factors)
    return {"run": run, "compare": cmp, "factors": fac}


def _dispatch(args: argparse.Namespace) -> int:
    argv = list(args.report_args)
    parsers = _parsers()
    if not argv or argv[0] in ("-h", "--help"):
        parsers["run"].print_help()
        print("\nsub-commands: report compare --help, report factors --help")
        return 0 if argv else 2
    log = logging.getLogger("qlib_prefect.report")
    if not log.handlers and not logging.getLogger().handlers:  # show the progress lines off a terminal too
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    kind = argv[0] if argv[0] in ("compare", "factors") else "run"
    ns = parsers[kind].parse_args(argv[1:] if kind != "run" else argv)
    return int(ns.func(ns) or 0)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="report of a run (HTML tear sheet, ledgers), compare, factors",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                              add_help=False)
    p.add_argument("report_args", nargs=argparse.REMAINDER, metavar="RUN_ID | compare ... | factors ...")
    p.set_defaults(func=_dispatch)
