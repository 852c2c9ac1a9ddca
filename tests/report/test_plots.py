"""The stage PNGs (issue 16 item 7): labelled axes with units, the benchmark named by its code, the cumulative
return said to be a sum of daily returns, drawdown lines in the legend (no overlapping fills), full IC windows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from qlib_prefect.orchestration._plots import plot_stage


def test_stage_plots_are_labelled(real_run, tmp_path, monkeypatch) -> None:
    rec = real_run["recorder"]
    for name in ("portfolio_analysis", "sig_analysis"):
        rec.download_artifact(name, str(tmp_path))
    saved: dict[str, Figure] = {}
    real_save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, path, **kw: (saved.__setitem__(Path(path).name, self),
                                                                     real_save(self, path, **kw)))
    written = plot_stage(SimpleNamespace(artifact_dir=tmp_path), benchmark="SPX")
    assert written == ["portfolio_analysis/cumulative_return.png", "portfolio_analysis/drawdown.png",
                       "sig_analysis/ic.png"]
    assert all((tmp_path / w).stat().st_size > 10_000 for w in written)
    cum = saved["cumulative_return.png"].axes[0]
    assert cum.get_xlabel() == "trading day" and "sum of daily returns" in cum.get_ylabel()
    assert "%" in cum.get_ylabel() and cum.yaxis.get_major_formatter().__class__.__name__ == "PercentFormatter"
    labels = [t.get_text() for t in cum.get_legend().get_texts()]
    assert "SPX (benchmark)" in labels and "benchmark" not in labels
    dd = saved["drawdown.png"].axes[0]
    assert not dd.collections  # no fills whose overlap shows a colour missing from the legend
    assert [t.get_text() for t in dd.get_legend().get_texts()] == ["excess return (without cost)",
                                                                   "excess return (with cost)"]
    assert dd.get_ylabel().startswith("drawdown (%")
    ic_ax = saved["ic.png"].axes[0]
    assert ic_ax.get_ylabel() == "IC (correlation)" and ic_ax.get_xlabel() == "trading day"
    mean_line = next(ln for ln in ic_ax.get_lines() if ln.get_label() == "IC 20-day mean")
    y = np.asarray(mean_line.get_ydata(), dtype=float)
    ic = rec.load_object("sig_analysis/ic.pkl")
    assert np.isnan(y[:19]).all() and y[19] == pytest.approx(ic.iloc[:20].mean())
