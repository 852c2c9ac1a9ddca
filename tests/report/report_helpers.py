"""Reading a report back: its sections and figures (the JSON blocks next to each chart)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any


class ReportParser(HTMLParser):
    """Collects section ids, figure JSON (by ``data-name``), attributes with URLs and the text outside scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.figures: dict[str, dict[str, Any]] = {}
        self.urls: list[str] = []
        self.text_outside_library: list[str] = []
        self._in: dict[str, str] | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(a.get("id", ""))
        for k in ("src", "href"):
            if k in a:
                self.urls.append(a[k])
        if tag == "script":
            self._in, self._buf = a, []

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._buf.append(data)
        else:
            self.text_outside_library.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in is not None:
            text = "".join(self._buf)
            if "qp-figure" in self._in.get("class", ""):
                self.figures[self._in["data-name"]] = json.loads(text)
            if self._in.get("type") != "text/javascript":  # everything but the embedded plotly.js library
                self.text_outside_library.append(text)
            self._in = None


def parse_report(text: str) -> ReportParser:
    p = ReportParser()
    p.feed(text)
    p.close()
    return p


def trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    found = [t for t in fig["data"] if t.get("name") == name]
    assert len(found) == 1, f"no single trace {name!r} in {[t.get('name') for t in fig['data']]}"
    return found[0]
