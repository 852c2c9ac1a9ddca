"""The report's section cache: a build keyed by the signal stages reuses the prediction-only sections (same
figures as a fresh build), and a damaged cache entry is rebuilt, never trusted."""

from __future__ import annotations

import logging

from report_helpers import parse_report

from qlib_prefect.report import build_run_report
from qlib_prefect.report import builder as B


def _figures(path) -> dict:
    return parse_report(path.read_text(encoding="utf-8")).figures


def test_cached_sections_equal_a_fresh_build_and_are_reused(real_run, tmp_path, monkeypatch) -> None:
    rec, cfg = real_run["recorder"], real_run["config"]
    key = f"test-{tmp_path.name}"
    fresh = _figures(build_run_report(rec, config=cfg, output=tmp_path / "fresh", log=False))
    first = _figures(build_run_report(rec, config=cfg, output=tmp_path / "first", log=False, cache_key=key))
    entry = B._section_cache_path(key, range(1, 21))
    assert entry.is_file()
    calls = []
    real = B._pred_sections
    monkeypatch.setattr(B, "_pred_sections", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = _figures(build_run_report(rec, config=cfg, output=tmp_path / "again", log=False, cache_key=key))
    assert calls == []  # served from the cache entry
    assert fresh == first == again
    assert {"rolling/sharpe", "rolling/ic", "ic/daily", "ic-decay/decay", "quantile/cumulative"} <= set(again)


def test_damaged_cache_entry_is_rebuilt(real_run, tmp_path, caplog) -> None:
    rec, cfg = real_run["recorder"], real_run["config"]
    key = f"test-damaged-{tmp_path.name}"
    fresh = _figures(build_run_report(rec, config=cfg, output=tmp_path / "fresh", log=False, cache_key=key))
    entry = B._section_cache_path(key, range(1, 21))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    with caplog.at_level(logging.WARNING, logger="qlib_prefect.report.builder"):
        rebuilt = _figures(build_run_report(rec, config=cfg, output=tmp_path / "rebuilt", log=False, cache_key=key))
    assert "unreadable" in caplog.text
    assert rebuilt == fresh
    assert B._load_sections(key, range(1, 21)) is not None  # the entry was written again, whole


def test_trades_ledger_from_order_records_equals_the_per_day_frames(real_run) -> None:
    import pandas as pd

    from qlib_prefect.report.ledger import trades_ledger

    rec = real_run["recorder"]
    ind = rec.load_object("portfolio_analysis/indicators_normal_1day_obj.pkl")
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")

    class PerDay:  # what a qlib Indicator offers: only the per-day frames
        order_indicator_his = ind.order_indicator_his

    fast, slow = trades_ledger(ind, report), trades_ledger(PerDay(), report)
    assert len(fast) > 100
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
