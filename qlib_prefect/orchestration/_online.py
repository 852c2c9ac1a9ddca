"""The daily online routine as a Prefect flow (``online_routine``), on top of :mod:`qlib_prefect.online`.

One routine day:

1. **ingest** (task): the new CSV drops (a folder of ``*.csv`` / ``*.csv.gz`` files, one long CSV each, read in name
   order; or one long CSV) are appended to the data directory with the incremental importer, on a staging copy.
   The gate: a file that is not CSV, a missing column, a duplicated ``(symbol, date)`` row, a date already in the
   calendar mixed with new ones, or a quality issue of the new dates (``nan``, ``non_positive``,
   ``negative_volume``) fails the routine with an error naming the file and its row; the staging copy is dropped,
   so the data directory, the models and the predictions are byte-identical to before. On success the staging copy
   replaces the data directory. Drops whose dates are all already in the calendar are skipped (re-running a day
   is harmless).
2. **routine** (task): ``OnlineManager.routine`` for the day with a :class:`RollingStrategy` rebuilt from the
   config: new windows trained when the rolling step is crossed, online models switched, online predictions
   extended to the new dates (PredUpdater), signals prepared. The first routine of an experiment without online
   models is ``first_train``. State lives in MLflow: the ``online_status`` tags and the runs' artifacts; no pickled
   manager.
3. **promote** (task): every model that went online is a registered MLflow model version (model name = the
   strategy name); alias ``champion`` on the online one.
4. **record** (task): one MLflow run per routine day in the experiment ``<name>_routine``, tags ``date`` and
   ``online_run_ids``, artifact ``signals.csv`` (the latest signal date) -- the queryable online history.

``config`` is a dict or a qrun-style YAML path. Not done yet (docs/online.md, "Routine flow"): tomorrow's
portfolio, per-step result caching, the ``online-routine`` deployment.
"""

from __future__ import annotations

import copy
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.orchestration._leanflow import LeanFlow
from qlib_prefect.orchestration._report import mlflow_ui_command

__all__ = ["GATE_CHECKS", "ingest_drops", "online_routine", "online_strategy", "routine_history"]

logger = logging.getLogger("qlib_prefect.orchestration")

#: quality checks that stop a routine when the new dates have them
GATE_CHECKS = ("nan", "non_positive", "negative_volume")
_CSV = (".csv", ".csv.gz")


def _online_section(config: dict) -> dict:
    try:
        sec = dict(config["online"])
        for key in ("name", "source"):
            sec[key]
        config["task"]
        config["qlib_init"]["provider_uri"]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"online config: missing key {e} (needs online.name, online.source, task, "
                          "qlib_init.provider_uri)") from None
    return sec


def online_strategy(config: dict) -> Any:
    """The :class:`RollingStrategy` of an online config (``online.name``, ``step``, ``rtype``, ``trunc_days``)."""
    from qlib_prefect.online.strategy import RollingStrategy
    from qlib_prefect.task.gen import RollingGen

    sec = _online_section(config)
    rg = RollingGen(step=int(sec.get("step", 20)), rtype=sec.get("rtype", RollingGen.ROLL_SD),
                    trunc_days=sec.get("trunc_days"))
    return RollingStrategy(sec["name"], copy.deepcopy(config["task"]), rg)


# ------------------------------------------------------------------------------------------------ ingest
def _drops(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"{source}: the online source is neither a CSV file nor a folder of CSV drops")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    for p in files:
        if not p.name.lower().endswith(_CSV):
            raise DataError(f"{p}: not a CSV file (a drop must be *.csv or *.csv.gz)")
    return files


def _check_drop(path: Path, frame: pd.DataFrame, symbol_col: str, date_col: str, cal_end: pd.Timestamp) -> bool:
    """Whether the drop has new dates; raises DataError naming the file and row on a bad drop."""
    for col in (symbol_col, date_col, "close"):
        if col not in frame.columns:
            raise DataError(f"{path}: missing column {col!r} (columns: {list(frame.columns)})")
    dates = pd.to_datetime(frame[date_col], errors="coerce")
    bad = dates.isna().to_numpy().nonzero()[0]
    if len(bad):
        raise DataError(f"{path}: row {bad[0] + 2}: cannot parse date {frame[date_col].iloc[bad[0]]!r}")
    dup = frame.assign(_d=dates).duplicated([symbol_col, "_d"], keep="first").to_numpy().nonzero()[0]
    if len(dup):
        i = dup[0]
        raise DataError(f"{path}: row {i + 2}: duplicated row for {frame[symbol_col].iloc[i]} on "
                        f"{dates.iloc[i]:%Y-%m-%d}")
    old = (dates <= cal_end).to_numpy()
    if old.all():
        return False
    if old.any():
        i = old.nonzero()[0][0]
        raise DataError(f"{path}: row {i + 2}: date {dates.iloc[i]:%Y-%m-%d} is already in the calendar "
                        f"(ends {cal_end:%Y-%m-%d}) while the drop also has new dates")
    return True


