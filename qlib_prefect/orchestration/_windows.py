"""Rolling and multi-horizon window plans: the generated tasks, their cache keys and what each window reads.

A window's key hashes its task (processors refitted on its train segment, qlib#1620), the code version, the
``qlib_init`` settings and ``LocalProvider.fingerprint(until=...)`` of the dates it reads (handler end + the
label's look-ahead), so appending data or moving the test end only retrains the windows that read the new
dates. Windows whose handlers share a loader, instruments and start share one raw-feature group.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.orchestration._cache import resolve_dotted
from qlib_prefect.orchestration._leanflow import load_workflow_config
from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.workflow.pipeline import RECORD_MODULE

__all__ = [
    "GROUP_TAG",
    "KEY_TAG",
    "SUMMARY_ONLY",
    "SUMMARY_STAGE",
    "TEST_SEGMENT_TAG",
    "WINDOW_STAGE",
    "WINDOW_TAG",
    "RollingPlan",
    "WindowSpec",
    "data_fingerprint",
    "date_label",
    "horizon_tasks",
    "lookahead",
    "make_handler",
    "plan_multi_horizon",
    "plan_rolling",
    "plan_rows",
    "prepare_plan",
    "rolling_plan",
    "rolling_tasks",
    "until_date",
]

WINDOW_STAGE = "rolling_window"
SUMMARY_STAGE = "rolling_summary"
WINDOW_TAG = "qlib_prefect.rolling.window"
TEST_SEGMENT_TAG = "qlib_prefect.rolling.test_segment"
GROUP_TAG = "qlib_prefect.rolling.group"
KEY_TAG = "qlib_prefect.rolling.key"
#: record classes run once on the merged predictions instead of per window
SUMMARY_ONLY = ("PortAnaRecord", "MultiPassPortAnaRecord")

# ------------------------------------------------------------------------------------------ window specs
@dataclass(frozen=True)
class WindowSpec:
    """One generated task (a rolling window / a horizon) with its cache key."""

    index: int
    group: str  #: windows of one group are merged together (``"rolling"``, ``"h5"``...)
    task: dict[str, Any]  #: the window's task (records run per window only)
    key: str
    until: str | None  #: last date the window reads (None: all data)
    fingerprint: str
    raw_group: str | None  #: id of the raw-frame group (None: the handler cannot be fed a shared raw frame)

    @property
    def segments(self) -> dict[str, Any]:
        return self.task["dataset"]["kwargs"]["segments"]

    @property
    def test(self) -> tuple[Any, Any]:
        return tuple(self.segments["test"])  # type: ignore[return-value]

    @property
    def handler_end(self) -> Any:
        h = self.task["dataset"]["kwargs"].get("handler")
        return h.get("kwargs", {}).get("end_time") if isinstance(h, dict) else None

    def test_label(self) -> str:
        a, b = self.test
        return f"{date_label(a)}..{date_label(b)}"


@dataclass
class RollingPlan:
    windows: list[WindowSpec]
    summaries: dict[str, str]  #: group -> summary key
    summary_records: list[Any]
    raw_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)


def date_label(x: Any) -> str:
    return "None" if x is None else str(pd.Timestamp(x).date())


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":"), default=str).encode()).hexdigest()


def _record_name(rec: Any) -> str:
    if isinstance(rec, dict):
        return str(rec.get("class", ""))
    if isinstance(rec, str):
        return rec.rsplit(".", 1)[-1]
    return type(rec).__name__


def _split_records(task: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """(records run per window, records run on the merged predictions)."""
    recs = task.get("record") or []
    if not isinstance(recs, list):
        recs = [recs]
    window = [r for r in recs if _record_name(r) not in SUMMARY_ONLY]
    summary = [r for r in recs if _record_name(r) in SUMMARY_ONLY or _record_name(r) == "SigAnaRecord"]
    if not any(_record_name(r) == "SignalRecord" for r in window):
        window.insert(0, {"class": "SignalRecord", "module_path": RECORD_MODULE,
                          "kwargs": {"model": "<MODEL>", "dataset": "<DATASET>"}})
    if not any(_record_name(r) == "SigAnaRecord" for r in summary):
        summary.insert(0, {"class": "SigAnaRecord", "module_path": RECORD_MODULE, "kwargs": {}})
    return window, summary


def _refit(task: dict[str, Any]) -> None:
    """qlib#1620: the handler's processors learn on this window's train segment (in place)."""
    ds = task["dataset"]["kwargs"]
    h = ds.get("handler")
    train = (ds.get("segments") or {}).get("train")
    if not isinstance(h, dict) or train is None:
        return
    kw = h.setdefault("kwargs", {})
    if "fit_start_time" not in kw and "fit_end_time" not in kw:
        return
    start = train[0] if train[0] is not None else kw.get("start_time")
    kw["fit_start_time"], kw["fit_end_time"] = start, train[1]


