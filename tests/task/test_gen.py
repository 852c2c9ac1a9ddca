"""RollingGen / MultiHorizonGen / task_generator against qlib 0.9.7's goldens (tests/golden/tasks).

Where qlib fails or misbehaves (qlib#1660, PR #2068, ``truncate``'s ``idx > 0`` assert), the goldens carry
a ``fixed`` outcome: qlib's own code with the documented minimal patch (tools/make_task_goldens.py).
Templates whose segments do not fit the calendar (``invalid_*``) must raise a ConfigError instead.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys

import pytest
from task_golden import GOLDENS, enc, expected, golden_cases, outcome, tup

from qlib_prefect.errors import ConfigError
from qlib_prefect.task import (
    MultiHorizonGen,
    MultiHorizonGenBase,
    RollingGen,
    TaskGen,
    handler_mod,
    horizon_label,
    task_generator,
    trunc_segments,
)
from qlib_prefect.task.utils import TimeAdjuster


def _make(kind: str, kw: dict) -> TaskGen:
    return RollingGen(**kw) if kind == "rolling" else MultiHorizonGen(**kw)


def _ids(section: str) -> list[str]:
    return [f"{v}-{c['name']}" for v, c in golden_cases(section)]


INVALID = {  # case -> (segment, date) the ConfigError must name
    "invalid_test_start_after_calendar": ("segments.test", "2031-01-01"),
    "invalid_valid_end_before_calendar": ("segments.valid", "2019-01-01"),
    "invalid_inverted_valid": ("segments.valid", "inverted"),
    "invalid_empty_test": ("segments.test", "empty segment"),
}


@pytest.mark.parametrize(("variant", "case"), golden_cases("rolling"), ids=_ids("rolling"))
def test_rolling_matches_qlib(use_variant, variant: str, case: dict) -> None:
    use_variant(variant)
    task = tup(copy.deepcopy(case["task"]))
    before = copy.deepcopy(task)
    if case["name"] in INVALID:
        seg, what = INVALID[case["name"]]
        with pytest.raises(ConfigError, match=seg) as ei:
            RollingGen(**case["gen"]).generate(task)
        assert what in str(ei.value)
        return
    got = outcome(lambda: RollingGen(**case["gen"]).generate(task))
    assert got == expected(case)
    assert task == before  # the template is not modified


@pytest.mark.parametrize(("variant", "case"), golden_cases("multi_horizon"), ids=_ids("multi_horizon"))
def test_multi_horizon_matches_qlib(use_variant, variant: str, case: dict) -> None:
    use_variant(variant)
    task = tup(copy.deepcopy(case["task"]))
    got = outcome(lambda: MultiHorizonGen(**case["gen"]).generate(task))
    assert got == expected(case)


@pytest.mark.parametrize(("variant", "case"), golden_cases("task_generator"), ids=_ids("task_generator"))
def test_task_generator_matches_qlib(use_variant, variant: str, case: dict) -> None:
    use_variant(variant)
    tasks = case["tasks"]
    tasks = [tup(copy.deepcopy(t)) for t in tasks] if isinstance(tasks, list) else tup(copy.deepcopy(tasks))
    gens = case["gens"]
    gens = _make(*gens) if isinstance(gens[0], str) else [_make(k, kw) for k, kw in gens]
    got = outcome(lambda: task_generator(tasks, gens))
    assert got == expected(case)
    assert "result" in got


def _test_segs(tasks: list[dict], key: str = "test") -> list:
    return [enc(t["dataset"]["kwargs"]["segments"][key]) for t in tasks]


def _case(variant: str, name: str) -> dict:
    return next(c for c in GOLDENS["variants"][variant]["rolling"] if c["name"] == name)


def test_issue1660_one_past_calendar_ends_cleanly(use_variant) -> None:
    """qlib raises TypeError (None > Timestamp) when the next window starts one day past the calendar."""
    case = _case("plain", "issue1660_one_past_calendar")
    assert case["error"] == "TypeError"
    use_variant("plain")
    tasks = RollingGen(**case["gen"]).generate(tup(copy.deepcopy(case["task"])))
    cal_end = GOLDENS["variants"]["plain"]["calendar"][1]
    assert _test_segs(tasks)[-1][1] == cal_end  # the last window ends exactly at the calendar end
    assert len(tasks) == 2


def test_pr2068_open_ended_test_extends_handler(use_variant) -> None:
    """The last window runs past the calendar: its handler must load all data (end_time None)."""
    case = _case("plain", "open_ended_last_window")
    raw_end = case["result"][0]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]
    assert raw_end == case["task"]["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"]  # qlib 0.9.7: unchanged
    use_variant("plain")
    (task,) = RollingGen(**case["gen"]).generate(tup(copy.deepcopy(case["task"])))
    assert task["dataset"]["kwargs"]["segments"]["test"][1] is None
    assert task["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None


def test_windows_tile_the_test_period(use_variant) -> None:
    use_variant("future")
    ta = TimeAdjuster(future=True)
    task = tup(copy.deepcopy(_case("future", "sliding_step20")["task"]))
    tasks = RollingGen(step=20, rtype=RollingGen.ROLL_SD).generate(task)
    starts = [ta.align_idx(t["dataset"]["kwargs"]["segments"]["test"][0]) for t in tasks]
    ends = [ta.align_idx(t["dataset"]["kwargs"]["segments"]["test"][1], "end") for t in tasks]
    assert all(e - s == 19 for s, e in zip(starts, ends))
    assert all(b - a == 20 for a, b in itertools.pairwise(starts))
    trains = [t["dataset"]["kwargs"]["segments"]["train"] for t in tasks]
    assert len({ta.align_idx(e, "end") - ta.align_idx(s) for s, e in trains}) == 1  # sliding: fixed length
    ex = RollingGen(step=20).generate(task)
    assert len({t["dataset"]["kwargs"]["segments"]["train"][0] for t in ex}) == 1  # expanding: fixed start


def test_handler_mod_branches(use_variant) -> None:
    use_variant("plain")
    gen = RollingGen(step=20)

    def task(handler_end, test_end, handler=True):
        kw = {"segments": {"test": ("2020-03-02", test_end)}}
        if handler:
            kw["handler"] = {"class": "Alpha158", "kwargs": {"end_time": handler_end}}
        return {"dataset": {"kwargs": kw}}

    t = task("2020-02-03", "2020-03-31")
    handler_mod(t, gen)
    assert t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] == "2020-03-31"
    t = task("2020-06-01", "2020-03-31")
    handler_mod(t, gen)
    assert t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] == "2020-06-01"
    t = task("2020-02-03", None)
    handler_mod(t, gen)
    assert t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None
    t = task(None, "2020-03-31")
    handler_mod(t, gen)
    assert t["dataset"]["kwargs"]["handler"]["kwargs"]["end_time"] is None
    t = task(None, None, handler=False)
    handler_mod(t, gen)
    assert "handler" not in t["dataset"]["kwargs"]
    t = {"dataset": {"kwargs": {"handler": "file:///h.pkl", "segments": {"test": ("2020-03-02", None)}}}}
    handler_mod(t, gen)
    assert t["dataset"]["kwargs"]["handler"] == "file:///h.pkl"


def test_trunc_segments_in_place(use_variant) -> None:
    use_variant("plain")
    ta = TimeAdjuster(future=True)
    segs = ta.align_seg({"train": ("2020-01-09", "2020-03-31"), "valid": ("2020-04-01", "2020-05-29"),
                         "test": ("2020-05-04", None)})
    trunc_segments(ta, segs, days=3)
    limit = ta.get(ta.align_idx("2020-05-04") - 3)
    assert segs["train"][1] == min(ta.align_time("2020-03-31", "end"), limit)
    assert segs["valid"][1] == limit and segs["test"][1] is None
    with pytest.raises(ConfigError, match="unbounded test segment"):
        trunc_segments(ta, {"test": (None, None)}, days=1)


def test_horizon_label_is_the_alpha158_default() -> None:
    from qlib_prefect.data.handler import Alpha158, Alpha360

    default = Alpha158.get_label_config(None)  # type: ignore[arg-type]
    assert default == Alpha360.get_label_config(None)  # type: ignore[arg-type]
    assert horizon_label(1) == default[0][0]
    assert horizon_label(5, "$vwap") == "Ref($vwap, -6)/Ref($vwap, -1) - 1"


def test_multi_horizon_sets_label_and_truncates(use_variant) -> None:
    use_variant("plain")
    case = next(c for c in GOLDENS["variants"]["plain"]["multi_horizon"] if c["name"] == "h1_5_20")
    tasks = MultiHorizonGen(horizon=[1, 5], price="$vwap", label_name="LABEL_H").generate(tup(case["task"]))
    labels = [t["dataset"]["kwargs"]["handler"]["kwargs"]["label"] for t in tasks]
    assert labels == [(["Ref($vwap, -2)/Ref($vwap, -1) - 1"], ["LABEL_H"]),
                      (["Ref($vwap, -6)/Ref($vwap, -1) - 1"], ["LABEL_H"])]
    ta = TimeAdjuster(future=True)
    for t, h in zip(tasks, (1, 5)):
        segs = t["dataset"]["kwargs"]["segments"]
        assert ta.align_idx(segs["test"][0]) - ta.align_idx(segs["valid"][1], "end") == h + 2


def test_multi_horizon_base_is_abstract_and_subclassable(use_variant) -> None:
    with pytest.raises(TypeError):
        MultiHorizonGenBase()  # type: ignore[abstract]

    class Tag(MultiHorizonGenBase):
        def set_horizon(self, task: dict, hr: int) -> None:
            task["horizon"] = hr

    use_variant("plain")
    base = {"dataset": {"kwargs": {"segments": {"train": ("2020-01-09", "2020-06-30"),
                                                "test": ("2020-07-01", None)}}}}
    out = Tag(horizon=[2, 3], label_leak_n=0)(base)
    assert [t["horizon"] for t in out] == [2, 3]
    assert "horizon" not in base


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RollingGen(step=0), "RollingGen.step"),
        (lambda: RollingGen(step=2.5), "RollingGen.step"),
        (lambda: RollingGen(rtype="rolling"), "RollingGen.rtype"),
        (lambda: RollingGen(trunc_days=-1), "RollingGen.trunc_days"),
        (lambda: MultiHorizonGen(horizon=[0]), "MultiHorizonGen.horizon"),
        (lambda: MultiHorizonGen(label_leak_n=-2), "label_leak_n"),
    ],
)
def test_bad_generator_arguments(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_bad_templates_raise_config_error(use_variant) -> None:
    use_variant("plain")
    gen = RollingGen(step=20)
    with pytest.raises(ConfigError, match=r"dataset\.kwargs\.segments is missing"):
        gen.generate({"dataset": {"kwargs": {}}})
    with pytest.raises(ConfigError, match=r"segments\.test is missing"):
        gen.generate({"dataset": {"kwargs": {"segments": {"train": ("2020-01-09", "2020-03-02")}}}})
    with pytest.raises(ConfigError, match=r"segments\.test: the test segment needs a start"):
        gen.generate({"dataset": {"kwargs": {"segments": {"test": (None, "2020-03-02")}}}})
    with pytest.raises(ConfigError, match=r"segments\.train start: cannot parse 'soon'"):
        gen.generate({"dataset": {"kwargs": {"segments": {"train": ("soon", "2020-03-02"),
                                                          "test": ("2020-04-01", None)}}}})
    task = {"dataset": {"kwargs": {"handler": "file:///h.pkl",
                                   "segments": {"train": ("2020-01-09", "2020-03-02"), "test": ("2020-04-01", None)}}}}
    with pytest.raises(ConfigError, match="handler must be a handler config dict"):
        MultiHorizonGen(horizon=[1]).generate(task)
    with pytest.raises(ConfigError, match=r"generators\[0\] is not a TaskGen"):
        task_generator(task, [object()])  # type: ignore[list-item]


def test_task_layer_does_not_import_prefect() -> None:
    code = "import sys, qlib_prefect.task; sys.exit(1 if 'prefect' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_validate_segments_up_front(use_variant) -> None:
    from qlib_prefect.task import validate_segments

    use_variant("plain")
    case = _case("plain", "non_trading_dates")
    aligned = validate_segments(tup(case["task"]))
    # 2019-12-28 (before the calendar) -> its first day; the 2020-06-30 holiday -> the day before
    assert enc(aligned["train"]) == ["2020-01-02T00:00:00", "2020-06-29T00:00:00"]
    assert validate_segments({"test": ("2020-03-02", None)})["test"][1] is None
    with pytest.raises(ConfigError, match=r"segments\.valid: end 2019-01-01 is before the first calendar date"):
        validate_segments(tup(_case("plain", "invalid_valid_end_before_calendar")["task"]))
    with pytest.raises(ConfigError, match=r"segments\.test is missing"):
        validate_segments({"train": ("2020-01-09", "2020-03-02")})


def test_generators_from_qlib_class_paths(use_variant) -> None:
    from qlib_prefect.utils import init_instance_by_config

    use_variant("future")
    gen = init_instance_by_config({"class": "RollingGen", "module_path": "qlib.workflow.task.gen",
                                   "kwargs": {"step": 20, "rtype": "sliding"}})
    assert isinstance(gen, RollingGen) and gen.step == 20 and gen.rtype == RollingGen.ROLL_SD
    mh = init_instance_by_config({"class": "MultiHorizonGen", "module_path": "qlib.workflow.task.gen",
                                  "kwargs": {"horizon": [1, 2]}})
    case = _case("future", "sliding_step20")
    assert len(task_generator(tup(case["task"]), [gen, mh])) == 2 * len(case["result"])