def ingest_drops(data_dir: str | Path, source: str | Path, *, symbol_col: str = "symbol",
                 date_col: str = "date", fields: list[str] | None = None) -> dict:
    """Append the new drops of ``source`` to ``data_dir`` (see the module docstring); all or nothing."""
    from qlib_prefect.data import storage as st
    from qlib_prefect.data.importer import import_csv

    data_dir, source = Path(data_dir).expanduser(), Path(source).expanduser()
    cal_end = st.read_calendar(data_dir)[-1]
    todo = []
    for path in _drops(source):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read CSV: {e}") from None
        if _check_drop(path, frame, symbol_col, date_col, cal_end):
            todo.append((path, frame))
            cal_end = pd.to_datetime(frame[date_col]).max()
    if not todo:
        return {"files": [], "new_dates": []}
    staging = data_dir.with_name(f".{data_dir.name}.staging-{uuid.uuid4().hex[:8]}")
    shutil.copytree(data_dir, staging)
    try:
        new_dates: list[str] = []
        for path, frame in todo:
            res = import_csv(path, staging, symbol_col=symbol_col, date_col=date_col, fields=fields, append=True,
                             quality=True)
            dates = pd.to_datetime(frame[date_col])
            issues = res.quality.issues if res.quality is not None else pd.DataFrame()
            if len(issues):
                issues = issues[issues["check"].isin(GATE_CHECKS) & issues["date"].isin(dates)]
            if len(issues):
                first = issues.iloc[0]
                sym = frame[symbol_col].astype(str).str.upper().str.replace(".", "_")
                row = ((sym == str(first["symbol"]).upper()) & (dates == first["date"])).to_numpy().nonzero()[0]
                where = f"row {row[0] + 2}" if len(row) else f"symbol {first['symbol']}"
                raise DataError(f"{path}: {where}: data quality check {first['check']!r} failed for "
                                f"{first['symbol']} on {first['date']:%Y-%m-%d} (field {first['field']!r}); "
                                f"{len(issues)} issue(s) on the new dates, nothing imported")
            new_dates.extend(d.date().isoformat() for d in sorted(dates.unique()))
        backup = data_dir.with_name(f".{data_dir.name}.old-{uuid.uuid4().hex[:8]}")
        data_dir.rename(backup)
        staging.rename(data_dir)
        shutil.rmtree(backup, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return {"files": [str(p) for p, _ in todo], "new_dates": new_dates}


# ------------------------------------------------------------------------------------------------ tasks
@task(name="online-ingest", cache_policy=NO_CACHE)
def _ingest_task(config: dict) -> dict:
    sec = _online_section(config)
    return ingest_drops(config["qlib_init"]["provider_uri"], sec["source"], symbol_col=sec.get("symbol_col", "symbol"),
                        date_col=sec.get("date_col", "date"), fields=sec.get("fields"))


@task(name="online-routine-step", cache_policy=NO_CACHE)
def _routine_task(config: dict, date: str | None) -> dict:
    from qlib_prefect.online.manager import OnlineManager
    from qlib_prefect.task.trainer import TrainerR

    strategy = online_strategy(config)
    before = {r.info["id"] for r in strategy.tool.online_models()}
    manager = OnlineManager(strategy, trainer=TrainerR(), begin_time=date)
    if not before:
        manager.first_train()
        manager.prepare_signals()
    else:
        manager.routine(date)
    online = strategy.tool.online_models()
    signals = manager.get_signals()
    last = signals.index.get_level_values("datetime").max()
    return {"date": manager.cur_time.date().isoformat(), "online": [r.info["id"] for r in online],
            "new": sorted({r.info["id"] for r in online} - before), "signal_date": last.date().isoformat(),
            "signal": signals.xs(last, level="datetime").rename("score").reset_index().to_dict("records")}


@task(name="online-promote", cache_policy=NO_CACHE)
def _promote_task(config: dict, step: dict) -> dict:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    client = R.exp_manager.client
    try:
        client.get_registered_model(name)
    except Exception:  # MLflow raises RestException / MlflowException for a missing model
        client.create_registered_model(name)
    versions = {v.run_id: v.version for v in client.search_model_versions(f"name = '{name}'")}
    for run_id in step["new"]:
        if run_id not in versions:
            run = client.get_run(run_id)
            versions[run_id] = client.create_model_version(name, source=f"{run.info.artifact_uri}/params.pkl",
                                                           run_id=run_id).version
    champion = step["online"][0]
    client.set_registered_model_alias(name, "champion", versions[champion])
    return {"model": name, "champion": champion, "version": str(versions[champion])}


@task(name="online-record", cache_policy=NO_CACHE)
def _record_task(config: dict, step: dict, ingest: dict, promo: dict) -> str:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    with R.start(experiment_name=f"{name}_routine", recorder_name=step["date"]):
        R.set_tags(date=step["date"], online_run_ids=",".join(step["online"]), champion=promo["champion"],
                   signal_date=step["signal_date"], new_dates=",".join(ingest["new_dates"]))
        rec = R.get_recorder()
        rec.save_objects(**{"signals.pkl": pd.DataFrame(step["signal"])})
        return rec.info["id"]


def routine_history(config: dict) -> pd.DataFrame:
    """The recorded routine days: ``date, online_run_ids, champion, signal_date, run_id`` (oldest first)."""
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    rows = []
    for rec in R.list_recorders(experiment_name=f"{name}_routine").values():
        t = rec.list_tags()
        rows.append({"date": t.get("date"), "online_run_ids": t.get("online_run_ids"), "champion": t.get("champion"),
                     "signal_date": t.get("signal_date"), "run_id": rec.info["id"]})
    cols = ["date", "online_run_ids", "champion", "signal_date", "run_id"]
    return pd.DataFrame(rows, columns=cols).sort_values("date", kind="stable").reset_index(drop=True)


def _as_config(config: Any) -> dict:
    """A config dict as given, or the raw dict of a qrun-style YAML file (top-level ``online`` section kept)."""
    if isinstance(config, dict):
        return config
    from qlib_prefect.orchestration._leanflow import load_workflow_config

    return load_workflow_config(str(config)).raw


def _routine(config: Any, date: str | None = None) -> dict:
    config = _as_config(config)
    ingest = _ingest_task(config)
    step = _routine_task(config, date)
    promo = _promote_task(config, step)
    run_id = _record_task(config, step, ingest, promo)
    summary = {"date": step["date"], "new_dates": ingest["new_dates"], "online": step["online"], "new": step["new"],
               "champion": promo["champion"], "signal_date": step["signal_date"], "routine_run_id": run_id}
    from qlib_prefect.workflow import R

    summary["tracking_uri"] = R.get_uri()
    summary["mlflow_ui_command"] = mlflow_ui_command(summary["tracking_uri"])
    _routine_artifact(summary, step["signal"])
    return summary


def routine_text(summary: dict[str, Any]) -> str:
    """The routine day as the CLI prints it (the same rows as the Prefect artifact)."""
    rows = [("routine day", summary["date"]), ("new data dates", ", ".join(summary["new_dates"]) or "none"),
            ("online models (MLflow run ids)", ", ".join(summary["online"])),
            ("trained today", ", ".join(summary["new"]) or "none"), ("champion", summary["champion"]),
            ("signal date", summary["signal_date"]), ("routine run", summary["routine_run_id"])]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join([*lines, f"{'look at it with':<{width}}  {summary['mlflow_ui_command']}"])


def _routine_artifact(summary: dict[str, Any], signal: list[dict[str, Any]]) -> None:
    """A markdown artifact of the flow run: the day, the models online, the top of the signal."""
    try:
        from prefect.artifacts import create_markdown_artifact

        top = sorted(signal, key=lambda r: -float(r["score"]))[:10]
        md = ["# qlib online routine", "", "| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in (
            ("routine day", summary["date"]), ("new data dates", ", ".join(summary["new_dates"]) or "none"),
            ("online models", ", ".join(f"`{r}`" for r in summary["online"])),
            ("trained today", ", ".join(f"`{r}`" for r in summary["new"]) or "none"),
            ("champion", f"`{summary['champion']}`"), ("signal date", summary["signal_date"]),
            ("routine run", f"`{summary['routine_run_id']}`"))]
        md += ["", f"Top {len(top)} scores of {summary['signal_date']}:", "", "| instrument | score |", "|---|---:|"]
        md += [f"| {r['instrument']} | {float(r['score']):.6f} |" for r in top]
        md += ["", f"Open with `{summary['mlflow_ui_command']}`"]
        create_markdown_artifact(markdown="\n".join(md), key="qlib-online-routine",
                                 description=f"online routine {summary['date']}")
    except Exception as e:  # the MLflow runs hold the results
        logger.warning("could not create the Prefect artifact: %s", e)


def _prepare_online(config: Any, *args: Any, **kwargs: Any) -> None:
    """Before the flow run: validate the config and init the data and the MLflow store."""
    import qlib_prefect

    config = _as_config(config)
    _online_section(config)
    qlib_prefect.init(**config["qlib_init"])


online_routine = LeanFlow(
    _routine, prepare=_prepare_online, name="qlib-online-routine", persist_result=False,
    validate_parameters=False, log_prints=False,
    description="One online routine day: ingest the CSV drops (quality gate), update predictions, retrain when "
                "due, switch the online models, promote the champion, record the day.",
)
