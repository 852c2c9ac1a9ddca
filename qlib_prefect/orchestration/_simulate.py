"""``online_simulate(config, start, end)``: the daily online routine backfilled over ``start .. end`` as one
Prefect flow, cached per rolling window, with a backtest and a report of its signals in one MLflow run.

What it computes is what :meth:`OnlineManager.simulate <qlib_prefect.online.manager.OnlineManager.simulate>`
gives for a :class:`RollingStrategy` whose first window starts on ``start`` (``RollingGen(step, rtype)``,
``TrainerR``): window ``k`` tests ``step`` trading days from ``c[start + k * step]``, it is trained on the day its
test starts (that is the retrain day of the routine) and stays online until the next one starts; the signal of a
day is the per-date z-score (``AverageEnsemble``) of the online window's prediction. Signals are cut to
``start .. end`` (the manager keeps the last window's days after ``end`` too).

How (the rolling flow's machinery, :mod:`qlib_prefect.orchestration._rolling`):

* the windows are ``RollingGen.generate`` of the task with ``test = (start, end)``: every window has ``step`` test
  days (the last one runs past ``end``), so a window's task, and its cache key (task hash + data fingerprint of
  the dates it reads + code version + ``qlib_init``), do not depend on ``end``: extending a simulation by a month
  trains and predicts only the windows that start in that month, the others are ``Cached``;
* features once for the windows to train (the raw cache), processors refitted per window;
* each window is a Prefect task + a child MLflow run (``pred.pkl``, ``label.pkl``: its prediction segment);
* the summary task (one per ``start .. end`` and set of windows) merges them into the signal (``pred.pkl`` of the
  parent run), runs ``SigAnaRecord`` and ``PortAnaRecord`` on it (qlib's artifact names:
  ``portfolio_analysis/report_normal_1day.pkl``, ``port_analysis_1day.pkl``, ...; the backtest spans
  ``start .. end``), and the parent run gets ``online_history.csv`` (which window / MLflow run was online on which
  day) and ``report.html`` with an "Online history" section.

Deliberate difference from qlib's ``simulate``: qlib trains every first task at ``first_train`` and puts them
all online (D4), so a template whose test segment spans the whole simulation has every window online from day
one; here the history is the routine's (one window online at a time, switched on its test start), the one a
daily routine started on ``start`` records. The signals are the same either way.
"""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
from prefect.task_runners import ThreadPoolTaskRunner

from qlib_prefect.errors import ConfigError
from qlib_prefect.orchestration._leanflow import LeanFlow
from qlib_prefect.orchestration._rolling import DEFAULT_MAX_WORKERS, _prepare_rolling, _run_plan
from qlib_prefect.orchestration._windows import _record_name, _sha, date_label, prepare_plan, rolling_tasks

__all__ = ["online_simulate", "simulate_text"]

HISTORY_NAME = "online_history.csv"
_DEFAULT_PORT = {
    "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                 "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5}},
    "backtest": {"account": 100000000, "exchange_kwargs": {"deal_price": "close", "open_cost": 0.0005,
                                                           "close_cost": 0.0015, "min_cost": 5}},
}


def _online_sec(raw: dict) -> dict:
    sec = raw.get("online")
    if not isinstance(sec, dict) or "name" not in sec:
        raise ConfigError("online simulate: the config needs an `online` section with `name` (docs/online.md)")
    return sec


def _port_record(raw: dict, sec: dict, start: pd.Timestamp, end: pd.Timestamp, records: list) -> list:
    """The summary records with a ``PortAnaRecord`` whose backtest spans ``start .. end`` (the task's own, or
    one from ``online.port_analysis`` / a TopkDropoutStrategy default with ``online.benchmark``)."""
    records = copy.deepcopy(records)
    port = [r for r in records if _record_name(r) == "PortAnaRecord"]
    if not port:
        conf = copy.deepcopy(sec.get("port_analysis") or _DEFAULT_PORT)
        if "benchmark" in sec:
            conf.setdefault("backtest", {})["benchmark"] = sec["benchmark"]
        if not conf.get("backtest", {}).get("benchmark"):
            raise ConfigError("online simulate: no benchmark for the backtest: add a PortAnaRecord to task.record, "
                              "online.port_analysis or online.benchmark")
        rec = {"class": "PortAnaRecord", "module_path": "qlib.workflow.record_temp", "kwargs": {"config": conf}}
        records.append(rec)
        port = [rec]
    for rec in port:
        kw = rec.setdefault("kwargs", {})
        conf = kw.setdefault("config", {})
        bt = conf.setdefault("backtest", {})
        bt["start_time"], bt["end_time"] = date_label(start), date_label(end)
    return records


