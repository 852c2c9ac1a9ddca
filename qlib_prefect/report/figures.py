"""Plotly figures of the report as plain ``{"data": [...], "layout": {...}}`` dicts (plotly.js renders them;
building dicts instead of ``plotly.graph_objects`` keeps the report fast).

Returns are kept as fractions and shown as percentages by the axis format, so a figure's numbers are the
run's numbers. Every chart names its axes and units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["bar_chart", "heatmap", "histogram", "line_chart"]

_PCT = ".2%"


def _xs(index: Iterable[Any]) -> list[Any]:
    out = []
    for x in index:
        if isinstance(x, (pd.Timestamp, np.datetime64)):
            out.append(pd.Timestamp(x).strftime("%Y-%m-%d"))
        elif isinstance(x, np.generic):
            out.append(x.item())
        else:
            out.append(x)
    return out


def _ys(values: Iterable[Any]) -> list[float | None]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
            for v in np.asarray(list(values), dtype=float).tolist()]


def _layout(title: str, x_title: str, y_title: str, y_format: str | None, **extra: Any) -> dict[str, Any]:
    yaxis: dict[str, Any] = {"title": {"text": y_title}, "zeroline": True}
    if y_format:
        yaxis["tickformat"] = y_format
    layout = {
        "title": {"text": title},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": yaxis,
        "legend": {"orientation": "h", "y": -0.25},
        "margin": {"l": 70, "r": 20, "t": 50, "b": 90},
        "height": 420,
        "hovermode": "x unified",
    }
    layout.update(extra)
    return layout


def line_chart(series: Mapping[str, pd.Series], *, title: str, x_title: str, y_title: str,
               y_format: str | None = _PCT, styles: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One line per named series (shared x axis)."""
    fmt = f"%{{y:{y_format}}}" if y_format else "%{y:.4f}"
    data = []
    for name, s in series.items():
        trace = {"type": "scatter", "mode": "lines", "name": name, "x": _xs(s.index), "y": _ys(s.to_numpy()),
                 "hovertemplate": f"{fmt}<extra>{name}</extra>"}
        trace.update((styles or {}).get(name, {}))
        data.append(trace)
    return {"data": data, "layout": _layout(title, x_title, y_title, y_format)}


def bar_chart(bars: Mapping[str, pd.Series], lines: Mapping[str, pd.Series] | None = None, *, title: str,
              x_title: str, y_title: str, y_format: str | None = None) -> dict[str, Any]:
    """Bars (e.g. a daily value) with optional lines on top (e.g. its moving mean)."""
    data = [{"type": "bar", "name": n, "x": _xs(s.index), "y": _ys(s.to_numpy()), "opacity": 0.45}
            for n, s in bars.items()]
    data += [{"type": "scatter", "mode": "lines", "name": n, "x": _xs(s.index), "y": _ys(s.to_numpy())}
             for n, s in (lines or {}).items()]
    return {"data": data, "layout": _layout(title, x_title, y_title, y_format, barmode="overlay")}


def histogram(samples: Mapping[str, pd.Series], *, title: str, x_title: str, y_title: str = "number of days"
              ) -> dict[str, Any]:
    """Overlaid histograms of the named samples (NaNs left out)."""
    data = [{"type": "histogram", "name": n, "x": _ys(s.dropna().to_numpy()), "opacity": 0.6, "nbinsx": 40}
            for n, s in samples.items()]
    layout = _layout(title, x_title, y_title, None, barmode="overlay")
    layout["hovermode"] = "closest"
    return {"data": data, "layout": layout}


def heatmap(table: pd.DataFrame, *, title: str, x_title: str, y_title: str, z_title: str,
            x_labels: list[str] | None = None, z_format: str = ".1%") -> dict[str, Any]:
    """A heat map of ``table`` (rows = y, columns = x; values shown with ``z_format``), diverging around 0
    (blue > 0)."""
    z = [_ys(row) for row in table.to_numpy(dtype=float)]
    finite = np.abs(table.to_numpy(dtype=float))
    zmax = float(np.nanmax(finite)) if np.isfinite(finite).any() else 1.0
    data = [{
        "type": "heatmap", "z": z, "x": x_labels or _xs(table.columns), "y": [str(v) for v in _xs(table.index)],
        "colorscale": "RdBu", "reversescale": True, "zmid": 0, "zmin": -zmax, "zmax": zmax,
        "colorbar": {"title": {"text": z_title}, "tickformat": z_format},
        "texttemplate": f"%{{z:{z_format}}}", "hovertemplate": f"%{{y}} %{{x}}: %{{z:{z_format}}}<extra></extra>",
    }]
    layout = _layout(title, x_title, y_title, None)
    layout["yaxis"]["type"] = "category"
    layout["hovermode"] = "closest"
    return {"data": data, "layout": layout}
