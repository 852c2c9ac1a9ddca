"""The key-metrics table (CLI output and the Prefect markdown artifact)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["KEY_METRICS", "key_metrics", "markdown_report", "text_report"]

#: (label, MLflow metric name) of the headline numbers, in display order.
KEY_METRICS: tuple[tuple[str, str], ...] = (
    ("IC", "IC"),
    ("ICIR", "ICIR"),
    ("Rank IC", "Rank IC"),
    ("Rank ICIR", "Rank ICIR"),
    ("Annualized excess return (without cost)", "1day.excess_return_without_cost.annualized_return"),
    ("Annualized excess return (with cost)", "1day.excess_return_with_cost.annualized_return"),
    ("Information ratio (without cost)", "1day.excess_return_without_cost.information_ratio"),
    ("Information ratio (with cost)", "1day.excess_return_with_cost.information_ratio"),
    ("Max drawdown (without cost)", "1day.excess_return_without_cost.max_drawdown"),
    ("Max drawdown (with cost)", "1day.excess_return_with_cost.max_drawdown"),
)


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline metrics present in ``metrics`` ({metric name: value})."""
    return {name: float(metrics[name]) for _, name in KEY_METRICS if name in metrics}


def _fmt(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "nan" if math.isnan(f) else f"{f:.6f}"


def text_report(summary: Mapping[str, Any]) -> str:
    """Stage states, the metrics table and where to look, as plain text."""
    lines = ["", "stage                              state       key"]
    for name, st in summary.get("stages", {}).items():
        lines.append(f"{name:<34} {st.get('state', '?'):<11} {str(st.get('key', ''))[:16]}")
    metrics = summary.get("metrics", {})
    rows = [(label, metrics[name]) for label, name in KEY_METRICS if name in metrics]
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


def markdown_report(summary: Mapping[str, Any]) -> str:
    """The same content as a markdown document (Prefect artifact)."""
    metrics = summary.get("metrics", {})
    out = ["# qlib workflow results", "", "| metric | value |", "|---|---|"]
    out += [f"| {label} | {_fmt(metrics[name])} |" for label, name in KEY_METRICS if name in metrics]
    out += ["", "| stage | state | key |", "|---|---|---|"]
    out += [f"| {n} | {s.get('state')} | `{str(s.get('key'))[:16]}` |" for n, s in summary.get("stages", {}).items()]
    out += ["", f"MLflow run id: `{summary.get('run_id')}` (experiment `{summary.get('experiment_name')}`)",
            "", f"Tracking URI: `{summary.get('tracking_uri')}` - open with `{summary.get('mlflow_ui_command')}`"]
    if summary.get("report_url"):
        out += ["", f"Report: [report.html]({summary['report_url']})"]
    return "\n".join(out)