def lookahead(handler: Any) -> float:
    """Dates after its end the handler's loader reads (the label's look-ahead); inf when unknown."""
    from qlib_prefect.data.expression import parse
    from qlib_prefect.data.expression.engine import window_size

    fields = getattr(getattr(handler, "data_loader", None), "fields", None)
    if fields is None:
        return float("inf")
    groups = fields.values() if isinstance(fields, dict) else [fields]
    out = 0.0
    try:
        for exprs, _names in groups:
            for e in exprs:
                out = max(out, float(window_size(parse(e))[1]))
    except Exception:
        return float("inf")
    return out


def make_handler(hcfg: dict[str, Any], **override: Any) -> Any:
    from qlib_prefect.data.handler import DataHandler
    from qlib_prefect.utils import init_instance_by_config

    cfg = copy.deepcopy(hcfg)
    cfg.setdefault("kwargs", {}).update({"init_data": False, **override})
    return init_instance_by_config(cfg, "qlib_prefect.data.handler", accept_types=DataHandler,
                                   _where="task.dataset.kwargs.handler")


def until_date(cal: pd.DatetimeIndex, end: Any, look: float) -> str | None:
    """The last calendar date a handler ending at ``end`` reads (None: beyond the data -> all data)."""
    if end is None or not np.isfinite(look):
        return None
    i = int(cal.searchsorted(pd.Timestamp(end), side="right")) - 1 + int(look)
    return None if i >= len(cal) - 1 or i < 0 else str(cal[i].date())


def data_fingerprint(provider: Any, until: str | None, memo: dict) -> str:
    if until not in memo:
        try:
            memo[until] = provider.fingerprint(until=until) if until is not None else provider.fingerprint()
        except TypeError:  # a provider without prefix fingerprints: any data change retrains
            memo[until] = provider.fingerprint()
    return memo[until]


def _build_plan(tasks: list[tuple[str, dict[str, Any]]], template: dict[str, Any], *, env: str,
                refit_processors: bool) -> RollingPlan:
    from qlib_prefect._version import code_version
    from qlib_prefect.config.hashing import canonical_hash, describe
    from qlib_prefect.data.handler import DataHandler
    from qlib_prefect.data.registry import get_provider

    provider = get_provider()
    cal = pd.DatetimeIndex(provider.calendar())
    fps: dict[str | None, str] = {}
    windows: list[WindowSpec] = []
    raw_groups: dict[str, dict[str, Any]] = {}
    summary_records: list[Any] = []
    for i, (group, t) in enumerate(tasks):
        t = resolve_dotted(t)
        if refit_processors:
            _refit(t)
        win_recs, summary_records = _split_records(t)
        t["record"] = win_recs
        hcfg = t["dataset"].get("kwargs", {}).get("handler")
        until, raw_group = None, None
        if isinstance(hcfg, dict):
            handler = make_handler(hcfg)
            if not isinstance(handler, DataHandler):  # pragma: no cover - accept_types guarantees it
                raise ConfigError("task.dataset.kwargs.handler: not a data handler")
            until = until_date(cal, handler.end_time, lookahead(handler))
            try:
                spec = {"loader": describe(handler.loader_config), "instruments": handler.instruments,
                        "start": handler.start_time, "class": type(handler).__name__}
                raw_group = canonical_hash(spec)[:16]
                g = raw_groups.setdefault(raw_group, {"handler": hcfg, "spec": spec, "ends": []})
                g["ends"].append(handler.end_time)
            except TypeError:
                raw_group = None
        fp = data_fingerprint(provider, until, fps)
        try:
            thash = canonical_hash(t)
        except TypeError as e:
            raise ConfigError(f"rolling window {i}: the task cannot be hashed ({e})") from e
        key = _sha("rolling-window", thash, fp, env, code_version())
        windows.append(WindowSpec(index=i, group=group, task=t, key=key, until=until, fingerprint=fp,
                                  raw_group=raw_group))
    summaries: dict[str, str] = {}
    for group in dict.fromkeys(w.group for w in windows):
        keys = [w.key for w in windows if w.group == group]
        summaries[group] = _sha("rolling-summary", group, keys, canonical_hash(summary_records), env,
                                code_version())
    return RollingPlan(windows=windows, summaries=summaries, summary_records=summary_records, raw_groups=raw_groups,
                 template=template)


