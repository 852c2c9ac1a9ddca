"""``qlib-prefect dataset``: build a dataset's handler and dump its frames to parquet.

Examples::

    qlib-prefect dataset dump examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml alpha158.parquet
    qlib-prefect dataset dump workflow.yaml learn.parquet --data-key learn --segments train
    qlib-prefect dataset dump dataset.yaml out.parquet --provider-uri ~/qlib_data/us --region us --no-cache
    qlib-prefect dataset dump workflow.yaml out.parquet --json summary.json   # also the summary as JSON

CONFIG is a qrun workflow YAML (``task.dataset`` and ``qlib_init`` are used), or a YAML/JSON file holding a
dataset config (``{"class": "DatasetH", "kwargs": {"handler": ..., "segments": ...}}``) or ``{"dataset": ...}``.
``{{ QLIB_PREFECT_SAMPLE_DIR }}`` is the bundled sample (materialised on first use, as for ``run``) unless set
or ``--provider-uri`` is given. The parquet file has the index ``(datetime, instrument)`` and
``"<group>/<name>"`` columns (e.g. ``feature/KMID``, ``label/LABEL0``), the segments concatenated in order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["dump_dataset", "register"]


def _read_config(path: Path, env: Mapping[str, str] | None = None) -> tuple[dict, dict]:
    """``(dataset_config, qlib_init)`` from a workflow YAML or a dataset config file (``env``: template
    variables, default ``os.environ``)."""
    from qlib_prefect.errors import ConfigError

    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON: {e}") from e
    else:
        from qlib_prefect.config.loader import load_config, parse_yaml

        raw = parse_yaml(text, source=str(path))
        if isinstance(raw, dict) and "task" in raw:
            raw = load_config(path, env=env, validate=False).raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    qlib_init = dict(raw.get("qlib_init") or {})
    if "task" in raw:
        ds = (raw.get("task") or {}).get("dataset")
        where = "task.dataset"
    elif "dataset" in raw:
        ds, where = raw["dataset"], "dataset"
    else:
        ds, where = raw, "<top level>"
    if not isinstance(ds, dict) or "class" not in ds:
        raise ConfigError(f"{path}: {where} is not a dataset class config (needs 'class' and 'kwargs')")
    return ds, qlib_init


def dump_dataset(
    config: dict,
    out: str | Path,
    *,
    data_key: str = "infer",
    segments: list[str] | None = None,
    cache: bool | None = None,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Build ``config`` (a DatasetH config) and write the ``segments`` of ``data_key`` to ``out`` (parquet).

    ``progress`` is called with a short description as each step starts. Returns a summary dict (rows,
    columns, build and total seconds, cache hit).
    """
    step = progress or (lambda _msg: None)
    import pandas as pd

    from qlib_prefect.data.dataset import DatasetH
    from qlib_prefect.errors import ConfigError
    from qlib_prefect.utils import init_instance_by_config

    if data_key not in ("raw", "infer", "learn"):
        raise ConfigError(f"--data-key must be raw, infer or learn, got {data_key!r}")
    config = dict(config)
    if cache is not None and isinstance(config.get("kwargs", {}).get("handler"), dict):
        kwargs = dict(config["kwargs"])
        handler = dict(kwargs["handler"])
        handler["kwargs"] = {**(handler.get("kwargs") or {}), "cache": cache}
        kwargs["handler"] = handler
        config["kwargs"] = kwargs
    t0 = time.perf_counter()
    handler = config.get("kwargs", {}).get("handler")
    name = handler.get("class", "handler") if isinstance(handler, dict) else type(handler).__name__
    step(f"building the {name} dataset (features computed or read from the handler cache)")
    ds = init_instance_by_config(config, "qlib_prefect.data.dataset", _where="dataset")
    build = time.perf_counter() - t0
    if not isinstance(ds, DatasetH):
        raise ConfigError(f"dataset: {type(ds).__name__} is not a DatasetH")
    names = list(segments) if segments else list(ds.segments)
    unknown = [s for s in names if s not in ds.segments]
    if unknown:
        raise ConfigError(f"--segments: unknown segment(s) {unknown}; available: {list(ds.segments)}")
    step(f"preparing segments {', '.join(names)} ({data_key})")
    frames = ds.prepare(names, col_set="__raw", data_key=data_key)
    df = pd.concat(frames) if len(frames) > 1 else frames[0]
    df = df.copy(deep=False)
    df.columns = ["/".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    step(f"writing {out} ({len(df):,} rows x {df.shape[1]} columns)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        df.to_parquet(tmp)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "out": str(out),
        "data_key": data_key,
        "segments": names,
        "rows": len(df),
        "cols": df.shape[1],
        "build_s": round(build, 3),
        "total_s": round(time.perf_counter() - t0, 3),
        "cache_hit": bool(getattr(ds.handler, "cache_hit", False)),
    }


@contextmanager
def _steps() -> Iterator[Callable[[str], None]]:
    """A ``progress`` callback for :func:`dump_dataset`, on stderr: a spinner naming the running step in a
    terminal, one line per step otherwise; each finished step is printed with its duration."""
    from rich.console import Console

    con = Console(stderr=True, highlight=False)
    state: dict[str, Any] = {"msg": None, "t": time.perf_counter()}

    def done() -> None:
        if state["msg"] is not None and con.is_terminal:
            con.print(f"  {state['msg']}: {time.perf_counter() - state['t']:.1f} s")

    if not con.is_terminal:
        def plain(msg: str) -> None:
            print(f"  {msg} ...", file=sys.stderr, flush=True)

        yield plain
        return
    with con.status("starting ...") as status:
        def update(msg: str) -> None:
            done()
            state.update(msg=msg, t=time.perf_counter())
            status.update(f"{msg} ...")

        yield update
        done()


def _cmd_dump(args: argparse.Namespace) -> int:
    import qlib_prefect
    from qlib_prefect.cli.preflight import fill_sample_env
    from qlib_prefect.data.sample import SAMPLE_DIR_ENV

    path = Path(args.config).expanduser()
    env = None
    if args.provider_uri:  # the data directory is given: it also stands for the sample variable
        env = {SAMPLE_DIR_ENV: args.provider_uri, **os.environ}
    else:
        fill_sample_env(path)
    ds_cfg, qlib_init = _read_config(path, env)
    if args.provider_uri:
        qlib_init["provider_uri"] = args.provider_uri
    if args.region:
        qlib_init["region"] = args.region
    qlib_init.pop("exp_manager", None)
    with _steps() as step:
        step(f"opening the data directory {qlib_init.get('provider_uri', '(default)')}")
        qlib_prefect.init(**qlib_init)
        summary = dump_dataset(ds_cfg, args.out, data_key=args.data_key, segments=args.segments,
                               cache=False if args.no_cache else None, progress=step)
    print(f"wrote {summary['out']}: {summary['rows']:,} rows x {summary['cols']} columns (segments "
          f"{', '.join(summary['segments'])}, data key {summary['data_key']}) in {summary['total_s']:.1f} s "
          f"(handler cache {'hit' if summary['cache_hit'] else 'miss'})")
    if args.json_out:
        if args.json_out == "-":
            print(json.dumps(summary))
        else:
            Path(args.json_out).expanduser().write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return 0


#: what ``--data-key`` selects (qlib's ``DataHandlerLP`` views)
DATA_KEY_HELP = ("which view of the handler: raw = the loaded features and labels, no processor applied; "
                 "infer = after the infer processors (what the model predicts on; the default); "
                 "learn = after the infer and learn processors (what the model is trained on, e.g. labels "
                 "normalised, rows without a label dropped)")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dataset", help="build a dataset (handler) and dump it", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True
    d = sub.add_parser("dump", help="write a dataset's frames to parquet", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("config", metavar="CONFIG_OR_YAML", help="qrun workflow YAML or dataset config (YAML/JSON)")
    d.add_argument("out", metavar="OUT.parquet", help="output parquet file")
    d.add_argument("--data-key", default="infer", choices=["raw", "infer", "learn"], help=DATA_KEY_HELP)
    d.add_argument("--segments", nargs="+", metavar="NAME", help="segments to dump (default: all, in order)")
    d.add_argument("--provider-uri",
                   help="override qlib_init.provider_uri (also fills {{ QLIB_PREFECT_SAMPLE_DIR }} when unset)")
    d.add_argument("--region", help="override qlib_init.region")
    d.add_argument("--no-cache", action="store_true", help="do not use the handler cache")
    d.add_argument("--json", dest="json_out", default=None, metavar="FILE",
                   help="also write the summary (rows, columns, timings, cache hit) as JSON ('-': to stdout)")
    d.set_defaults(func=_cmd_dump)
