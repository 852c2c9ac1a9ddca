"""``qlib-prefect dataset``: build a dataset's handler and dump its frames to parquet.

Examples::

    qlib-prefect dataset dump workflow_config_lightgbm_Alpha158.yaml alpha158.parquet
    qlib-prefect dataset dump workflow.yaml learn.parquet --data-key learn --segments train
    qlib-prefect dataset dump dataset.yaml out.parquet --provider-uri ~/qlib_data/us --region us --no-cache

CONFIG is a qrun workflow YAML (``task.dataset`` and ``qlib_init`` are used), or a YAML/JSON file holding a
dataset config (``{"class": "DatasetH", "kwargs": {"handler": ..., "segments": ...}}``) or ``{"dataset": ...}``.
The parquet file has the index ``(datetime, instrument)`` and ``"<group>/<name>"`` columns (e.g.
``feature/KMID``, ``label/LABEL0``), the segments concatenated in order.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["dump_dataset", "register"]


def _read_config(path: Path) -> tuple[dict, dict]:
    """``(dataset_config, qlib_init)`` from a workflow YAML or a dataset config file."""
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
            raw = load_config(path, validate=False).raw
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
) -> dict[str, Any]:
    """Build ``config`` (a DatasetH config) and write the ``segments`` of ``data_key`` to ``out`` (parquet).

    Returns a summary dict (rows, columns, build and total seconds, cache hit).
    """
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
    ds = init_instance_by_config(config, "qlib_prefect.data.dataset", _where="dataset")
    build = time.perf_counter() - t0
    if not isinstance(ds, DatasetH):
        raise ConfigError(f"dataset: {type(ds).__name__} is not a DatasetH")
    names = list(segments) if segments else list(ds.segments)
    unknown = [s for s in names if s not in ds.segments]
    if unknown:
        raise ConfigError(f"--segments: unknown segment(s) {unknown}; available: {list(ds.segments)}")
    frames = ds.prepare(names, col_set="__raw", data_key=data_key)
    df = pd.concat(frames) if len(frames) > 1 else frames[0]
    df = df.copy(deep=False)
    df.columns = ["/".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in df.columns]
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
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


def _cmd_dump(args: argparse.Namespace) -> int:
    import qlib_prefect

    ds_cfg, qlib_init = _read_config(Path(args.config).expanduser())
    if args.provider_uri:
        qlib_init["provider_uri"] = args.provider_uri
    if args.region:
        qlib_init["region"] = args.region
    qlib_init.pop("exp_manager", None)
    qlib_prefect.init(**qlib_init)
    summary = dump_dataset(
        ds_cfg, args.out, data_key=args.data_key, segments=args.segments, cache=False if args.no_cache else None
    )
    print(json.dumps(summary))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dataset", help="build a dataset (handler) and dump it", description=__doc__)
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True
    d = sub.add_parser("dump", help="write a dataset's frames to parquet")
    d.add_argument("config", metavar="CONFIG_OR_YAML", help="qrun workflow YAML or dataset config (YAML/JSON)")
    d.add_argument("out", metavar="OUT.parquet", help="output parquet file")
    d.add_argument("--data-key", default="infer", choices=["raw", "infer", "learn"], help="handler view (infer)")
    d.add_argument("--segments", nargs="+", metavar="NAME", help="segments to dump (default: all, in order)")
    d.add_argument("--provider-uri", help="override qlib_init.provider_uri")
    d.add_argument("--region", help="override qlib_init.region")
    d.add_argument("--no-cache", action="store_true", help="do not use the handler cache")
    d.set_defaults(func=_cmd_dump)
