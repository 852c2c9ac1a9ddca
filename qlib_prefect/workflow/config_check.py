"""Checks of a workflow config against its data, before anything computes (issue 15 item 10).

qlib finds these mistakes late: a segment outside the calendar, an unknown market or benchmark, a ``$field`` with
no ``.bin`` files or an unknown operator fail (or silently give empty frames) after the dataset and training stages.
Here they are found from the provider's small files only (calendar, instruments lists, the first bytes of a few
``.bin`` files) and reported together, each naming its YAML key path and value:

* dates (handler ``start_time``/``end_time``/``fit_*``, every segment, every backtest range): ``start <= end``, and
  the range holds trading days of the calendar (a start after the calendar's last day, or an end before its first);
* ``instruments``: a market name must have ``instruments/<name>.txt``; a list of codes must have feature folders;
* ``benchmark`` (a code): ``features/<code>/close.<freq>.bin`` with data inside the backtest range;
* expressions written in the config (handler ``label``, ``data_loader`` feature/label lists): they parse with the
  registered operators (``qlib_init.custom_ops`` included) and every ``$field`` has ``.bin`` files.

Nothing is written; the data is not loaded. Raises one :class:`~qlib_prefect.errors.ConfigError` listing every
problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError, QlibPrefectError

__all__ = ["check_config_data", "check_workflow_config"]

_HANDLER = "task.dataset.kwargs.handler.kwargs"
_SEGMENTS = "task.dataset.kwargs.segments"


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        return None  # malformed dates are the schema validation's to report


def _calendar(root: Path, freq: str) -> pd.DatetimeIndex | None:
    path = root / "calendars" / f"{freq}.txt"
    if not path.is_file():
        return None
    days = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DatetimeIndex(pd.to_datetime(days)) if days else None


class _Checker:
    def __init__(self, root: Path, freq: str) -> None:
        self.root, self.freq = root, freq
        self.problems: list[str] = []
        self.cal = _calendar(root, freq)
        self._codes: list[str] | None = None

    def fail(self, key: str, text: str) -> None:
        self.problems.append(f"{key}: {text}")

    # ---------------------------------------------------------------------------------------------- dates
    def date_range(self, key: str, start: Any, end: Any, start_key: str | None = None,
                   end_key: str | None = None) -> None:
        s, e = _ts(start), _ts(end)
        sk, ek = start_key or f"{key}.start", end_key or f"{key}.end"
        if s is not None and e is not None and s > e:
            self.fail(key, f"start {s.date()} is after end {e.date()}")
            return
        if self.cal is None:
            return
        first, last = self.cal[0], self.cal[-1]
        span = f"the data's calendar ({self.root / 'calendars' / (self.freq + '.txt')}) runs {first.date()} .. " \
               f"{last.date()}"
        if s is not None and s > last:
            self.fail(sk, f"{s.date()} is after the last trading day: {span}; move the date inside it")
        if e is not None and e < first:
            self.fail(ek, f"{e.date()} is before the first trading day: {span}; move the date inside it")

    # ---------------------------------------------------------------------------------------------- names
    def market(self, key: str, instruments: Any) -> None:
        if isinstance(instruments, str):
            path = self.root / "instruments" / f"{instruments.lower()}.txt"
            if not path.is_file():
                known = sorted(p.stem for p in (self.root / "instruments").glob("*.txt"))
                self.fail(key, f"unknown market {instruments!r}: no {path} (markets of this data: "
                               f"{', '.join(known) or 'none'})")
            else:
                self._codes = [ln.split("\t")[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()
                               if ln.strip()][:3]
        elif isinstance(instruments, (list, tuple)):
            missing = [c for c in instruments if isinstance(c, str) and not self._feature_dir(c).is_dir()]
            if missing:
                self.fail(key, f"no data for instrument(s) {', '.join(map(repr, missing[:10]))} "
                               f"(no folder under {self.root / 'features'})")
            self._codes = [c for c in instruments if isinstance(c, str) and c not in missing][:3]

    def _feature_dir(self, code: str) -> Path:
        return self.root / "features" / code.lower()

    def benchmark(self, key: str, bench: Any, start: Any, end: Any) -> None:
        if not isinstance(bench, str) or bench.startswith("<"):
            return
        path = self._feature_dir(bench) / f"close.{self.freq}.bin"
        if not path.is_file():
            self.fail(key, f"benchmark {bench!r} has no data: no {path}; use a code of this data or benchmark: null")
            return
        if self.cal is None:
            return
        size = path.stat().st_size // 4 - 1
        with path.open("rb") as f:
            head = np.frombuffer(f.read(4), dtype="<f4")
        if size <= 0 or not len(head) or not np.isfinite(head[0]):
            self.fail(key, f"benchmark {bench!r}: {path} holds no values")
            return
        i0 = int(head[0])
        lo, hi = self.cal[min(i0, len(self.cal) - 1)], self.cal[min(i0 + size - 1, len(self.cal) - 1)]
        s, e = _ts(start) or self.cal[0], _ts(end) or self.cal[-1]
        if s > hi or e < lo:
            self.fail(key, f"benchmark {bench!r} has data {lo.date()} .. {hi.date()}, none in the backtest range "
                           f"{s.date()} .. {e.date()}")

    # ---------------------------------------------------------------------------------------------- expressions
    def expression(self, key: str, text: Any) -> None:
        from qlib_prefect.data.expression.nodes import Feature
        from qlib_prefect.data.expression.parser import parse

        if not isinstance(text, str):
            return
        try:
            tree = parse(text)
        except QlibPrefectError as e:
            self.fail(key, f"{text!r}: {e}")
            return
        stack, fields = [tree], set()
        while stack:
            node = stack.pop()
            if isinstance(node, Feature) and not node.pit:
                fields.add(node.name)
            stack.extend(node.children())
        for name in sorted(fields):
            if not self._field_exists(name):
                self.fail(key, f"{text!r}: unknown field ${name} (no {name}.{self.freq}.bin under "
                               f"{self.root / 'features'})")

    def _field_exists(self, name: str) -> bool:
        codes = self._codes or []
        if not codes:
            feats = self.root / "features"
            codes = [p.name for _, p in zip(range(3), feats.iterdir(), strict=False)] if feats.is_dir() else []
        return any((self._feature_dir(c) / f"{name.lower()}.{self.freq}.bin").is_file() for c in codes)


def _expressions(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """Expression strings of a fields description (``[exprs, names]``, ``{group: ...}``, ``[exprs]``)."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _expressions(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], (list, tuple)) and isinstance(value[1], (list, tuple)):
            value = value[0]  # (expressions, names)
            key = f"{key}.0"
        for i, v in enumerate(value):
            yield from _expressions(v, f"{key}.{i}")