def _history(windows: list[dict[str, Any]], cal: pd.DatetimeIndex) -> pd.DataFrame:
    """One row per trading day of ``cal``: the window online that day (the latest whose test has started)."""
    starts = pd.DatetimeIndex([pd.Timestamp(w["test"].split("..")[0]) for w in windows])
    idx = starts.searchsorted(cal, side="right") - 1
    rows = [{"datetime": d, "window": windows[i]["window"], "run_id": windows[i].get("run_id"),
             "test_start": starts[i], "test_end": pd.Timestamp(windows[i]["test"].split("..")[1])}
            for d, i in zip(cal, idx) if i >= 0]
    return pd.DataFrame(rows, columns=["datetime", "window", "run_id", "test_start", "test_end"])


def _history_section(hist: pd.DataFrame) -> Any:
    import html

    from qlib_prefect.report.document import Section
    from qlib_prefect.report.figures import line_chart

    per = hist.groupby("window", sort=True).agg(run_id=("run_id", "first"), test_start=("test_start", "first"),
                                                test_end=("test_end", "first"), first=("datetime", "min"),
                                                last=("datetime", "max"), days=("datetime", "size"))
    head = "".join(f"<th>{h}</th>" for h in ("window", "MLflow run id", "test segment", "online from", "online to",
                                             "days online (trading days)"))
    body = "".join(
        f"<tr><td>{w}</td><td><code>{html.escape(str(r.run_id))}</code></td><td>{r.test_start.date()} .. "
        f"{r.test_end.date()}</td><td>{r.first.date()}</td><td>{r.last.date()}</td><td>{r.days}</td></tr>"
        for w, r in per.iterrows())
    note = ('<p class="note">Which model was online on which day: the routine switches to window k on the first '
            "trading day of its test segment (its retrain day).</p>")
    fig = line_chart({"online window": hist.set_index("datetime")["window"].astype(float)},
                     title="Online model by day (rolling window index)", x_title="trading day",
                     y_title="online window (index of the rolling window)", y_format=None,
                     styles={"online window": {"line": {"shape": "hv"}}})
    return Section("online-history", "Online history", html=f"<table><tr>{head}</tr>{body}</table>{note}",
                   figures={"history": fig})


def _simulate(config: Any, start: str, end: str | None = None, experiment_name: str | None = None,
              refresh: bool = False, refit_processors: bool | None = None) -> dict[str, Any]:
    """The flow body (see the module docstring). ``refit_processors`` (default: ``online.refit_processors``, else
    True) refits the handler's processors on each window's train segment (qlib#1620; False = qlib's behaviour)."""
    from qlib_prefect.data.registry import get_provider

    raw = config if isinstance(config, dict) else None
    holder: dict[str, Any] = {}

    def gen(template: dict) -> list:
        cal = pd.DatetimeIndex(get_provider().calendar())
        s = pd.Timestamp(start)
        e = cal[-1] if end is None else cal[min(int(cal.searchsorted(pd.Timestamp(end), side="right")),
                                                   len(cal)) - 1]  # the last trading day <= end
        if s > e or s > cal[-1]:
            raise ConfigError(f"online simulate: start {s.date()} is after the end {e.date()} (the data end at "
                              f"{cal[-1].date()})")
        t = copy.deepcopy(template)
        t["dataset"]["kwargs"]["segments"]["test"] = [date_label(s), date_label(e)]
        holder.update(start=s, end=e, cal=cal[(cal >= s) & (cal <= e)])
        return [("online", x) for x in rolling_tasks(t, holder["step"], holder["rtype"], holder["trunc_days"])]

    from qlib_prefect.orchestration._leanflow import load_workflow_config

    cfg = load_workflow_config(config)
    raw = cfg.raw if raw is None else raw
    sec = _online_sec(raw)
    if refit_processors is None:
        refit_processors = bool(sec.get("refit_processors", True))
    holder.update(step=int(sec.get("step", 20)), rtype=sec.get("rtype", "sliding"), trunc_days=sec.get("trunc_days"))
    cfg, plan = prepare_plan(cfg, gen, refit_processors)
    s, e = holder["start"], holder["end"]
    cal_all = pd.DatetimeIndex(get_provider().calendar())
    bt_end = min(e, cal_all[-2]) if len(cal_all) > 1 else e  # a backtest step needs the next trading day
    plan.summary_records = _port_record(raw, sec, s, bt_end, plan.summary_records)
    signal = {"start": date_label(s), "end": date_label(e)}
    from qlib_prefect.config.hashing import canonical_hash

    plan.summaries = {g: _sha("online-simulate-summary", k, signal, canonical_hash(plan.summary_records))
                      for g, k in plan.summaries.items()}
    params = {"start": signal["start"], "end": signal["end"], "step": holder["step"], "rtype": holder["rtype"],
              "trunc_days": holder["trunc_days"], "refit_processors": refit_processors}
    state: dict[str, Any] = {}

    def on_summary(parent: Any, summary: dict[str, Any]) -> list:
        hist = _history(summary["windows"], holder["cal"])
        state["history"] = hist
        state["signal_rows"] = len(parent.load_object("pred.pkl"))
        parent.save_objects(**{"online_history.pkl": hist})
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / HISTORY_NAME
            hist.to_csv(p, index=False)
            parent.log_artifact(str(p))
        parent.set_tags(**{"qlib_prefect.online.start": signal["start"], "qlib_prefect.online.end": signal["end"],
                           "qlib_prefect.online.name": str(sec["name"])})
        return [_history_section(hist)] if len(hist) else []

    summary = _run_plan(cfg, plan, kind="online_simulate",
                        experiment_name=experiment_name or f"{sec['name']}_simulate", refresh=refresh, params=params,
                        signal=signal, on_summary=on_summary)
    hist = state.get("history", pd.DataFrame())
    summary.update(start=signal["start"], end=signal["end"], days=len(holder["cal"]),
                   signal_rows=state.get("signal_rows"),
                   history=_history_rows(hist))
    return summary


