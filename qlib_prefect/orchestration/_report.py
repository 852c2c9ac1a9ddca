"""The key-metrics table of a run summary: CLI text, the Prefect markdown artifact, the ``mlflow ui`` line.

One summary layout serves every flow (workflow, rolling, multi-horizon): ``stages`` (name -> state/key),
``metrics``, ``run_id``, ``experiment_name``, ``tracking_uri``, ``mlflow_ui_command``, ``elapsed_s``.
"""

from __future__ import annotations

import logging
import math
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["KEY_METRICS", "key_metrics", "markdown_report", "mlflow_ui_command", "prefect_artifact", "text_report"]

logger = logging.getLogger("qlib_prefect.orchestration")

#: (label, MLflow metric name) of the headline numbers, in display order.
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("IC", "IC"),
    ("ICIR", "ICIR"),
    ("Rank IC", "Rank IC"),
    ("Rank ICIR", "Rank ICIR"),
    *((f"{label} ({cost})", f"1day.excess_return_{cost.replace(' ', '_')}.{name}")
      for cost in ("without cost", "with cost")
      for label, name in (("Excess return, daily mean", "mean"), ("Excess return, daily std", "std"),
                          ("Annualized excess return", "annualized_return"),
                          ("Information ratio", "information_ratio"), ("Max drawdown", "max_drawdown"))),
    ("Fulfill rate of orders (ffr)", "1day.ffr"),
    ("Price advantage (pa)", "1day.pa"),
    ("Positive rate of price advantage (pos)", "1day.pos"),
)
"""qrun prints these (risk analysis of the excess return with/without cost, indicator analysis)."""


def _rows(metrics: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(label, metric name, value) of the headline metrics in ``metrics``; a group prefix (``h5.IC`` of a
    multi-horizon run) is shown after the label."""
    rows = [(label, name, metrics[name]) for label, name in KEY_METRICS if name in metrics]
    groups = sorted({k.split(".", 1)[0] for k in metrics if "." in k and not k.startswith("1day.")})
    for g in groups:
        rows += [(f"{label} [{g}]", f"{g}.{name}", metrics[f"{g}.{name}"]) for label, name in KEY_METRICS
                 if f"{g}.{name}" in metrics]
    return rows


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline metrics present in ``metrics`` ({metric name: value})."""
    return {name: float(v) for _, name, v in _rows(metrics)}


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(f) else f"{f:.6f}"


def text_report(summary: Mapping[str, Any]) -> str:
    """Stage states, the metrics table and where to look, as plain text."""
    lines = ["", "stage                              state       key               time (s)"]
    for name, st in summary.get("stages", {}).items():
        lines.append(f"{name:<34} {st.get('state', '?'):<11} {str(st.get('key', ''))[:16]:<17} "
                     f"{_seconds(st.get('seconds'))}".rstrip())
    metrics = summary.get("metrics", {})
    rows = [(label, v) for label, _, v in _rows(metrics)]
    if rows:
        width = max(len(label) for label, _ in rows)
        lines += ["", f"{'metric':<{width}}  value", f"{'-' * width}  ----------"]
        lines += [f"{label:<{width}}  {_fmt(v)}" for label, v in rows]
    lines += ["", f"MLflow run id:   {summary.get('run_id')}  (experiment {summary.get('experiment_name')!r})",
              f"tracking URI:    {summary.get('tracking_uri')}",
              f"look at it with: {summary.get('mlflow_ui_command')}"]
    if summary.get("elapsed_s") is not None:
        lines.append(f"elapsed:         {summary['elapsed_s']:.1f} s")
    return "\n".join(lines)


def _seconds(v: Any) -> str:
    """A computed stage's wall seconds; ``-`` for a stage served from the cache (no time spent in this run)."""
    return f"{v:.1f}" if isinstance(v, (int, float)) else "-"


def mlflow_ui_command(uri: str) -> str:
    """How to look at the runs of tracking ``uri``."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def _run_link(summary: Mapping[str, Any]) -> str:
    """The MLflow run id, as a link into the MLflow UI when the tracking URI is a server."""
    run_id, uri = summary.get("run_id"), str(summary.get("tracking_uri") or "")
    if uri.startswith(("http://", "https://")) and summary.get("experiment_id") is not None:
        return f"[`{run_id}`]({uri.rstrip('/')}/#/experiments/{summary['experiment_id']}/runs/{run_id})"
    return f"`{run_id}`"


def markdown_report(summary: Mapping[str, Any], title: str = "qlib workflow results") -> str:
    """The same content as a markdown document (Prefect artifact)."""
    metrics = summary.get("metrics", {})
    out = [f"# {title}", "", "| metric | value |", "|---|---|"]
    out += [f"| {label} | {_fmt(v)} |" for label, _, v in _rows(metrics)]
    out += ["", "| stage | state | key | time (s) |", "|---|---|---|---:|"]
    out += [f"| {n} | {s.get('state')} | `{str(s.get('key'))[:16]}` | {_seconds(s.get('seconds'))} |"
            for n, s in summary.get("stages", {}).items()]
    out += ["", f"MLflow run id: {_run_link(summary)} (experiment `{summary.get('experiment_name')}`)",
            "", f"Tracking URI: `{summary.get('tracking_uri')}` - open with `{summary.get('mlflow_ui_command')}`"]
    if summary.get("report_url"):
        out += ["", f"Report: [report.html]({summary['report_url']})"]
    return "\n".join(out)


def prefect_artifact(summary: Mapping[str, Any], *, key: str, title: str) -> None:
    """The summary as a markdown artifact of the running flow (a convenience: a failure only warns)."""
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(markdown=markdown_report(summary, title), key=key,
                                 description=f"{title}, MLflow run {summary['run_id']}")
    except Exception as e:  # the MLflow run holds the results
        logger.warning("could not create the Prefect artifact: %s", e)
