"""The daily online routine as a Prefect flow (``online_routine``), on top of :mod:`qlib_prefect.online`.

One routine day:

1. **ingest** (task): the new CSV drops (a folder of ``*.csv`` / ``*.csv.gz`` files, one long CSV each, read in name
   order; or one long CSV) are checked on their CSV frames, then appended in place with the incremental importer
   (its journaled transaction: after a kill the directory reads exactly as before or as after the append). The
   gate, before anything is written: a file that is not CSV, a missing column, a duplicated ``(symbol, date)`` row,
   a date already in the calendar mixed with new ones, or a quality issue of the new rows (``nan``,
   ``non_positive``, ``negative_volume``, computed as the data quality report does) fails the routine with an error
   naming the file and its row; the data directory, the models and the predictions stay byte-identical. Drops
   whose dates are all already in the calendar are skipped (re-running a day is harmless).
2. **routine** (cached task): ``OnlineManager.routine`` for the day with a :class:`RollingStrategy` rebuilt from
   the config: new windows trained when the rolling step is crossed, online models switched, online predictions
   extended to the new dates (PredUpdater), signals prepared. The first routine of an experiment without online
   models is ``first_train``. The models trained today (online now, not in the previous routine day's
   ``online_run_ids``) are registered MLflow model versions with the alias ``challenger``. State lives in MLflow:
   the ``online_status`` tags and the runs' artifacts; no pickled manager.
3. **promote** (cached task): every online model is a registered version (model name = the strategy name); alias
   ``champion`` on the online one; ``challenger`` dropped once its model is online.
4. **portfolio** (cached task): tomorrow's target portfolio and orders
   (:func:`qlib_prefect.online.portfolio.target_portfolio`) from ``online.strategy`` on the latest signal and the
   holdings of the previous routine day's run (``portfolio/holdings.json``).
5. **record** (cached task): one MLflow run per routine day in the experiment ``<name>_routine``, tags ``date``,
   ``online_run_ids``, ``champion`` ..., artifacts ``signals.pkl`` (the latest signal date) and ``portfolio/``
   (``target.parquet``, ``target.csv``, ``holdings.json``) -- the queryable online history; plus Prefect markdown
   and table artifacts.

Cache keys (:func:`_keys`): config hash (tracking URI and data directory included), routine day, previous routine
run, data fingerprint after the ingest, ``qlib_init`` settings, code version, chained per step. A re-run of a day
recomputes nothing; every step is idempotent when re-run after a kill -9. ``config`` is a dict or a qrun-style
YAML path (docs/online.md, "Routine flow").
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.orchestration._leanflow import LeanFlow
from qlib_prefect.orchestration._report import mlflow_ui_command

__all__ = ["GATE_CHECKS", "ingest_drops", "online_routine", "online_strategy", "portfolio_text", "routine_history",
           "routine_portfolio", "routine_text"]

logger = logging.getLogger("qlib_prefect.orchestration")

#: quality checks that stop a routine when the new dates have them
GATE_CHECKS = ("nan", "non_positive", "negative_volume")
_CSV = (".csv", ".csv.gz")
_BASE = ("open", "high", "low", "close", "volume")  # as data.quality: a row with all of them NaN is a gap


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


def _field_columns(path: Path, frame: pd.DataFrame, fields: Any) -> dict[str, str]:
    """``{qlib field: CSV column}`` the importer will read (``fields`` list / mapping, default OHLCV), matched
    exactly then case-insensitively, as the importer does; a missing one raises DataError naming the file."""
    from qlib_prefect.data.importer import DEFAULT_FIELDS

    fmap = dict(fields) if isinstance(fields, dict) else {f: f for f in (fields or DEFAULT_FIELDS)}
    cols = [str(c) for c in frame.columns]
    low = {c.lower(): c for c in cols}
    out = {}
    for f, c in fmap.items():
        col = c if c in cols else low.get(str(c).lower())
        if col is None:
            raise DataError(f"{path}: missing column {c!r} (columns: {cols})")
        out[str(f).lower().lstrip("$")] = col
    return out


def _gate_quality(path: Path, frame: pd.DataFrame, fcols: dict[str, str], symbol_col: str,
                  date_col: str) -> None:
    """The gate's quality checks (:data:`GATE_CHECKS`) on the drop's rows, as the data quality report computes
    them (float32, a row whose OHLCV are all NaN is a gap, not ``nan``), before anything is imported."""
    vals = {}
    for f, c in fcols.items():
        v = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(all="ignore"):
            vals[f] = v.astype(np.float32)
    base = [f for f in _BASE if f in vals]
    has_row = ~np.logical_and.reduce([np.isnan(vals[f]) for f in base]) if base else np.ones(len(frame), bool)
    found: list[tuple[str, str, np.ndarray]] = []
    for f in sorted(vals, key=lambda x: (_BASE.index(x) if x in _BASE else len(_BASE), x)):
        if f != "change":
            found.append(("nan", f, has_row & np.isnan(vals[f])))
    with np.errstate(invalid="ignore"):
        found += [("non_positive", f, has_row & (vals[f] <= 0)) for f in _BASE[:4] if f in vals]
        if "volume" in vals:
            found.append(("negative_volume", "volume", has_row & (vals["volume"] < 0)))
    n_issues = sum(int(m.sum()) for _, _, m in found)
    for check, fld, mask in found:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            sym = str(frame[symbol_col].iloc[i]).strip().upper().replace(".", "_")
            day = pd.Timestamp(frame[date_col].iloc[i])
            raise DataError(f"{path}: row {i + 2}: data quality check {check!r} failed for {sym} on "
                            f"{day:%Y-%m-%d} (field {fld!r}); {n_issues} issue(s) on the new dates, nothing "
                            "imported")


def ingest_drops(data_dir: str | Path, source: str | Path, *, symbol_col: str = "symbol",
                 date_col: str = "date", fields: list[str] | None = None) -> dict:
    """Append the new drops of ``source`` to ``data_dir`` (see the module docstring); all or nothing.

    Every drop is checked on its CSV frame first (columns, dates, duplicates, the gate's quality checks); only
    then is anything written, in place, by the importer's journaled append (one transaction for all the drops)."""
    from qlib_prefect.data import storage as st
    from qlib_prefect.data.importer import import_csv, import_frame

    data_dir, source = Path(data_dir).expanduser(), Path(source).expanduser()
    cal_end = st.read_calendar(data_dir)[-1]
    todo = []
    for path in _drops(source):
        try:
            frame = pd.read_csv(path, low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read CSV: {e}") from None
        if _check_drop(path, frame, symbol_col, date_col, cal_end):
            fcols = _field_columns(path, frame, fields)
            frame = frame.assign(**{date_col: pd.to_datetime(frame[date_col])})
            _gate_quality(path, frame, fcols, symbol_col, date_col)
            todo.append((path, frame))
            cal_end = frame[date_col].max()
    if not todo:
        return {"files": [], "new_dates": []}
    if len(todo) == 1:  # the importer's own messages name the file and line
        import_csv(todo[0][0], data_dir, symbol_col=symbol_col, date_col=date_col, fields=fields, append=True,
                   quality=False)
    else:  # one journaled transaction for every drop: all or nothing
        import_frame(pd.concat([f for _, f in todo], ignore_index=True), data_dir, symbol_col=symbol_col,
                     date_col=date_col, fields=fields, append=True, quality=False,
                     source=", ".join(str(p) for p, _ in todo))
    new_dates = [d.date().isoformat() for _, f in todo for d in sorted(f[date_col].unique())]
    return {"files": [str(p) for p, _ in todo], "new_dates": new_dates}


# ------------------------------------------------------------------------------------------------ tasks
@task(name="online-ingest", cache_policy=NO_CACHE)
def _ingest_task(config: dict) -> dict:
    """Never cached: its effect is on the data directory; drops already in the calendar are skipped instead."""
    sec = _online_section(config)
    return ingest_drops(config["qlib_init"]["provider_uri"], sec["source"], symbol_col=sec.get("symbol_col", "symbol"),
                        date_col=sec.get("date_col", "date"), fields=sec.get("fields"))


def _cached(name: str) -> Any:
    """A routine step cached on its precomputed key (``stage_key`` argument), results as JSON in the results dir."""
    from qlib_prefect.orchestration._cache import StageCachePolicy
    from qlib_prefect.orchestration._leanflow import results_dir

    def deco(fn: Any) -> Any:
        return task(fn, name=name, cache_policy=StageCachePolicy(), persist_result=True,
                    result_storage=results_dir(), result_serializer="json", retries=0)

    return deco


def _registry_versions(client: Any, name: str) -> dict[str, str]:
    try:
        client.get_registered_model(name)
    except Exception:  # MLflow raises RestException / MlflowException for a missing model
        client.create_registered_model(name)
    return {v.run_id: str(v.version) for v in client.search_model_versions(f"name = '{name}'")}


def _register(client: Any, name: str, run_ids: list[str]) -> dict[str, str]:
    """A registered model version for every run of ``run_ids`` (existing ones kept): ``{run_id: version}``."""
    versions = _registry_versions(client, name)
    for run_id in run_ids:
        if run_id not in versions:
            run = client.get_run(run_id)
            versions[run_id] = str(client.create_model_version(name, source=f"{run.info.artifact_uri}/params.pkl",
                                                               run_id=run_id).version)
    return versions


def _routine_step(config: dict, date: str, previous_online: list[str] | None, stage_key: str) -> dict:
    from qlib_prefect.online.manager import OnlineManager
    from qlib_prefect.task.trainer import TrainerR
    from qlib_prefect.workflow import R

    strategy = online_strategy(config)
    current = [r.info["id"] for r in strategy.tool.online_models()]
    before = set(current if previous_online is None else previous_online)
    manager = OnlineManager(strategy, trainer=TrainerR(), begin_time=date)
    if not current:
        manager.first_train()
        manager.prepare_signals()
    else:
        manager.routine(date)
    _hook("after-routine")
    online = [r.info["id"] for r in strategy.tool.online_models()]
    new = sorted(set(online) - before)
    if new:  # the freshly trained models: registered, alias ``challenger`` until the promote step moves champion
        name = _online_section(config)["name"]
        client = R.exp_manager.client
        versions = _register(client, name, new)
        client.set_registered_model_alias(name, "challenger", versions[new[-1]])
    signals = manager.get_signals()
    last = signals.index.get_level_values("datetime").max()
    return {"date": manager.cur_time.date().isoformat(), "online": online, "new": new,
            "signal_date": last.date().isoformat(),
            "signal": signals.xs(last, level="datetime").rename("score").reset_index().to_dict("records")}


def _promote_step(config: dict, step: dict, stage_key: str) -> dict:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    client = R.exp_manager.client
    versions = _register(client, name, step["online"])
    champion = step["online"][0]
    _hook("before-champion")
    client.set_registered_model_alias(name, "champion", versions[champion])
    try:  # the challenger went online: one alias less
        if client.get_model_version_by_alias(name, "challenger").run_id in step["online"]:
            client.delete_registered_model_alias(name, "challenger")
    except Exception:  # no challenger alias
        pass
    return {"model": name, "champion": champion, "version": versions[champion]}


def _portfolio_spec(config: dict) -> dict | None:
    """``{strategy, account, exchange_kwargs}`` of ``online.strategy`` (or the template's PortAnaRecord)."""
    sec = _online_section(config)
    strategy, account, ek = sec.get("strategy"), sec.get("account"), sec.get("exchange_kwargs")
    records = config["task"].get("record") or []
    for rec in records if isinstance(records, list) else [records]:
        if isinstance(rec, dict) and rec.get("class") == "PortAnaRecord":
            port = (rec.get("kwargs") or {}).get("config") or {}
            strategy = strategy or port.get("strategy")
            bt = port.get("backtest") or {}
            account = account if account is not None else bt.get("account")
            ek = ek if ek is not None else bt.get("exchange_kwargs")
    if strategy is None:
        return None
    strategy = copy.deepcopy(strategy)
    if isinstance(strategy, dict):
        strategy["kwargs"] = {k: v for k, v in (strategy.get("kwargs") or {}).items() if k != "signal"}
    return {"strategy": strategy, "account": float(1e8 if account is None else account),
            "exchange_kwargs": dict(ek or {})}


def _portfolio_step(config: dict, step: dict, previous_run: str | None, stage_key: str) -> dict | None:
    from qlib_prefect.online.portfolio import initial_holdings, target_portfolio

    spec = _portfolio_spec(config)
    if spec is None:
        return None
    holdings = _load_holdings(config, previous_run) if previous_run else None
    holdings = holdings or initial_holdings(spec["account"])
    signal = pd.DataFrame(step["signal"]).set_index("instrument")["score"]
    table, target = target_portfolio(signal, step["signal_date"], holdings, spec["strategy"],
                                     spec["exchange_kwargs"])
    return {"table": json.loads(table.to_json(orient="records")), "holdings": target, "previous_run": previous_run}


def _record_step(config: dict, step: dict, new_dates: list[str], promo: dict, port: dict | None,
                 stage_key: str) -> str:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    exp = f"{name}_routine"
    for rec in R.list_recorders(experiment_name=exp, status="FINISHED").values():  # a killed re-run: reuse
        if rec.list_tags().get("routine_key") == stage_key:
            return rec.info["id"]
    with R.start(experiment_name=exp, recorder_name=step["date"]):
        R.set_tags(date=step["date"], online_run_ids=",".join(step["online"]), champion=promo["champion"],
                   champion_version=promo["version"], trained=",".join(step["new"]),
                   signal_date=step["signal_date"], new_dates=",".join(new_dates), routine_key=stage_key)
        rec = R.get_recorder()
        rec.save_objects(**{"signals.pkl": pd.DataFrame(step["signal"])})
        if port is not None:
            table = _portfolio_frame(port)
            with tempfile.TemporaryDirectory() as tmp:
                d = Path(tmp) / "portfolio"
                d.mkdir()
                table.to_parquet(d / "target.parquet", index=False)
                table.to_csv(d / "target.csv", index=False)
                (d / "holdings.json").write_text(json.dumps(port["holdings"], indent=1, sort_keys=True))
                rec.log_artifacts(d, "portfolio")
        return rec.info["id"]


_routine_task = _cached("online-routine-step")(_routine_step)
_promote_task = _cached("online-promote")(_promote_step)
_portfolio_task = _cached("online-portfolio")(_portfolio_step)
_record_task = _cached("online-record")(_record_step)


def _portfolio_frame(port: dict) -> pd.DataFrame:
    from qlib_prefect.online.portfolio import PORTFOLIO_COLUMNS

    return pd.DataFrame(port["table"], columns=PORTFOLIO_COLUMNS)


def _hook(point: str) -> None:
    """A named point of the routine (tests replace it to SIGKILL the process there)."""


def _load_holdings(config: dict, run_id: str) -> dict | None:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    rec = R.get_recorder(recorder_id=run_id, experiment_name=f"{name}_routine")
    try:
        return json.loads(rec.load_text("portfolio/holdings.json"))
    except Exception:  # a routine day recorded without a portfolio
        return None


def _routine_runs(config: dict) -> list[Any]:
    from qlib_prefect.workflow import R

    name = _online_section(config)["name"]
    recs = list(R.list_recorders(experiment_name=f"{name}_routine", status="FINISHED").values())
    return sorted(recs, key=lambda r: (r.list_tags().get("date", ""), r.info.get("start_time") or 0))


def routine_history(config: dict) -> pd.DataFrame:
    """The recorded routine days: ``date, online_run_ids, champion, champion_version, trained, signal_date,
    run_id`` (oldest first): which model was online (and champion) on which day."""
    cols = ["date", "online_run_ids", "champion", "champion_version", "trained", "signal_date", "run_id"]
    rows = []
    for rec in _routine_runs(config):
        t = rec.list_tags()
        rows.append({**{c: t.get(c) for c in cols[:-1]}, "run_id": rec.info["id"]})
    return pd.DataFrame(rows, columns=cols)


def routine_portfolio(config: dict, date: str | None = None) -> tuple[dict, pd.DataFrame]:
    """``(routine day tags, target table)`` stored by the routine of ``date`` (default: the latest one)."""
    from qlib_prefect.workflow import R

    runs = _routine_runs(config)
    if date is not None:
        runs = [r for r in runs if r.list_tags().get("date") == pd.Timestamp(date).date().isoformat()]
    if not runs:
        raise ConfigError(f"online portfolio: no routine day recorded{f' on {date}' if date else ''} "
                          f"(experiment {_online_section(config)['name']}_routine)")
    rec = R.get_recorder(recorder_id=runs[-1].info["id"],
                         experiment_name=f"{_online_section(config)['name']}_routine")
    if "portfolio/target.parquet" not in rec.list_artifacts("portfolio"):
        raise ConfigError(f"online portfolio: the routine run {rec.info['id']} has no portfolio (configure "
                          "online.strategy, e.g. TopkDropoutStrategy with topk / n_drop)")
    path = rec.download_artifact("portfolio/target.parquet")
    return {**rec.list_tags(), "run_id": rec.info["id"]}, pd.read_parquet(path)


def _as_config(config: Any) -> dict:
    """A config dict as given, or the raw dict of a qrun-style YAML file (top-level ``online`` section kept)."""
    if isinstance(config, dict):
        return config
    from qlib_prefect.orchestration._leanflow import load_workflow_config

    return load_workflow_config(str(config)).raw


def _keys(config: dict, day: str, previous: Any) -> dict[str, str]:
    """The routine steps' cache keys: config (tracking URI included: results name MLflow runs), the routine day,
    the data fingerprint after the ingest, the ``qlib_init`` settings, the code version; chained per step."""
    from qlib_prefect._version import code_version
    from qlib_prefect.config.hashing import canonical_hash
    from qlib_prefect.data.registry import get_provider
    from qlib_prefect.orchestration._cache import env_hash, stage_key
    from qlib_prefect.workflow import R

    qinit = config["qlib_init"]
    cfg = canonical_hash({"online": _online_section(config), "task": config["task"], "uri": R.get_uri(),
                          "data": str(Path(qinit["provider_uri"]).expanduser().resolve())})
    fp, env, ver = get_provider().fingerprint(), env_hash(qinit), code_version()
    prev = [previous.info["id"]] if previous is not None else []
    k = {"routine": stage_key("online-routine-step", cfg, [day, *prev], fp, env, ver)}
    k["promote"] = stage_key("online-promote", cfg, [k["routine"]], fp, env, ver)
    k["portfolio"] = stage_key("online-portfolio", cfg, [k["routine"], *prev], fp, env, ver)
    k["record"] = stage_key("online-record", cfg, [k["routine"], k["promote"], k["portfolio"]], fp, env, ver)
    return k


def _routine(config: Any, date: str | None = None) -> dict:
    from qlib_prefect.data.registry import get_provider
    from qlib_prefect.workflow import R

    config = _as_config(config)
    _ingest_task(config)
    cal = pd.DatetimeIndex(get_provider().calendar())
    day = pd.Timestamp(date) if date is not None else cal[-1]
    if day not in cal:
        raise ConfigError(f"online routine: --date {day.date()} is not a trading day of the data "
                          f"({cal[0].date()} .. {cal[-1].date()})")
    iso = day.date().isoformat()
    previous = next((r for r in reversed(_routine_runs(config)) if r.list_tags().get("date", "") < iso), None)
    prev_online = previous.list_tags().get("online_run_ids", "").split(",") if previous is not None else None
    new_dates = ([d.date().isoformat() for d in cal[(cal > pd.Timestamp(previous.list_tags()["date"]))
                                                    & (cal <= day)]] if previous is not None else [])
    keys = _keys(config, iso, previous)
    step = _routine_task(config, iso, prev_online, stage_key=keys["routine"])
    promo = _promote_task(config, step, stage_key=keys["promote"])
    port = _portfolio_task(config, step, previous.info["id"] if previous is not None else None,
                           stage_key=keys["portfolio"])
    run_id = _record_task(config, step, new_dates, promo, port, stage_key=keys["record"])
    summary = {"date": step["date"], "new_dates": new_dates, "online": step["online"], "new": step["new"],
               "champion": promo["champion"], "champion_version": promo["version"],
               "signal_date": step["signal_date"], "routine_run_id": run_id,
               "orders": None if port is None else sum(r["side"] != "HOLD" for r in port["table"])}
    summary["tracking_uri"] = R.get_uri()
    summary["mlflow_ui_command"] = mlflow_ui_command(summary["tracking_uri"])
    _routine_artifact(summary, step["signal"])
    if port is not None:
        _portfolio_artifact(summary, port)
    return summary


def portfolio_text(tags: dict, table: pd.DataFrame) -> str:
    """A stored target portfolio as the CLI prints it: a header and a labelled table."""
    head = (f"target portfolio for the trading day after {tags.get('signal_date')} (routine day {tags.get('date')}, "
            f"champion {tags.get('champion')}, routine run {tags.get('run_id')})")
    if table.empty:
        return head + "\n(no positions, no orders)"
    show = table.assign(current_weight=table["current_weight"].map("{:.4f}".format),
                        target_weight=table["target_weight"].map("{:.4f}".format),
                        price=table["price"].map("{:.4f}".format), score=table["score"].map("{:.6f}".format))
    counts = table["side"].value_counts()
    tail = f"{int(counts.get('BUY', 0))} buy, {int(counts.get('SELL', 0))} sell, {int(counts.get('HOLD', 0))} hold"
    return "\n".join([head, show.to_string(index=False), tail])


def _portfolio_artifact(summary: dict[str, Any], port: dict) -> None:
    """The target positions and orders as a Prefect table artifact."""
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=port["table"], key="qlib-online-portfolio",
                              description=f"target portfolio after {summary['signal_date']} (routine "
                                          f"{summary['date']}, run {summary['routine_run_id']})")
    except Exception as e:  # the MLflow run holds the portfolio
        logger.warning("could not create the Prefect table artifact: %s", e)


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