def _backtests(task: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for i, rec in enumerate(task.get("record") or []):
        if not isinstance(rec, dict):
            continue
        conf = (rec.get("kwargs") or {}).get("config") if isinstance(rec.get("kwargs"), dict) else None
        bt = conf.get("backtest") if isinstance(conf, dict) else None
        if isinstance(bt, dict):
            yield f"task.record.{i}.kwargs.config.backtest", bt


def check_config_data(task: dict[str, Any], root: Path, *, freq: str = "day", source: str = "") -> None:
    """Check ``task`` (a qrun ``task`` section) against the qlib-format data at ``root`` (see the module docstring).

    ``source`` (the config file) prefixes the message. Expressions are parsed with the operators registered now
    (call ``init`` with the config's ``qlib_init`` first for its ``custom_ops``).

    Raises:
        ConfigError: every problem found, one per line, each ``key.path: what (value), what to do``.
    """
    root = Path(root)
    c = _Checker(root, freq)
    if not root.is_dir():
        c.fail("qlib_init.provider_uri", f"{root} is not a directory (no qlib-format data there)")
    elif c.cal is None:
        c.fail("qlib_init.provider_uri", f"{root} has no calendar calendars/{freq}.txt (not qlib-format data?)")
    dataset = task.get("dataset") if isinstance(task, dict) else None
    dkw = dataset.get("kwargs") if isinstance(dataset, dict) else None
    handler = dkw.get("handler") if isinstance(dkw, dict) else None
    hkw = handler.get("kwargs") if isinstance(handler, dict) else None
    if root.is_dir() and isinstance(hkw, dict):
        if "instruments" in hkw:
            c.market(f"{_HANDLER}.instruments", hkw["instruments"])
        c.date_range(_HANDLER, hkw.get("start_time"), hkw.get("end_time"), f"{_HANDLER}.start_time",
                     f"{_HANDLER}.end_time")
        c.date_range(_HANDLER, hkw.get("fit_start_time"), hkw.get("fit_end_time"), f"{_HANDLER}.fit_start_time",
                     f"{_HANDLER}.fit_end_time")
        if "label" in hkw:
            for key, text in _expressions(hkw["label"], f"{_HANDLER}.label"):
                c.expression(key, text)
        loader = hkw.get("data_loader")
        lkw = loader.get("kwargs") if isinstance(loader, dict) else None
        if isinstance(lkw, dict) and "config" in lkw:
            for key, text in _expressions(lkw["config"], f"{_HANDLER}.data_loader.kwargs.config"):
                c.expression(key, text)
    segments = dkw.get("segments") if isinstance(dkw, dict) else None
    if root.is_dir() and isinstance(segments, dict):
        for name, seg in segments.items():
            if isinstance(seg, (list, tuple)) and len(seg) == 2:
                c.date_range(f"{_SEGMENTS}.{name}", seg[0], seg[1], f"{_SEGMENTS}.{name}.0", f"{_SEGMENTS}.{name}.1")
    if root.is_dir() and isinstance(task, dict):
        for key, bt in _backtests(task):
            c.date_range(key, bt.get("start_time"), bt.get("end_time"), f"{key}.start_time", f"{key}.end_time")
            if "benchmark" in bt:
                c.benchmark(f"{key}.benchmark", bt["benchmark"], bt.get("start_time"), bt.get("end_time"))
    if c.problems:
        head = f"{source}: " if source else ""
        n = len(c.problems)
        raise ConfigError(f"{head}{n} problem{'s' if n > 1 else ''} with the data at {root}:\n  "
                          + "\n  ".join(c.problems))


def check_workflow_config(cfg: Any) -> None:
    """:func:`check_config_data` for a loaded ``WorkflowConfig``: the data of ``qlib_init.provider_uri`` (``~``
    expanded; for a ``{freq: uri}`` mapping the ``day`` one), operators including ``qlib_init.custom_ops``.
    A config without ``provider_uri`` is not checked (the data comes from elsewhere)."""
    from qlib_prefect.data.expression.operators import register_ops

    qinit = cfg.qlib_init or {}
    uri = qinit.get("provider_uri")
    freq = str(qinit.get("freq") or "day")
    if isinstance(uri, dict):
        uri = uri.get(freq) or next(iter(uri.values()), None)
    if not uri:
        return
    register_ops(qinit.get("custom_ops"))  # what init() does; unknown operator names are then reported
    source = str(cfg.path) if getattr(cfg, "path", None) is not None else ""
    check_config_data(cfg.task, Path(str(uri)).expanduser().resolve(), freq=freq, source=source)
