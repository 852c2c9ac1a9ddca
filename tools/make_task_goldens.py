"""Produce the task-generation goldens in tests/golden/tasks/ with the REAL qlib.

Run with the oracle venv (qlib 0.9.7), from the repository root::

    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \\
        /work/qlib-venv/bin/python tools/make_task_goldens.py [--out tests/golden/tasks]

Steps:
1. write two tiny qlib-format data directories with ``tools/qlib_data_writer.py`` (independent of the package):
   ``<out>/data/plain`` (``calendars/day.txt`` only: 250 trading days from 2020-01-02, a weekday "holiday"
   every 17 business days) and ``<out>/data/future`` (the same ``day.txt`` plus a ``day_future.txt`` with
   25 more trading days); each has ``instruments/all.txt`` and one ``features/aaa/close.day.bin``;
2. for each directory, ``qlib.init(provider_uri=..., region="us")`` and run qlib's ``TimeAdjuster`` methods,
   ``RollingGen``, ``MultiHorizonGenBase`` (a trivial ``set_horizon`` that sets the Alpha158-style label
   ``Ref($close, -(h+1))/Ref($close, -1) - 1``) and ``task_generator`` on the cases below;
3. write ``<out>/goldens.json``: every case's inputs and qlib's output (dates as ISO strings: a
   ``pd.Timestamp`` becomes ``"YYYY-MM-DDT00:00:00"``, a string stays as given; tuples become lists) or,
   where qlib raises, ``{"error": <exception type>, "message": ...}``.

The script is deterministic; re-running it rewrites the same files.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import functools
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qlib_data_writer import write_calendar, write_feature, write_instruments

N_DAYS = 250
N_FUTURE = 25


def make_calendar(n: int) -> pd.DatetimeIndex:
    b = pd.bdate_range("2020-01-02", periods=n + n // 16 + 5)
    keep = [d for i, d in enumerate(b) if i % 17 != 9]
    return pd.DatetimeIndex(keep[:n])


def write_dir(root: Path, future: bool) -> pd.DatetimeIndex:
    cal = make_calendar(N_DAYS)
    write_calendar(root, cal)
    fut = root / "calendars" / "day_future.txt"
    if future:
        full = make_calendar(N_DAYS + N_FUTURE)
        write_calendar(root, full, freq="day_future")
    elif fut.exists():
        fut.unlink()
    write_instruments(root, "all", [("AAA", cal[0], cal[-1])])
    write_feature(root, "AAA", "close", 0, np.linspace(10.0, 20.0, len(cal)))
    return cal


# ----------------------------------------------------------------------------------------------- encoding
def enc(obj):
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, (_dt.datetime, _dt.date)):
        raise TypeError(f"unexpected {type(obj)}")
    if isinstance(obj, dict):
        return {str(k): enc(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [enc(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


def run(fn):
    try:
        return {"result": enc(fn())}
    except Exception as e:  # the golden records qlib's exception type
        return {"error": type(e).__name__, "message": str(e)[:200],
                "where": traceback.extract_tb(e.__traceback__)[-1].name}


def tup(x):
    """JSON lists back to tuples for segment inputs (qlib needs tuples in truncate/shift)."""
    if isinstance(x, dict):
        return {k: tup(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(x)
    return x


# ----------------------------------------------------------------------------------------------- cases
def ta_cases(cal: pd.DatetimeIndex, fcal: pd.DatetimeIndex) -> list[dict]:
    d = lambda i: cal[i].strftime("%Y-%m-%d")  # noqa: E731
    n = len(cal)
    holiday = next(x for x in pd.bdate_range(cal[0], cal[-1]) if x not in cal).strftime("%Y-%m-%d")
    weekend = (cal[10] + pd.Timedelta(days=(5 - cal[10].weekday()) % 7)).strftime("%Y-%m-%d")
    points = ["2019-06-01", d(0), weekend, holiday, d(37), d(n - 1), (cal[-1] + pd.Timedelta(days=3)).strftime(
        "%Y-%m-%d"), fcal[-1].strftime("%Y-%m-%d"), "2031-01-01", "-1", None]
    cases: list[dict] = []
    for future in (True, False):
        for end_time in (None, d(200)):
            ctor = {"future": future, "end_time": end_time}
            cases.append({"ctor": ctor, "method": "max", "args": []})
            for idx in (0, 5, -1, n - 1, n, n + 5, n + N_FUTURE - 1, n + N_FUTURE, None):
                cases.append({"ctor": ctor, "method": "get", "args": [idx]})
            for p in points:
                for tp in ("start", "end"):
                    cases.append({"ctor": ctor, "method": "align_idx", "args": [p, tp]})
                    cases.append({"ctor": ctor, "method": "align_time", "args": [p, tp]})
            for a, b in ((d(50), d(20)), (d(20), d(50)), (weekend, holiday), (d(n - 1), "2031-01-01")):
                cases.append({"ctor": ctor, "method": "cal_interval", "args": [a, b]})
            cases.append({"ctor": ctor, "method": "align_seg", "args": [
                {"train": ["2019-06-01", weekend], "valid": [holiday, d(120)], "test": [d(121), None]}]})
            cases.append({"ctor": ctor, "method": "align_seg", "args": [[weekend, "2031-01-01"]]})
    ctor = {"future": True, "end_time": None}
    for seg, ts, days in (
        ([d(5), d(100)], d(90), 3),
        ([d(5), d(80)], d(90), 3),
        ([d(5), d(80)], d(90), 0),
        ([d(5), d(80)], weekend, 7),
        ([d(5), None], d(90), 3),
        ([d(0), d(80)], d(90), 3),  # qlib asserts idx > 0: the first calendar day fails
        ([d(1), d(80)], d(90), 3),
        ([d(5), d(10)], d(3), 5),
    ):
        cases.append({"ctor": ctor, "method": "truncate", "args": [seg, ts, days]})
    for seg, step, rtype in (
        ([d(5), d(100)], 20, "sliding"),
        ([d(5), d(100)], 20, "expanding"),
        ([d(5), d(n - 10)], 20, "sliding"),
        ([d(n - 20), d(n - 1)], 20, "sliding"),
        ([d(n - 20), d(n - 1)], 21, "sliding"),
        ([d(n - 20), d(n - 1)], 40, "sliding"),
        ([d(n - 20), None], 20, "sliding"),
        ([None, d(100)], 20, "sliding"),
        ([None, d(100)], 20, "expanding"),
        ([weekend, holiday], 7, "sliding"),
        ([d(5), d(100)], -3, "sliding"),
    ):
        for fut in (True, False):
            cases.append({"ctor": {"future": fut, "end_time": None}, "method": "shift", "args": [seg, step, rtype]})
    return cases


def template(segments: dict, handler_end="2020-06-30", handler=True) -> dict:
    t: dict = {
        "model": {"class": "LGBModel", "module_path": "qlib.contrib.model.gbdt", "kwargs": {"loss": "mse"}},
        "dataset": {"class": "DatasetH", "module_path": "qlib.data.dataset", "kwargs": {"segments": segments}},
        "record": [{"class": "SignalRecord", "module_path": "qlib.workflow.record_temp"}],
    }
    if handler is True:
        t["dataset"]["kwargs"]["handler"] = {
            "class": "Alpha158", "module_path": "qlib.contrib.data.handler",
            "kwargs": {"start_time": "2020-01-02", "end_time": handler_end, "fit_start_time": "2020-01-02",
                       "fit_end_time": "2020-05-29", "instruments": "all"},
        }
    elif handler is not None:
        t["dataset"]["kwargs"]["handler"] = handler
    return t


def rolling_cases(cal: pd.DatetimeIndex) -> list[dict]:
    d = lambda i: cal[i].strftime("%Y-%m-%d")  # noqa: E731
    n = len(cal)
    holiday = next(x for x in pd.bdate_range(cal[120], cal[-1]) if x not in cal).strftime("%Y-%m-%d")
    base = {"train": [d(3), d(99)], "valid": [d(100), d(139)], "test": [d(140), d(229)]}
    cases = []

    def add(name, segs, gen=None, **tk):
        cases.append({"name": name, "gen": gen or {}, "task": template(segs, **tk)})

    for rtype in ("expanding", "sliding"):
        for step in (20, 40, 120):
            add(f"{rtype}_step{step}", base, {"step": step, "rtype": rtype})
        add(f"{rtype}_trunc3", base, {"step": 40, "rtype": rtype, "trunc_days": 3})
    add("default_gen", base)
    add("trunc0_step20", base, {"step": 20, "trunc_days": 0})
    add("test_end_none", {**base, "test": [d(140), None]}, {"step": 40})
    add("test_end_minus1", {**base, "test": [d(140), "-1"]}, {"step": 40})
    add("test_end_beyond", {**base, "test": [d(140), "2031-01-01"]}, {"step": 40})
    add("test_end_at_cal_end", {**base, "test": [d(140), d(n - 1)]}, {"step": 40})
    add("test_end_one_before_cal_end", {**base, "test": [d(140), d(n - 2)]}, {"step": 20, "rtype": "sliding"})
    add("handler_end_before_test", base, {"step": 40}, handler_end=d(120))
    add("handler_end_after_test", base, {"step": 40}, handler_end="2030-12-31")
    add("handler_end_none", base, {"step": 40}, handler_end=None)
    add("handler_string", base, {"step": 40}, handler="file:///tmp/Alpha158.abc.pkl")
    add("no_handler", base, {"step": 40}, handler=None)
    add("no_mod_func", base, {"step": 40, "ds_extra_mod_func": None}, handler_end=d(120))
    add("non_trading_dates", {"train": ["2019-12-28", holiday], "valid": [d(100), "2020-07-05"],
                              "test": [holiday, "2020-11-01"]}, {"step": 20, "rtype": "sliding"})
    add("open_ended_last_window", base | {"test": [d(230), None]}, {"step": 40}, handler_end=d(120))
    add("open_ended_later_window", base | {"test": [d(200), None]}, {"step": 40}, handler_end=d(120))
    add("issue1660_one_past_calendar", base | {"test": [d(210), None]}, {"step": 20}, handler_end=d(120))
    add("issue1660_sliding", base | {"test": [d(190), d(n - 1)]}, {"step": 30, "rtype": "sliding"})
    add("custom_keys", {"trn": [d(3), d(99)], "tst": [d(140), d(229)]},
        {"step": 40, "test_key": "tst", "train_key": "trn"})
    add("trunc_train_from_first_day", base | {"train": [d(0), d(99)]}, {"step": 40, "trunc_days": 3})
    add("train_only_before_test", {"train": [d(3), d(139)], "test": [d(140), None]}, {"step": 60, "trunc_days": 2})
    # invalid templates (ours: ConfigError before anything runs)
    add("invalid_test_start_after_calendar", base | {"test": ["2031-01-01", None]}, {"step": 40})
    add("invalid_valid_end_before_calendar", base | {"valid": ["2018-01-01", "2019-01-01"]}, {"step": 40})
    add("invalid_inverted_valid", base | {"valid": [d(139), d(100)]}, {"step": 40})
    add("invalid_empty_test", base | {"test": [holiday, holiday]}, {"step": 40})
    return cases


def horizon_cases(cal: pd.DatetimeIndex) -> list[dict]:
    d = lambda i: cal[i].strftime("%Y-%m-%d")  # noqa: E731
    base = {"train": [d(3), d(99)], "valid": [d(100), d(139)], "test": [d(140), d(229)]}
    return [
        {"name": "h1_5_20", "gen": {"horizon": [1, 5, 20]}, "task": template(base)},
        {"name": "default", "gen": {}, "task": template(base)},
        {"name": "leak0", "gen": {"horizon": [1, 10], "label_leak_n": 0}, "task": template(base)},
        {"name": "test_open", "gen": {"horizon": [2]}, "task": template(base | {"test": [d(140), None]})},
        {"name": "test_beyond", "gen": {"horizon": [2]}, "task": template(base | {"test": [d(140), "2031-01-01"]})},
        {"name": "valid_overlaps_test", "gen": {"horizon": [3]},
         "task": template(base | {"valid": [d(100), d(200)]})},
        {"name": "train_from_first_day", "gen": {"horizon": [1]}, "task": template(base | {"train": [d(0), d(99)]})},
    ]


def generator_cases(cal: pd.DatetimeIndex) -> list[dict]:
    d = lambda i: cal[i].strftime("%Y-%m-%d")  # noqa: E731
    a = template({"train": [d(3), d(99)], "valid": [d(100), d(139)], "test": [d(140), d(229)]})
    b = template({"train": [d(3), d(119)], "valid": [d(120), d(159)], "test": [d(160), None]}, handler_end=d(170))
    return [
        {"name": "rolling_x_horizon", "tasks": [a, b],
         "gens": [["rolling", {"step": 40, "rtype": "sliding"}], ["horizon", {"horizon": [1, 5]}]]},
        {"name": "horizon_x_rolling", "tasks": a,
         "gens": [["horizon", {"horizon": [1, 5]}], ["rolling", {"step": 60}]]},
        {"name": "single_gen", "tasks": b, "gens": ["rolling", {"step": 40}]},
    ]


# ----------------------------------------------------------------------------------------------- qlib side
def run_variant(root: Path, cal: pd.DatetimeIndex, fcal: pd.DatetimeIndex) -> dict:
    """qlib's raw output for every case, plus ``fixed`` where qlib + the documented fixes differ.

    The fixes (docs/rolling.md, "Deviations") are applied as minimal patches on qlib's own classes:
    ``truncate`` accepts the first calendar day (qlib asserts ``idx > 0``) and keeps an unbounded start /
    cuts an unbounded end; ``align_time`` outside the calendar is a ConfigError; ``gen_following_tasks``
    stops when the next test window would start one day past the calendar (#1660); ``handler_mod`` sets
    the handler end to None for an open-ended test segment (#2068).
    """
    import qlib
    from qlib.workflow.task.gen import MultiHorizonGenBase, RollingGen, handler_mod, task_generator
    from qlib.workflow.task.utils import TimeAdjuster

    qlib.init(provider_uri=str(root), region="us")

    class FixedTA(TimeAdjuster):
        def truncate(self, segment, test_start, days):
            test_idx = self.align_idx(test_start)
            new_seg = []
            for i, tp in enumerate(segment):
                if tp is None and i == 0:
                    new_seg.append(None)
                    continue
                tp_idx = test_idx - days if tp is None else min(self.align_idx(tp), test_idx - days)
                if tp_idx < 0:
                    raise _ConfigError("truncation before the calendar start")
                new_seg.append(self.get(tp_idx))
            return tuple(new_seg)

        def align_time(self, time_point, tp_type="start"):
            if time_point is None:
                return None
            if tp_type == "end" and str(time_point) == "-1":
                return self.cals[-1]
            idx = self.align_idx(time_point, tp_type=tp_type)
            if idx < 0 or idx >= len(self.cals):
                raise _ConfigError("time point outside the calendar")
            return self.cals[idx]

    def fixed_handler_mod(task, rg):
        try:
            kw = task["dataset"]["kwargs"]["handler"]["kwargs"]
            _ = kw["end_time"]
            if task["dataset"]["kwargs"]["segments"][rg.test_key][1] is None:
                kw["end_time"] = None
                return
        except (KeyError, TypeError):
            pass
        handler_mod(task, rg)

    class FixedRollingGen(RollingGen):
        def __init__(self, **kw):
            if "ds_extra_mod_func" not in kw:
                kw["ds_extra_mod_func"] = fixed_handler_mod
            super().__init__(**kw)
            self.ta = FixedTA(future=True)

        def gen_following_tasks(self, task, test_end):
            it = super().gen_following_tasks(task, test_end)
            while True:
                try:
                    t = next(it)
                except StopIteration:
                    return
                except TypeError:  # #1660: None > Timestamp
                    return
                yield t

    class LabelHorizonGen(MultiHorizonGenBase):
        def set_horizon(self, task, hr):
            task["dataset"]["kwargs"]["handler"]["kwargs"]["label"] = (
                [f"Ref($close, -{hr + 1})/Ref($close, -1) - 1"], ["LABEL0"])

    class FixedLabelHorizonGen(LabelHorizonGen):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.ta = FixedTA()

    def make_gen(kind, kw, fixed=False):
        if kind == "rolling":
            return (FixedRollingGen if fixed else RollingGen)(**kw)
        return (FixedLabelHorizonGen if fixed else LabelHorizonGen)(**kw)

    def with_fixed(raw, fn):
        fixed = run(fn)
        if fixed.get("error") == "_ConfigError":
            fixed["error"] = "ConfigError"
        return {**raw, "fixed": fixed} if fixed != raw else raw

    def ta_call(case, fixed):
        ta = (FixedTA if fixed else TimeAdjuster)(**case["ctor"])
        return getattr(ta, case["method"])(*[tup(a) for a in case["args"]])

    def gen_call(kind, case, fixed):
        return make_gen(kind, case["gen"], fixed).generate(tup(copy.deepcopy(case["task"])))

    def product_call(case, fixed):
        tasks = case["tasks"]
        tasks = [tup(copy.deepcopy(t)) for t in tasks] if isinstance(tasks, list) else tup(copy.deepcopy(tasks))
        gens = case["gens"]
        gens = make_gen(*gens, fixed) if isinstance(gens[0], str) else [make_gen(k, kw, fixed) for k, kw in gens]
        return task_generator(tasks, gens)

    def record(case, call):
        return {**case, **with_fixed(run(functools.partial(call, case, False)), functools.partial(call, case, True))}

    out: dict = {
        "time_adjuster": [record(c, ta_call) for c in ta_cases(cal, fcal)],
        "rolling": [record(c, functools.partial(gen_call, "rolling")) for c in rolling_cases(cal)],
        "multi_horizon": [record(c, functools.partial(gen_call, "horizon")) for c in horizon_cases(cal)],
        "task_generator": [record(c, product_call) for c in generator_cases(cal)],
    }
    return out


class _ConfigError(Exception):
    """Stands for qlib_prefect's ConfigError in the patched ("fixed") oracle."""


def _dump(result: dict) -> str:
    """Readable but compact JSON: one line per case."""
    head = {k: v for k, v in result.items() if k != "variants"}
    lines = ["{", *[f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()], ' "variants": {']
    for vi, (variant, r) in enumerate(result["variants"].items()):
        lines.append(f"  {json.dumps(variant)}: {{")
        items = list(r.items())
        for i, (k, v) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            if isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"   {json.dumps(k)}: [")
                lines.extend(f"    {json.dumps(c)}{',' if j < len(v) - 1 else ''}" for j, c in enumerate(v))
                lines.append(f"   ]{comma}")
            else:
                lines.append(f"   {json.dumps(k)}: {json.dumps(v)}{comma}")
        lines.append("  }" + ("," if vi < len(result["variants"]) - 1 else ""))
    lines.extend([" }", "}"])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/golden/tasks")
    args = ap.parse_args()
    out = Path(args.out)
    cal = make_calendar(N_DAYS)
    fcal = make_calendar(N_DAYS + N_FUTURE)
    import qlib

    result: dict = {"qlib_version": qlib.__version__, "pandas": pd.__version__, "variants": {}}
    for variant, future in (("plain", False), ("future", True)):
        root = out / "data" / variant
        write_dir(root, future)
        result["variants"][variant] = {
            "data": f"data/{variant}", "calendar": [cal[0].isoformat(), cal[-1].isoformat(), len(cal)],
            "future_calendar": ([fcal[0].isoformat(), fcal[-1].isoformat(), len(fcal)] if future else None),
            **run_variant(root.resolve(), cal, fcal),
        }
    text = _dump(result)
    tmp = out / "goldens.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "goldens.json")
    n = {v: {k: len(x) for k, x in r.items() if isinstance(x, list) and k != "calendar"}
         for v, r in result["variants"].items()}
    print(f"wrote {out / 'goldens.json'}: {n}")


if __name__ == "__main__":
    main()
