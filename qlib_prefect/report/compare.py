"""Run comparison: one HTML with the metrics of N runs side by side and their curves overlaid (cumulative excess
return with/without cost, drawdown, rolling IC).

Example:
    >>> from qlib_prefect.report.compare import compare_runs
    >>> compare_runs([rec_a, rec_b], "compare.html")  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.report import analysis as A
from qlib_prefect.report.artifacts import RunArtifacts, load_run_artifacts
from qlib_prefect.report.document import Section, render_document
from qlib_prefect.report.figures import line_chart
from qlib_prefect.report.progress import progress

__all__ = ["compare_runs", "comparison_metrics", "select_recorders"]

_CUM = "cumulative return (sum of daily returns, %)"


def _label(art: RunArtifacts) -> str:
    return f"{art.run_name or 'run'} ({art.run_id[:8]})"


def comparison_metrics(arts: Sequence[RunArtifacts]) -> pd.DataFrame:
    """Metrics (rows) x runs (columns): IC stats, the backtest's risk analysis and indicators."""
    cols = {}
    for art in arts:
        m: dict[str, float] = {}
        if art.ic is not None:
            m |= {"IC": art.ic.mean(), "ICIR": art.ic.mean() / art.ic.std()}
        if art.ric is not None:
            m |= {"Rank IC": art.ric.mean(), "Rank ICIR": art.ric.mean() / art.ric.std()}
        if art.port_analysis is not None:
            m |= {f"{n} {k}": float(v) for (n, k), v in art.port_analysis["risk"].items()}
        if art.indicator_analysis is not None:
            m |= {k: float(v) for k, v in art.indicator_analysis["value"].items()}
        cols[_label(art)] = pd.Series(m, dtype=float)
    return pd.DataFrame(cols)


def compare_runs(recorders: Sequence[Any], output: str | Path) -> Path:
    """Write the comparison of ``recorders`` (at least one) to ``output`` (an HTML file); returns its path."""
    if not recorders:
        raise ConfigError("report compare: no runs selected")
    arts = [load_run_artifacts(r) for r in progress(recorders, description="loading runs", total=len(recorders),
                                                     key=lambda r: getattr(r, "id", r))]
    table = comparison_metrics(arts)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["metric", *table.columns])
    body = "".join(
        f"<tr><td>{html.escape(str(k))}</td>"
        + "".join(f"<td>{'' if np.isnan(v) else f'{v:.6f}'}</td>" for v in row) + "</tr>"
        for k, row in zip(table.index, table.to_numpy(dtype=float)))
    sections = [Section("metrics", "Metrics", html=f"<table><tr>{head}</tr>{body}</table>")]
    with_report = [a for a in arts if a.report is not None]
    curves = Section("curves", "Cumulative excess return")
    if with_report:
        for key, what in (("excess_with_cost", "with cost"), ("excess_without_cost", "without cost")):
            curves.figures[key] = line_chart(
                {_label(a): A.cumulative_returns(a.report)[key] for a in with_report},
                title=f"Cumulative excess return ({what}) over each run's benchmark", x_title="trading day",
                y_title=_CUM)
        curves.figures["drawdown"] = line_chart(
            {_label(a): A.drawdowns(a.report)["excess_with_cost"] for a in with_report},
            title="Drawdown of the cumulative excess return (with cost)", x_title="trading day",
            y_title="drawdown (%, from the running maximum)")
    else:
        curves.html = '<p class="note">Not available: no run has portfolio_analysis/report_normal_*.pkl.</p>'
    sections.append(curves)
    ic = Section("ic", "Rolling IC")
    with_ic = [a for a in arts if a.ic is not None]
    if with_ic:
        ic.figures["ic"] = line_chart({_label(a): A.rolling_ic(a.ic) for a in with_ic},
                                      title=f"Rolling {A.IC_WINDOW}-day mean IC", x_title="trading day",
                                      y_title="IC (correlation)", y_format=None)
    else:
        ic.html = '<p class="note">Not available: no run has sig_analysis/ic.pkl.</p>'
    sections.append(ic)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_document(f"qlib-prefect comparison of {len(arts)} runs", sections), encoding="utf-8")
    return out


def select_recorders(*, run_ids: Sequence[str] = (), experiment: str | None = None,
                     tags: Sequence[str] = (), uri: str | None = None) -> list[Any]:
    """MLflow recorders by run id, and/or all (finished) runs of ``experiment`` filtered by ``key=value`` tags."""
    from qlib_prefect.workflow import MLflowExpManager, MLflowRecorder

    manager = MLflowExpManager(uri=uri)
    uri = manager.uri
    recs = [MLflowRecorder.from_run_id(r, uri, async_logging=False) for r in run_ids]
    if experiment is not None or tags:
        client = manager.client
        if experiment is not None:
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise ConfigError(f"report compare: no experiment {experiment!r} at {uri}")
            exp_ids = [exp.experiment_id]
        else:
            exp_ids = [e.experiment_id for e in client.search_experiments()]
        flt = []
        for t in tags:
            if "=" not in t:
                raise ConfigError(f"report compare: --tag needs KEY=VALUE, got {t!r}")
            k, v = t.split("=", 1)
            flt.append(f"tags.`{k}` = '{v}'")
        runs = client.search_runs(exp_ids, " and ".join(flt), order_by=["attributes.start_time ASC"])
        seen = {r.id for r in recs}
        recs += [MLflowRecorder(r.info.experiment_id, uri, mlflow_run=r, async_logging=False)
                 for r in runs if r.info.run_id not in seen]
    return recs
