"""``build_run_report``: a run's tear sheet (``report.html``) and ledgers, built from its artifacts and logged
into the same run.

Sections (ids): ``metrics``, ``returns``, ``drawdown``, ``monthly``, ``rolling``, ``ic``, ``ic-decay``,
``quantile``, ``turnover``, ``holdings``, ``config``. A section whose artifacts are missing says what is missing.
What qlib's ``qlib.contrib.report`` graphs show, in one offline file; see :mod:`qlib_prefect.report.analysis` for
the conventions.
"""

from __future__ import annotations

import html
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.report import analysis as A
from qlib_prefect.report.artifacts import RunArtifacts, load_run_artifacts
from qlib_prefect.report.document import Section, render_document
from qlib_prefect.report.figures import bar_chart, heatmap, histogram, line_chart
from qlib_prefect.report.ledger import LEDGER_DIR, write_ledgers
from qlib_prefect.report.progress import progress

__all__ = ["REPORT_NAME", "SECTION_IDS", "build_run_report", "report_sections", "run_report_html"]

logger = logging.getLogger(__name__)

#: artifact name of the report (run root)
REPORT_NAME = "report.html"
SECTION_IDS = ("metrics", "returns", "drawdown", "monthly", "rolling", "ic", "ic-decay", "quantile", "turnover",
               "holdings", "config")
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_CUM = "cumulative return (sum of daily returns, %)"
_DATE = "trading day"


def _missing(what: str) -> str:
    return f'<p class="note">Not available: {html.escape(what)}.</p>'


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "nan" if np.isnan(f) else f"{f:.6f}"


def _table(rows: Sequence[tuple[str, Any]], head: tuple[str, str] = ("metric", "value")) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table><tr><th>{head[0]}</th><th>{head[1]}</th></tr>{body}</table>"


def _ic_series(art: RunArtifacts) -> tuple[pd.Series | None, pd.Series | None]:
    if art.ic is not None:
        return art.ic, art.ric
    if art.pred is not None and art.label is not None:
        from qlib_prefect.model.signal_eval import calc_ic

        return calc_ic(art.pred, art.label)
    return None, None


def _metrics_section(art: RunArtifacts) -> Section:
    rows: list[tuple[str, Any]] = []
    ic, ric = _ic_series(art)
    if ic is not None:
        rows += [("IC", ic.mean()), ("ICIR", ic.mean() / ic.std())]
    if ric is not None:
        rows += [("Rank IC", ric.mean()), ("Rank ICIR", ric.mean() / ric.std())]
    if art.report is not None:
        from qlib_prefect.backtest.analysis import risk_analysis

        bench = risk_analysis(art.report["bench"], freq=art.freq)["risk"]
        rows += [(f"{art.benchmark} (benchmark) {k}", v) for k, v in bench.items()]
    if art.port_analysis is not None:
        rows += [(f"{name.replace('_', ' ')} {metric}", v)
                 for (name, metric), v in art.port_analysis["risk"].items()]
    if art.indicator_analysis is not None:
        rows += [(k, v) for k, v in art.indicator_analysis["value"].items()]
    # the run's other metrics (the backtest's ``<freq>.*`` and the training loss history are shown above / elsewhere)
    skip = (f"{art.freq}.", "l2.", "l1.", "IC", "ICIR", "Rank IC", "Rank ICIR")
    rows += [(k, v) for k, v in sorted(art.metrics.items()) if not k.startswith(skip)]
    text = _table(rows) if rows else _missing("no metrics, signal or portfolio artifacts in this run")
    note = ('<p class="note">Returns are daily fractions; annualised figures and cumulative returns are sums of '
            "daily returns (qlib's convention); excess return = strategy - benchmark (- cost).</p>")
    return Section("metrics", "Metrics", html=text + note)


