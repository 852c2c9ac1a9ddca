"""Per-factor analysis (qlib issue #212): IC, ICIR, Rank IC, Rank ICIR and IC decay of every feature column of a
handler (Alpha158: 158 columns) against the label, as a table (CSV + parquet) and one HTML page with charts.

Features are the handler's ``raw`` view (the factor values before processors), the label is
``Ref($close,-h-1)/Ref($close,-1)-1`` at the horizons asked for (h=1 is Alpha158's label), over one segment.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.report.analysis import factor_ic, horizon_labels
from qlib_prefect.report.document import Section, render_document
from qlib_prefect.report.figures import bar_chart, heatmap
from qlib_prefect.report.progress import progress

__all__ = ["DEFAULT_FACTOR_HORIZONS", "factor_analysis", "write_factor_report"]

logger = logging.getLogger(__name__)

DEFAULT_FACTOR_HORIZONS = (1, 2, 3, 5, 10, 20)


def factor_analysis(dataset: Any, *, segment: str = "test", horizons: Sequence[int] = DEFAULT_FACTOR_HORIZONS
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table, decay)``: per feature column IC/ICIR/Rank IC/Rank ICIR at horizon ``horizons[0]``, and the mean
    Rank IC per (feature, horizon)."""
    if segment not in getattr(dataset, "segments", {}):
        raise ConfigError(f"factor analysis: unknown segment {segment!r}; available: {list(dataset.segments)}")
    feats = dataset.prepare(segment, col_set="feature", data_key="raw")
    if feats.empty:
        raise ConfigError(f"factor analysis: segment {segment!r} has no rows")
    labels = horizon_labels(feats.index, horizons)
    cols = list(feats.columns)
    chunk = max(1, len(cols) // 20)
    parts = []
    decay = {}
    batches = [cols[i:i + chunk] for i in range(0, len(cols), chunk)]
    for batch in progress(batches, description=f"factor IC over {len(cols)} columns", total=len(batches),
                          key=lambda b: b[-1]):
        sub = feats[batch]
        for k, h in enumerate(horizons):
            res = factor_ic(sub, labels[h])
            if k == 0:
                parts.append(res)
            decay.setdefault(h, []).append(res["Rank IC"])
    table = pd.concat(parts)
    table.index.name = "feature"
    table = table.reindex(table["Rank IC"].abs().sort_values(ascending=False).index)
    decay_df = pd.DataFrame({h: pd.concat(v) for h, v in decay.items()}).reindex(table.index)
    decay_df.columns.name = "horizon"
    return table, decay_df


def write_factor_report(dataset: Any, out_dir: str | Path, *, segment: str = "test",
                        horizons: Sequence[int] = DEFAULT_FACTOR_HORIZONS, title: str = "") -> dict[str, Path]:
    """Write ``factors.csv``, ``factors.parquet`` and ``factors.html`` into ``out_dir``; returns their paths."""
    table, decay = factor_analysis(dataset, segment=segment, horizons=horizons)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = table.join(decay.add_prefix("Rank IC h="))
    paths = {"csv": out / "factors.csv", "parquet": out / "factors.parquet", "html": out / "factors.html"}
    full.to_csv(paths["csv"])
    full.rename(columns=str).to_parquet(paths["parquet"])
    h0 = horizons[0]
    rows = "".join(
        f"<tr><td>{html.escape(str(f))}</td>" + "".join(f"<td>{v:.4f}</td>" for v in r) + "</tr>"
        for f, r in zip(table.index, table.to_numpy()))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["feature", *table.columns])
    sections = [
        Section("table", f"IC per feature (label horizon {h0}, segment {segment})",
                html=f"<table><tr>{head}</tr>{rows}</table>"),
        Section("chart", "Rank IC per feature", figures={"rank_ic": bar_chart(
            {"Rank IC": table["Rank IC"], "IC": table["IC"]}, title=f"Mean daily IC / Rank IC per feature "
            f"(label horizon {h0} days)", x_title="feature (sorted by |Rank IC|)", y_title="mean IC (correlation)")}),
        Section("decay", "IC decay per feature", figures={"decay": heatmap(
            decay, title="Mean daily Rank IC by label horizon", x_title="label horizon (trading days)",
            y_title="feature", z_title="Rank IC", x_labels=[str(h) for h in decay.columns], z_format=".3f")}),
    ]
    sections[2].figures["decay"]["layout"]["height"] = max(420, 14 * len(decay) + 150)
    paths["html"].write_text(render_document(title or f"Factor analysis: {len(table)} features", sections),
                             encoding="utf-8")
    return paths
