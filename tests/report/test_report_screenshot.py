"""The report opened in headless Chromium renders every chart (plotly's SVG in each figure, non-blank pixels).

Chromium is required (Debian: ``apt-get install chromium``; ``.ci/run`` installs it): without it this test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from report_helpers import parse_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed to check the report renders: apt-get install -y chromium")


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_its_charts_in_chromium(real_run, tmp_path) -> None:
    from matplotlib.image import imread

    browser = _chromium()
    page = tmp_path / "report.html"
    page.write_text(real_run["recorder"].load_text("report.html"), encoding="utf-8")
    n_figures = len(parse_report(page.read_text(encoding="utf-8")).figures)
    dom = _run(browser, tmp_path / "profile1", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    # every figure div got a plotly graph: a plot container with its SVG layers and drawn traces
    assert dom.stdout.count('class="plot-container plotly"') == n_figures >= 12
    assert len(re.findall(r'<svg class="main-svg"', dom.stdout)) >= 2 * n_figures
    drawn = [bool(re.search(r'class="(trace|hm)', seg)) for seg in dom.stdout.split('id="fig-')[1:]]
    assert len(drawn) == n_figures and all(drawn)  # each chart drew its traces (lines, bars, heat map)
    shot = tmp_path / "shot.png"
    res = _run(browser, tmp_path / "profile2", "--window-size=1280,3000", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = imread(shot)[..., :3]
    non_white = np.any(img < 0.95, axis=-1)
    assert non_white.mean() > 0.05  # text, axes and lines, not an empty page
    colours = {tuple(px) for px in (img[non_white] * 255).astype(int)[::7]}
    assert len(colours) > 50  # coloured chart lines and the heat map, not only black text