def _portfolio_sections(art: RunArtifacts) -> list[Section]:
    ids = ("returns", "drawdown", "monthly", "turnover", "holdings")
    titles = ("Cumulative return", "Drawdown", "Monthly excess return", "Turnover and cost", "Holdings")
    if art.report is None:
        return [Section(i, t, html=_missing("portfolio_analysis/report_normal_*.pkl (no PortAnaRecord)"))
                for i, t in zip(ids, titles)]
    rep = art.report
    bm = art.benchmark
    cum = A.cumulative_returns(rep)
    names = {"strategy_without_cost": "strategy (without cost)", "strategy_with_cost": "strategy (with cost)",
             "benchmark": f"{bm} (benchmark)", "excess_without_cost": "excess return (without cost)",
             "excess_with_cost": "excess return (with cost)"}
    styles = {f"{bm} (benchmark)": {"line": {"color": "black", "width": 1}},
              "excess return (without cost)": {"line": {"dash": "dash"}},
              "excess return (with cost)": {"line": {"dash": "dash"}}}
    returns = Section("returns", titles[0], figures={"cumulative": line_chart(
        {names[c]: cum[c] for c in cum.columns}, title=f"Cumulative return vs {bm}", x_title=_DATE,
        y_title=_CUM, styles=styles)})
    dd = A.drawdowns(rep)
    drawdown = Section("drawdown", titles[1], figures={"drawdown": line_chart(
        {"excess return (without cost)": dd["excess_without_cost"], "excess return (with cost)":
         dd["excess_with_cost"]}, title=f"Drawdown of the cumulative excess return over {bm}", x_title=_DATE,
        y_title="drawdown (%, from the running maximum)")})
    monthly = Section("monthly", titles[2], figures={"heatmap": heatmap(
        A.monthly_returns(rep), title=f"Monthly excess return over {bm} with cost (sum of daily returns)",
        x_title="month", y_title="year", z_title="excess return", x_labels=_MONTHS)})
    turnover = Section("turnover", titles[3], figures={
        "turnover": line_chart({"turnover": rep["turnover"].astype(float)}, title="Daily turnover",
                               x_title=_DATE, y_title="turnover (% of the previous account value)"),
        "cost": line_chart({"cost": rep["cost"].astype(float)}, title="Daily trading cost", x_title=_DATE,
                           y_title="cost (% of the previous account value)", y_format=".3%"),
    })
    holdings = Section("holdings", titles[4], html=_missing("positions_normal_*.pkl") if not art.positions else "")
    if art.positions:
        h = art.holdings()
        count = h.groupby("datetime")["instrument"].count() if len(h) else pd.Series(dtype=float)
        weights = h.pivot_table(index="datetime", columns="instrument", values="weight", aggfunc="sum")
        top = weights.fillna(0).mean().sort_values(ascending=False).index[:10]
        holdings.figures = {
            "count": line_chart({"instruments held": count}, title="Number of instruments held", x_title=_DATE,
                                y_title="instruments", y_format=None),
            "top_weights": line_chart({c: weights[c] for c in top},
                                      title="Weights of the 10 largest holdings (by mean weight)",
                                      x_title=_DATE, y_title="weight (% of the account value)"),
        }
    return [returns, drawdown, monthly, turnover, holdings]


def _signal_sections(art: RunArtifacts, horizons: Sequence[int], cache_key: str | None = None) -> list[Section]:
    """The signal sections; those computed from the prediction alone (``ic``, ``ic-decay``, ``quantile`` and the
    rolling IC) come from the section cache when ``cache_key`` names their inputs (see :func:`build_run_report`)."""
    cached = _load_sections(cache_key, horizons)
    if cached is None:
        cached = _pred_sections(art, horizons)
        if cached[2].figures or art.pred is None:  # not an IC decay that failed for want of the data
            _save_sections(cache_key, horizons, cached)
    rolling, ic_sec, decay, quant = (Section(s.id, s.title, html=s.html, figures=dict(s.figures)) for s in cached)
    if art.report is not None:
        rolling.figures = {"sharpe": line_chart(
            {f"{A.SHARPE_WINDOW}-day Sharpe (excess with cost)": A.rolling_sharpe(art.report, freq=art.freq)},
            title=f"Rolling {A.SHARPE_WINDOW}-day annualised Sharpe ratio of the excess return over {art.benchmark}",
            x_title=_DATE, y_title="Sharpe ratio (annualised)", y_format=None)} | rolling.figures
        if rolling.figures:
            rolling.html = ""
    return [rolling, ic_sec, decay, quant]


def _section_cache_path(cache_key: str, horizons: Sequence[int]) -> Path:
    import hashlib

    from qlib_prefect._version import code_version
    from qlib_prefect.config.settings import home_dir

    key = hashlib.sha256(repr((cache_key, tuple(horizons), code_version())).encode()).hexdigest()[:32]
    return home_dir() / "report_sections" / f"{key}.pkl"