# ------------------------------------------------------------------------------------------ task generation
def rolling_tasks(template: dict[str, Any], step: int, rtype: str, trunc_days: int | None) -> list[dict]:
    from qlib_prefect.task.gen import RollingGen, validate_segments

    if rtype not in (RollingGen.ROLL_EX, RollingGen.ROLL_SD):
        raise ConfigError(f"rolling: rtype must be 'expanding' or 'sliding', got {rtype!r}")
    if int(step) <= 0:
        raise ConfigError(f"rolling: step must be a positive number of trading days, got {step!r}")
    validate_segments(template)
    return RollingGen(step=int(step), rtype=rtype, trunc_days=trunc_days).generate(template)


def prepare_plan(config: Any, gen: Any, refit_processors: bool) -> tuple[Any, RollingPlan]:
    """Load + init, generate ``[(group, task)]`` with ``gen(template)`` and key every window."""
    from qlib_prefect.orchestration._cache import env_hash

    cfg = load_workflow_config(config)
    import qlib_prefect

    qlib_prefect.init(**cfg.qlib_init)
    template = resolve_dotted(cfg.task)
    if "dataset" not in template or "model" not in template:
        raise ConfigError("task: needs both 'model' and 'dataset' sections")
    tasks = gen(template)
    if not tasks:
        raise ConfigError("rolling: the generator produced no task (is the test segment inside the data?)")
    return cfg, _build_plan(tasks, template, env=env_hash(cfg.qlib_init), refit_processors=refit_processors)


def plan_rows(plan: RollingPlan, store: ContentStore) -> list[dict[str, Any]]:
    rows = []
    for w in plan.windows:
        seg = {k: [date_label(x) for x in v] for k, v in w.segments.items()}
        rows.append({"window": w.index, "group": w.group, "segments": seg, "handler_end": date_label(w.handler_end),
                     "reads_until": w.until, "key": w.key, "cached": store.exists(WINDOW_STAGE, w.key)})
    for group, key in plan.summaries.items():
        rows.append({"window": "summary", "group": group, "segments": {}, "handler_end": None, "reads_until": None,
                     "key": key, "cached": store.exists(SUMMARY_STAGE, key)})
    return rows


def rolling_plan(config: Any, *, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
                 refit_processors: bool = True) -> tuple[Any, RollingPlan]:
    """``(config, plan)`` of a rolling job: the process initialised for its data, every window keyed."""
    gen = lambda t: [("rolling", x) for x in rolling_tasks(t, step, rtype, trunc_days)]  # noqa: E731
    return prepare_plan(config, gen, refit_processors)


def plan_rolling(config: Any, *, step: int = 40, rtype: str = "expanding", trunc_days: int | None = None,
                 refit_processors: bool = True) -> list[dict[str, Any]]:
    """Every window's segments, handler end, key and whether it is cached (a dry run: nothing is computed)."""
    _cfg, plan = rolling_plan(config, step=step, rtype=rtype, trunc_days=trunc_days,
                              refit_processors=refit_processors)
    return plan_rows(plan, ContentStore())


def horizon_tasks(template: dict[str, Any], horizon: list[int], label_leak_n: int, step: int | None,
                   rtype: str, trunc_days: int | None) -> list[tuple[str, dict]]:
    from qlib_prefect.task.gen import MultiHorizonGen, validate_segments

    validate_segments(template)
    out: list[tuple[str, dict]] = []
    for h in horizon:
        for t in MultiHorizonGen(horizon=[int(h)], label_leak_n=label_leak_n).generate(template):
            subs = rolling_tasks(t, step, rtype, trunc_days) if step else [t]
            out.extend((f"h{int(h)}", s) for s in subs)
    return out


def plan_multi_horizon(config: Any, *, horizon: list[int], label_leak_n: int = 2, step: int | None = None,
                       rtype: str = "expanding", trunc_days: int | None = None,
                       refit_processors: bool = True) -> list[dict[str, Any]]:
    """:func:`plan_rolling` for :func:`multi_horizon_workflow`."""
    gen = lambda t: horizon_tasks(t, list(horizon), label_leak_n, step, rtype, trunc_days)  # noqa: E731
    _cfg, plan = prepare_plan(config, gen, refit_processors)
    return plan_rows(plan, ContentStore())