def _history_rows(hist: pd.DataFrame) -> list[dict[str, Any]]:
    if not len(hist):
        return []
    per = hist.groupby("window", sort=True).agg(run_id=("run_id", "first"), test_start=("test_start", "first"),
                                                test_end=("test_end", "first"), first=("datetime", "min"),
                                                last=("datetime", "max"), days=("datetime", "size"))
    return [{"window": int(w), "run_id": r.run_id, "test": f"{r.test_start.date()}..{r.test_end.date()}",
             "online_from": str(r.first.date()), "online_to": str(r.last.date()), "days": int(r.days)}
            for w, r in per.iterrows()]


def simulate_text(summary: dict[str, Any]) -> str:
    """The simulate run as the CLI prints it: span, windows trained / cached, history, key backtest metrics."""
    rows = [("simulated days", f"{summary['start']} .. {summary['end']} ({summary['days']} trading days)"),
            ("windows (trained / cached)", f"{len(summary['windows'])} ({summary['trained']} / {summary['cached']})"),
            ("signal rows", f"{summary.get('signal_rows', '?')} (dates {summary['start']} .. {summary['end']})"),
            ("MLflow run", f"{summary['run_id']} (experiment {summary['experiment_name']})")]
    rows += [(k, f"{v:.6f}") for k, v in summary.get("metrics", {}).items()]
    if summary.get("report_url"):
        rows.append(("report", summary["report_url"]))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    cols = f"{'window':>6}  {'MLflow run id':<32}  {'test segment':<22}  {'online from':<11}  {'online to':<11}"
    lines += ["", "online history (which model was online on which days):", f"{cols}  days (trading days)"]
    lines += [f"{h['window']:>6}  {h['run_id']!s:<32}  {h['test']:<22}  {h['online_from']:<11}  "
              f"{h['online_to']:<11}  {h['days']:>4}" for h in summary["history"]]
    lines += ["", f"{'look at it with':<{width}}  {summary['mlflow_ui_command']}"]
    return "\n".join(lines)


def _prepare(config: Any = None, *args: Any, **kwargs: Any) -> None:
    _prepare_rolling(config)


online_simulate = LeanFlow(
    _simulate, prepare=_prepare, name="qlib-online-simulate",
    task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_MAX_WORKERS), persist_result=False,
    validate_parameters=False, log_prints=False,
    description="Online simulate: the daily routine backfilled over start..end, one cached task per rolling "
                "window, the signals backtested (PortAnaRecord) and reported in one MLflow run.",
)