def _load_sections(cache_key: str | None, horizons: Sequence[int]) -> list[Section] | None:
    if cache_key is None:
        return None
    import pickle

    path = _section_cache_path(cache_key, horizons)
    try:
        with path.open("rb") as f:
            out = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as e:  # a damaged entry is rebuilt
        logger.warning("report section cache %s unreadable (%s): rebuilding it", path, e)
        return None
    if not (isinstance(out, list) and len(out) == 4 and all(isinstance(s, Section) for s in out)):
        logger.warning("report section cache %s is not a section list: rebuilding it", path)
        return None
    return out


def _save_sections(cache_key: str | None, horizons: Sequence[int], sections: list[Section]) -> None:
    if cache_key is None:
        return
    import os
    import pickle

    path = _section_cache_path(cache_key, horizons)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(sections, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, path)
    except OSError as e:
        logger.warning("report section cache %s not written: %s", path, e)


def _pred_sections(art: RunArtifacts, horizons: Sequence[int]) -> list[Section]:
    """rolling (IC part), ic, ic-decay, quantile: functions of the prediction, label and IC series only."""
    ic, ric = _ic_series(art)
    rolling = Section("rolling", "Rolling Sharpe ratio and IC")
    if ic is not None:
        lines = {f"IC {A.IC_WINDOW}-day mean": A.rolling_ic(ic)}
        if ric is not None:
            lines[f"Rank IC {A.IC_WINDOW}-day mean"] = A.rolling_ic(ric)
        rolling.figures["ic"] = line_chart(lines, title=f"Rolling {A.IC_WINDOW}-day mean IC (full windows only)",
                                           x_title=_DATE, y_title="IC (correlation)", y_format=None)
    if not rolling.figures:
        rolling.html = _missing("portfolio report and IC")
    ic_sec = Section("ic", "Daily IC and Rank IC")
    if ic is None:
        ic_sec.html = _missing("sig_analysis/ic.pkl, or pred.pkl with label.pkl")
    else:
        bars = {"IC": ic} | ({"Rank IC": ric} if ric is not None else {})
        ic_sec.figures = {
            "daily": bar_chart(bars, {f"IC {A.IC_WINDOW}-day mean": A.rolling_ic(ic)},
                               title="Daily IC (Pearson) and Rank IC (Spearman) of the score with the label",
                               x_title=_DATE, y_title="IC (correlation)"),
            "distribution": histogram(bars, title="Distribution of the daily IC and Rank IC",
                                      x_title="IC (correlation)"),
        }
    decay = Section("ic-decay", "IC decay over label horizons")
    quant = Section("quantile", "Quantile returns")
    if art.pred is None:
        decay.html = quant.html = _missing("pred.pkl")
        return [rolling, ic_sec, decay, quant]
    try:
        labels = A.horizon_labels(art.pred.index, horizons)
        d = A.ic_decay(art.pred, labels)
        decay.figures["decay"] = line_chart(
            {"IC": d["IC"], "Rank IC": d["Rank IC"]}, title="Mean daily IC by label horizon",
            x_title="label horizon h (trading days; label = Ref($close,-h-1)/Ref($close,-1)-1)",
            y_title="mean IC (correlation)", y_format=None,
            styles={"IC": {"mode": "lines+markers"}, "Rank IC": {"mode": "lines+markers"}})
    except Exception as e:  # no data provider (e.g. regenerating a report without the data)
        decay.html = _missing(f"labels at other horizons need the run's data ({e})")
    if art.label is None:
        quant.html = _missing("label.pkl")
    else:
        q = A.quantile_returns(art.pred, art.label)
        quant.figures["cumulative"] = line_chart(
            {c: q[c].fillna(0.0).cumsum() for c in q.columns},  # a day without labels adds nothing
            title="Cumulative label return of the 5 score quantile groups (Group1 = highest scores) and long-short",
            x_title=_DATE, y_title="cumulative label return (sum of daily group means, %)",
            styles={"long-short": {"line": {"color": "black", "dash": "dot"}}})
    return [rolling, ic_sec, decay, quant]


def _config_section(art: RunArtifacts) -> Section:
    if art.config is None:
        return Section("config", "Config", html=_missing("the run's config (artifacts config / task)"))
    try:
        import yaml

        text = yaml.safe_dump(art.config, sort_keys=False, default_flow_style=False)
    except Exception:  # objects in the config (e.g. a filled <MODEL>): show their repr
        import pprint

        text = pprint.pformat(art.config, width=110, sort_dicts=False)
    return Section("config", "Config", html=f"<pre>{html.escape(text)}</pre>")


