"""``qlib-prefect rolling``: rolling retraining of a qrun-format config as a Prefect flow.

Examples::

    qlib-prefect rolling workflow.yaml --step 40 --rtype expanding
    qlib-prefect rolling workflow.yaml --step 20 --rtype sliding --max-workers 3
    qlib-prefect rolling workflow.yaml --step 40 --plan      # every window, its segments and cache status
    qlib-prefect rolling workflow.yaml --horizon 1 5 10      # multi-horizon (one task per label horizon)
    qlib-prefect rolling workflow.yaml --step 40 --on-workers  # one flow run per window on Prefect workers

The config's task is the template: ``RollingGen`` makes one task per test window of ``--step`` trading days
(``--horizon``: ``MultiHorizonGen`` one per horizon, rolled when ``--step`` is given). Each window is a cached
Prefect task and its own MLflow run (a child of the summary run, which holds the merged predictions and the
signal/portfolio analysis over the whole test span). Re-running after the data grows or the test end moves
trains only the new windows. ``--no-refit`` keeps the template's processor fit window for every window (qlib's
behaviour, qlib#1620).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("rolling", help="rolling / multi-horizon retraining as a cached Prefect flow",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="workflow YAML (qrun format); its task is the rolling template")
    p.add_argument("--step", type=int, default=None,
                   help="test window length in trading days (default 40; with --horizon: no rolling)")
    p.add_argument("--rtype", choices=("expanding", "sliding"), default="expanding",
                   help="expanding: train start fixed; sliding: every segment moves (default expanding)")
    p.add_argument("--trunc-days", type=int, default=None,
                   help="end the first window's train/valid segments this many days before the test start")
    p.add_argument("--horizon", type=int, nargs="+", default=None, metavar="H",
                   help="multi-horizon: label horizons in trading days (MultiHorizonGen)")
    p.add_argument("--label-leak-n", type=int, default=2, help="multi-horizon label leak days (default 2)")
    p.add_argument("--experiment-name", "--experiment_name", dest="experiment_name", default=None,
                   help="MLflow experiment (default 'rolling' / 'multi_horizon'; the config's wins, as in qrun)")
    p.add_argument("--max-workers", type=int, default=None, help="windows trained concurrently (default 2)")
    p.add_argument("--dask", action="store_true", help="run windows on a local Dask cluster (needs prefect-dask)")
    p.add_argument("--on-workers", action="store_true",
                   help="run each window as a flow run of the 'qlib-rolling-window/rolling-window' deployment on "
                        "Prefect workers (PREFECT_API_URL; shared QLIB_PREFECT_HOME and MLflow tracking server), "
                        "then write the summary here; see deployments/README.md")
    p.add_argument("--no-refit", dest="refit", action="store_false",
                   help="do not refit learning processors per window (qlib's behaviour)")
    p.add_argument("--refresh", action="store_true", help="retrain every window (ignore and overwrite caches)")
    p.add_argument("--plan", action="store_true", help="list every window, its segments and cache status; exit")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="also write the summary as JSON")
    p.set_defaults(func=_cmd_rolling)


def _print_plan(rows: list[dict[str, Any]]) -> None:
    print(f"{'window':<8} {'group':<8} {'train':<23} {'valid':<23} {'test':<23} {'cached':<7} key")
    for r in rows:
        seg = r["segments"]

        def s(k: str, seg: dict = seg) -> str:
            return "..".join(seg[k]) if k in seg else "-"

        print(f"{r['window']!s:<8} {r['group']:<8} {s('train'):<23} {s('valid'):<23} {s('test'):<23} "
              f"{'yes' if r['cached'] else 'no':<7} {r['key'][:16]}")
    n = sum(1 for r in rows if r["window"] != "summary")
    todo = sum(1 for r in rows if r["window"] != "summary" and not r["cached"])
    print(f"{n} windows, {todo} to train, {n - todo} cached")


def _report(summary: dict[str, Any]) -> None:
    print(f"{summary['kind']}: {len(summary['windows'])} windows, {summary['trained']} trained, "
          f"{summary['cached']} cached, {summary['elapsed_s']:.1f}s elapsed")
    for w in summary["windows"]:
        print(f"  window {w['window']:<3} {w.get('group', ''):<6} {w.get('test', ''):<24} {w['state']:<10} "
              f"run {w.get('run_id', '-')}")
    from qlib_prefect.orchestration import text_report

    print(text_report({**summary, "stages": {}}))


def _cmd_rolling(args: argparse.Namespace) -> int:
    from qlib_prefect.cli.preflight import command_elapsed, route_progress_logs, validate_config

    validate_config(args.config)  # a typo or a missing file fails here, before any server or heavy import
    route_progress_logs()  # before Prefect is imported
    from qlib_prefect.orchestration import apply_env_defaults
    from qlib_prefect.tweaks.prefect_server import print_server_line, start_api_server

    apply_env_defaults()  # before prefect is imported / the ephemeral server starts
    if not (args.plan or args.on_workers):
        if start_api_server():  # boots while the libraries import and the data loads
            print_server_line()
    from qlib_prefect.orchestration import plan_multi_horizon, plan_rolling, run_multi_horizon, run_rolling

    common = {"rtype": args.rtype, "trunc_days": args.trunc_days, "refit_processors": args.refit}
    if args.on_workers and (args.horizon or args.dask):
        print("error: --on-workers runs rolling windows only (not with --horizon or --dask)", file=sys.stderr)
        return 2
    if args.horizon:
        kw = {"horizon": args.horizon, "label_leak_n": args.label_leak_n, "step": args.step, **common}
        if args.plan:
            _print_plan(plan_multi_horizon(args.config, **kw))
            return 0
        run = lambda: run_multi_horizon(args.config, **kw, experiment_name=args.experiment_name,  # noqa: E731
                                        refresh=args.refresh, max_workers=args.max_workers, dask=args.dask)
    else:
        kw = {"step": 40 if args.step is None else args.step, **common}
        if args.plan:
            _print_plan(plan_rolling(args.config, **kw))
            return 0
        if args.on_workers:
            from qlib_prefect.orchestration import run_rolling_on_workers

            run = lambda: run_rolling_on_workers(args.config, **kw, experiment_name=args.experiment_name,  # noqa: E731
                                                 refresh=args.refresh)
        else:
            run = lambda: run_rolling(args.config, **kw, experiment_name=args.experiment_name,  # noqa: E731
                                      refresh=args.refresh, max_workers=args.max_workers, dask=args.dask)
    try:
        summary = run()
    except KeyboardInterrupt:  # pragma: no cover
        print("interrupted", file=sys.stderr)
        return 130
    summary = {**summary, "flow_elapsed_s": summary.get("elapsed_s"), "elapsed_s": command_elapsed()}
    _report(summary)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1, default=str)
    return 0
