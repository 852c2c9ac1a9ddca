"""TimeAdjuster against qlib 0.9.7's goldens (tests/golden/tasks, tools/make_task_goldens.py)."""

from __future__ import annotations

import logging
from collections import Counter

import pandas as pd
import pytest
from task_golden import GOLDENS, VARIANTS, enc, expected, golden_cases, outcome, tup

from qlib_prefect.errors import ConfigError
from qlib_prefect.task.utils import TimeAdjuster, transform_end_date

METHODS = sorted({c["method"] for _, c in golden_cases("time_adjuster")})


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("method", METHODS)
def test_methods_match_qlib_goldens(use_variant, variant: str, method: str) -> None:
    use_variant(variant)
    cases = [c for c in GOLDENS["variants"][variant]["time_adjuster"] if c["method"] == method]
    assert cases
    adjusters: dict[tuple, TimeAdjuster] = {}
    bad = []
    for case in cases:
        key = (case["ctor"]["future"], case["ctor"]["end_time"])
        ta = adjusters.setdefault(key, TimeAdjuster(**case["ctor"]))
        args = [tup(a) for a in case["args"]]
        got = outcome(lambda ta=ta, args=args: getattr(ta, method)(*args))
        if got != expected(case):
            bad.append((case["ctor"], case["args"], got, expected(case)))
    assert not bad, f"{len(bad)}/{len(cases)} mismatches, first: {bad[:3]}"


def test_goldens_cover_the_documented_qlib_failures() -> None:
    """The goldens record where qlib itself fails; our fixes are the ``fixed`` outcomes."""
    errors = Counter(
        (c["method"], c["error"]) for _, c in golden_cases("time_adjuster") if "error" in c
    )
    assert errors[("align_time", "IndexError")] > 0  # start after the calendar: raw IndexError in qlib
    assert errors[("truncate", "AssertionError")] > 0  # qlib asserts idx > 0
    assert errors[("shift", "KeyError")] > 0  # the stop signal of RollingGen: kept
    silent = [c for _, c in golden_cases("time_adjuster")
              if c["method"] == "align_time" and c["args"] == ["2019-06-01", "end"]]
    # qlib silently returns the LAST calendar date for an end before the calendar; ours raises
    assert silent
    assert all(c["result"][:4] in ("2020", "2021") and c["fixed"]["error"] == "ConfigError" for c in silent)


def test_calendar_is_lazy_and_future_falls_back_silently(use_variant, caplog) -> None:
    ta = TimeAdjuster(future=True)  # no provider needed to construct
    use_variant("plain")
    with caplog.at_level(logging.DEBUG):
        n = len(ta.cals)
    assert n == GOLDENS["variants"]["plain"]["calendar"][2]
    assert "future" not in caplog.text  # no future calendar (the bundled sample has none): nothing said
    use_variant("future")
    fut = TimeAdjuster(future=True)
    assert len(fut.cals) == GOLDENS["variants"]["future"]["future_calendar"][2]
    assert len(TimeAdjuster(future=False).cals) == GOLDENS["variants"]["future"]["calendar"][2]


def test_set_end_time_reloads(use_variant) -> None:
    use_variant("future")
    ta = TimeAdjuster(future=True)
    last = ta.max()
    ta.set_end_time("2020-06-30")  # a holiday in the golden calendar
    assert ta.max() == pd.Timestamp("2020-06-29")
    ta.set_end_time(None)
    assert ta.max() == last
    ta.set_end_time("2019-01-01")  # before the calendar: empty
    assert len(ta.cals) == 0
    with pytest.raises(ConfigError, match="calendar is empty"):
        ta.max()


def test_errors_name_the_segment_and_date(use_variant) -> None:
    use_variant("plain")
    ta = TimeAdjuster(future=True)
    with pytest.raises(ConfigError, match=r"segments\.valid: end 2019-01-01 is before the first calendar date"):
        ta.align_seg({"valid": ("2018-01-01", "2019-01-01")}, where="segments")
    with pytest.raises(ConfigError, match=r"seg: start 2031-01-01 is after the last calendar date"):
        ta.validate_seg(("2031-01-01", None), where="seg")
    with pytest.raises(ConfigError, match=r"seg: inverted segment, start 2020-05-01 is after end 2020-04-01"):
        ta.validate_seg(("2020-05-01", "2020-04-01"), where="seg")
    with pytest.raises(ConfigError, match=r"seg: empty segment, no trading day between 2020-01-04 and 2020-01-05"):
        ta.validate_seg(("2020-01-04", "2020-01-05"), where="seg")  # a weekend
    with pytest.raises(ConfigError, match=r"seg start: cannot parse 'not-a-date'"):
        ta.validate_seg(("not-a-date", None), where="seg")
    with pytest.raises(ConfigError, match=r"seg: a segment is a \(start, end\) pair"):
        ta.validate_seg(("2020-01-02",), where="seg")
    with pytest.raises(ConfigError, match="tp_type"):
        ta.align_idx("2020-01-02", "middle")
    with pytest.raises(ConfigError, match="rtype"):
        ta.shift(("2020-01-02", "2020-02-03"), 5, "diagonal")
    with pytest.raises(ConfigError, match=r"train: truncating 30 trading days before the test start"):
        ta.truncate(("2020-01-02", "2020-03-02"), "2020-01-15", 30, where="train")
    # valid segments pass: open end, "-1" end, end past the calendar, start before the calendar
    for seg in (("2020-03-02", None), ("2020-03-02", "-1"), ("2019-01-01", "2031-01-01")):
        ta.validate_seg(seg, where="seg")


def test_minus_one_end_marker(use_variant) -> None:
    use_variant("future")
    ta = TimeAdjuster(future=True)
    assert ta.align_time("-1", "end") == ta.cals[-1] == ta.align_time(-1, "end")
    assert enc(ta.align_seg(("2020-03-02", "-1"))) == ["2020-03-02T00:00:00", enc(ta.cals[-1])]


def test_transform_end_date_uses_the_normal_calendar(use_variant) -> None:
    use_variant("future")
    last = pd.Timestamp(GOLDENS["variants"]["future"]["calendar"][1])
    assert transform_end_date(None) == last
    assert transform_end_date("-1") == last
    assert transform_end_date("2031-01-01") == last
    assert transform_end_date("2020-06-30") == "2020-06-30"
    assert transform_end_date(last) == last


@pytest.mark.slow  # creating the MLflow SQLite schema takes ~10 s
def test_list_recorders_filters_an_experiment(tmp_path) -> None:
    import qlib_prefect
    from qlib_prefect.config.runtime import C
    from qlib_prefect.task import list_recorders
    from qlib_prefect.workflow import R

    qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                   "kwargs": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                              "default_exp_name": "Experiment"}})
    try:
        ids = []
        for name in ("a", "b", "c"):
            with R.start(experiment_name="rolling", recorder_name=name):
                R.set_tags(keep=str(name != "b"))
                ids.append(R.get_recorder().id)
        recs = list_recorders("rolling")
        assert sorted(recs) == sorted(ids)
        kept = list_recorders(R.get_exp(experiment_name="rolling"),
                              lambda rec: rec.list_tags().get("keep") == "True")
        assert sorted(kept) == sorted(ids[:1] + ids[2:])
        assert list_recorders("fresh") == {}  # created on demand, as in qlib
    finally:
        R.reset()
        C.reset()