def report_sections(art: RunArtifacts, *, horizons: Sequence[int] = range(1, 21),
                    cache_key: str | None = None) -> list[Section]:
    """All sections, in :data:`SECTION_IDS` order (``cache_key``: see :func:`build_run_report`)."""
    steps = [("metrics", lambda: [_metrics_section(art)]), ("portfolio", lambda: _portfolio_sections(art)),
             ("signal", lambda: _signal_sections(art, horizons, cache_key)),
             ("config", lambda: [_config_section(art)])]
    built: dict[str, Section] = {}
    for _, make in progress(steps, description="building the report", total=len(steps), key=lambda s: s[0]):
        for s in make():
            built[s.id] = s
    return [built[i] for i in SECTION_IDS]


def run_report_html(art: RunArtifacts, *, horizons: Sequence[int] = range(1, 21),
                    cache_key: str | None = None, extra_sections: Sequence[Section] = ()) -> str:
    """The report of ``art`` as an HTML string (``extra_sections`` go before the config, e.g. the online
    history of an online simulate run)."""
    from qlib_prefect.report.tracking import run_name

    title = f"qlib-prefect report: {run_name(art.config) or art.run_name or art.run_id}"
    sub = f"MLflow run <code>{html.escape(art.run_id)}</code> - built {time.strftime('%Y-%m-%d %H:%M:%S')}"
    sections = report_sections(art, horizons=horizons, cache_key=cache_key)
    sections[-1:-1] = list(extra_sections)
    return render_document(title, sections, subtitle=sub)


def build_run_report(recorder: Any, *, config: Any = None, output: str | Path | None = None, log: bool = True,
                     horizons: Sequence[int] = range(1, 21), tracking: bool = True,
                     strict: bool = True, cache_key: str | None = None,
                     extra_sections: Sequence[Section] = ()) -> Path | None:
    """Build ``report.html`` and the ledgers of ``recorder``'s run from its artifacts.

    ``cache_key``: a string that changes whenever the run's prediction, label or IC series (or the data they
    were computed on) change, e.g. the workflow's signal stage keys; the sections computed from them alone
    (``ic``, ``ic-decay``, ``quantile``, rolling IC: most of the build) are then kept under
    ``QLIB_PREFECT_HOME/report_sections`` and reused by a run whose only change is downstream (a new strategy).
    Without a key everything is computed from the artifacts.

    ``log`` uploads them into the run (``report.html`` at the root, ledgers under ``ledgers/``); ``tracking``
    also adds the MLflow 3 entries of :mod:`qlib_prefect.report.tracking` (logged model, dataset input, run name,
    description linking the report) when the recorder is an MLflow one. ``output``: a folder to keep the files
    in (default: a temporary one); ``extra_sections`` are added before the config section. Returns the path of
    the written ``report.html``; ``strict=False`` (the hook at the end of a run) logs a warning and returns None
    instead of raising, so a report never fails a run.
    """
    try:
        return _build(recorder, config=config, output=output, log=log, horizons=horizons, tracking=tracking,
                      cache_key=cache_key, extra_sections=extra_sections)
    except Exception as e:
        if strict:
            raise
        logger.warning("report of run %s skipped: %s: %s", getattr(recorder, "id", "?"), type(e).__name__, e)
        return None


def _build(recorder: Any, *, config: Any, output: str | Path | None, log: bool, horizons: Sequence[int],
           tracking: bool, cache_key: str | None = None, extra_sections: Sequence[Section] = ()) -> Path:
    t0 = time.perf_counter()
    art = load_run_artifacts(recorder, config=config)
    folder = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="qlib-prefect-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / REPORT_NAME
    path.write_text(run_report_html(art, horizons=horizons, cache_key=cache_key, extra_sections=extra_sections),
                    encoding="utf-8")
    ledgers = []
    if art.positions is not None or art.indicator is not None:
        ledgers = write_ledgers(folder / LEDGER_DIR, positions=art.holdings(), indicator=art.indicator,
                                report=art.report, freq=art.freq)
    if log:
        recorder.log_artifact(str(path))
        for f in ledgers:
            recorder.log_artifact(str(f), LEDGER_DIR)
        if tracking:
            from qlib_prefect.report.tracking import add_mlflow_entries

            add_mlflow_entries(recorder, art)
    logger.info("report: %s built in %.2f s", REPORT_NAME, time.perf_counter() - t0)
    return path
