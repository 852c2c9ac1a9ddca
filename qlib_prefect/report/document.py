"""One self-contained HTML document: plotly.js embedded once (no CDN, opens offline), one ``<section>`` per part
of the report; each figure's JSON sits in a ``<script type="application/json" class="qp-figure">`` block next to
the ``<div>`` it is drawn into (readable by tests and tools without a browser)."""

from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Section", "render_document"]


@dataclass
class Section:
    """A titled part of the report: optional HTML text, then figures (``{name: figure dict}``)."""

    id: str
    title: str
    html: str = ""
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
nav a{margin-right:1em}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}
.qp-fig{width:100%;min-height:420px}.note{color:#666;font-size:.9em}
"""

_RENDER = """
document.querySelectorAll('script.qp-figure').forEach(function (s) {
  var fig = JSON.parse(s.textContent);
  Plotly.newPlot(s.dataset.target, fig.data, fig.layout, {responsive: true, displaylogo: false});
});
"""


def _json(fig: dict[str, Any]) -> str:
    # "</" cannot appear inside a script element
    return json.dumps(fig, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_document(title: str, sections: list[Section], *, subtitle: str = "") -> str:
    """The report as one HTML string."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
             f'<script type="text/javascript">{_plotly_js()}</script></head><body>',
             f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="note">{subtitle}</p>')
    parts.append("<nav>" + "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections) + "</nav>")
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.html}')
        for name, fig in s.figures.items():
            div = f"fig-{s.id}-{name}"
            parts.append(f'<div class="qp-fig" id="{div}"></div>'
                         f'<script type="application/json" class="qp-figure" data-target="{div}" '
                         f'data-name="{s.id}/{name}">{_json(fig)}</script>')
        parts.append("</section>")
    parts.append(f"<script>{_RENDER}</script></body></html>")
    return "\n".join(parts)
