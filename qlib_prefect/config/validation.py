"""Validation of a merged workflow config: every problem found, one line each, in one :class:`ConfigError`.

Structure is checked with :mod:`qlib_prefect.config.models`; then every class config (``task.model``,
``task.dataset`` and nested handler/loader/processors, each record, PortAnaRecord's strategy/executor,
``qlib_init.exp_manager``) is resolved and its ``kwargs`` checked against the constructor signature
(:mod:`qlib_prefect.config.signature`). qlib checks none of this before running.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from qlib_prefect.config.models import (
    EXCHANGE_KWARGS,
    QLIB_INIT_KEYS,
    ClassConfig,
    PortAnalysisConfig,
    WorkflowSpec,
)
from qlib_prefect.config.semantics import check_semantics
from qlib_prefect.config.signature import signature_info
from qlib_prefect.errors import ConfigError

__all__ = ["RUNTIME_PLACEHOLDERS", "Source", "Validator"]

#: constructor arguments supplied at run time, never required in a config.
_INJECTED = frozenset({"recorder", "model", "dataset", "trade_exchange", "level_infra", "common_infra"})
#: default module for a class config found under this kwargs key (when the class is not in QLIB_ALIASES).
_DEFAULT_MODULES = {
    "handler": "qlib_prefect.data.handler",
    "data_loader": "qlib_prefect.data.loader",
    "infer_processors": "qlib_prefect.data.processor",
    "learn_processors": "qlib_prefect.data.processor",
    "shared_processors": "qlib_prefect.data.processor",
    "record": "qlib_prefect.workflow.record_temp",
    "strategy": "qlib_prefect.backtest.strategy",
    "executor": "qlib_prefect.backtest.executor",
    "inner_executor": "qlib_prefect.backtest.executor",
    "exp_manager": "qlib_prefect.workflow.expm",
}


def _is_subclass_named(cls: type, module: str, name: str) -> bool:
    return any(k.__module__ == module and k.__name__ == name for k in getattr(cls, "__mro__", ()))


def _suggest(word: str, options: Any) -> str | None:
    hits = difflib.get_close_matches(str(word), sorted(set(options)), n=1, cutoff=0.6)
    return hits[0] if hits else None


def _is_class_config(v: Any) -> bool:
    return isinstance(v, Mapping) and isinstance(v.get("class"), (str, type))


def _resolve(cfg: Mapping[str, Any], default_module: str | None, where: str) -> type:
    from qlib_prefect.config.classpath import QLIB_ALIASES, resolve_class

    spec = cfg["class"]
    if isinstance(spec, type):
        return spec
    module_path = cfg.get("module_path")
    if module_path is not None and not isinstance(module_path, str):
        return getattr(module_path, spec)  # a module object (dict configs)
    if module_path is None and "." in spec:
        module_path, _, spec = spec.rpartition(".")
    if module_path is None and spec not in QLIB_ALIASES and default_module is not None:
        module_path = default_module
    return resolve_class(spec, module_path, where=where)


# -------------------------------------------------------------------------------------------- sources
class Source(typing.NamedTuple):
    """One file of a config chain (the top file first, then its bases), for naming the file at fault."""

    name: str  # how the file is named in messages
    data: dict  # the file's own parsed dict (before merging)


def _path_in(data: Any, parts: tuple) -> bool:
    cur = data
    for p in parts:
        if isinstance(cur, Mapping) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and isinstance(p, int) and 0 <= p < len(cur):
            cur = cur[p]
        else:
            return False
    return True


def _fmt_path(parts: tuple) -> str:
    return ".".join(str(p) for p in parts)


class Validator:
    """Collects every problem of a merged config (errors raise together; warnings are emitted)."""

    def __init__(self, raw: dict, sources: list[Source], *, deep: bool) -> None:
        self.raw = raw
        self.sources = sources
        self.deep = deep
        self.errors: list[str] = []
        self.warnings: list[str] = []

    # messages -------------------------------------------------------------------------------------
    def _origin(self, parts: tuple) -> str | None:
        if not self.sources:
            return None
        for src in self.sources:  # most derived first
            if parts and _path_in(src.data, parts):
                return src.name
        return self.sources[0].name

    def error(self, parts: tuple, msg: str) -> None:
        origin = self._origin(parts)
        suffix = f" (file {origin})" if origin else ""
        self.errors.append(f"{_fmt_path(parts) or '<top>'}: {msg}{suffix}")

    def warn(self, parts: tuple, msg: str) -> None:
        origin = self._origin(parts)
        suffix = f" (file {origin})" if origin else ""
        self.warnings.append(f"{_fmt_path(parts) or '<top>'}: {msg}{suffix}")

    def model(self, model_cls: type[BaseModel], data: Any, prefix: tuple) -> BaseModel | None:
        """Validate ``data`` with a pydantic model, turning its errors into path messages."""
        try:
            return model_cls.model_validate(data)
        except ValidationError as e:
            for er in e.errors():
                loc = tuple(er["loc"])
                if er["type"] == "extra_forbidden":
                    allowed = _allowed_keys(model_cls, loc[:-1])
                    hint = _suggest(loc[-1], allowed)
                    if model_cls is PortAnalysisConfig and loc[:-1] == ("backtest",) and loc[-1] in EXCHANGE_KWARGS:
                        msg = f"unknown key; an Exchange argument belongs under 'exchange_kwargs.{loc[-1]}'"
                    elif hint:
                        msg = f"unknown key; did you mean {hint!r}?"
                    else:
                        msg = f"unknown key; allowed: {', '.join(allowed)}"
                elif er["type"] == "missing":
                    msg = "required key missing"
                elif loc and loc[-1] == "[key]":
                    loc, msg = loc[:-1], f"keys must be strings (got {er.get('input')!r})"
                elif er["type"] in ("model_type", "dict_type", "model_attributes_type"):
                    msg = f"expected a mapping, got {type(er.get('input')).__name__}"
                elif er["type"] == "list_type":
                    msg = f"expected a list, got {type(er.get('input')).__name__}"
                else:
                    text = str(er["msg"]).removeprefix("Value error, ")
                    msg = text if "got" in text else f"{text} (got {er.get('input')!r})"
                self.error(prefix + loc, msg)
            return None

    # checks ---------------------------------------------------------------------------------------
    def run(self) -> WorkflowSpec | None:
        raw = self.raw
        known = set(WorkflowSpec.model_fields)
        for key in raw:
            if key not in known and isinstance(key, str):
                hint = _suggest(key, known)
                if hint and hint not in raw and hint != "task":
                    self.warn((key,), f"unknown top-level key kept as-is (anchor block?); did you mean {hint!r}?")
        spec = self.model(WorkflowSpec, raw, ())
        if "task" not in raw:
            typo = [k for k in raw if isinstance(k, str) and _suggest(k, ["task"]) == "task"]
            if typo:
                self.errors[:] = [e for e in self.errors if not e.startswith("task: required key missing")]
                self.error(("task",), f"required key missing; did you mean {typo[0]!r} -> 'task'?")
        qi = raw.get("qlib_init")
        if isinstance(qi, Mapping):
            for key in qi:
                if key not in QLIB_INIT_KEYS:
                    hint = _suggest(key, QLIB_INIT_KEYS)
                    extra = f"; did you mean {hint!r}?" if hint else ""
                    self.warn(("qlib_init", key), f"unrecognized qlib config key (kept, as qlib does){extra}")
            if self.deep and isinstance(qi.get("exp_manager"), Mapping):
                self.check_class(qi["exp_manager"], ("qlib_init", "exp_manager"), _DEFAULT_MODULES["exp_manager"])
        task = raw.get("task")
        if isinstance(task, Mapping):
            self.check_placeholders(task)
            if "model" in task:
                self.check_class(task["model"], ("task", "model"), None)
            if "dataset" in task:
                self.check_class(task["dataset"], ("task", "dataset"), "qlib_prefect.data.dataset")
            rec = task.get("record")
            recs = rec if isinstance(rec, list) else ([] if rec is None else [rec])
            for i, r in enumerate(recs):
                parts = ("task", "record", i) if isinstance(rec, list) else ("task", "record")
                self.check_class(r, parts, _DEFAULT_MODULES["record"])
        check_semantics(raw, self.error)
        return spec

    def check_placeholders(self, task: Mapping[str, Any]) -> None:
        """Warn about ``<...>`` strings that will stay unreplaced at run time (a misspelled ``<PRED>`` or a
        dotted path that does not exist inside ``task``)."""
        stack: list[tuple[tuple, Any]] = [(("task",), task)]
        while stack:
            parts, node = stack.pop()
            items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
            for key, val in items:
                if isinstance(val, (Mapping, list)):
                    stack.append(((*parts, key), val))
                    continue
                m = _PLACEHOLDER_RE.match(val) if isinstance(val, str) else None
                if m is None or val in RUNTIME_PLACEHOLDERS:
                    continue
                name = m.group(1)
                if "." not in name and name.isupper():
                    hint = _suggest(val, RUNTIME_PLACEHOLDERS)
                    extra = f"; did you mean {hint!r}?" if hint else ""
                    self.error((*parts, key), f"placeholder {val!r} is not one qlib fills at run time{extra}")
                elif not _dotted_exists(task, name):
                    self.warn((*parts, key), f"placeholder {val!r} does not resolve inside task (left unchanged)")

    def check_class(self, node: Any, parts: tuple, default_module: str | None) -> None:
        if isinstance(node, str):
            if node.startswith("file://") or not self.deep:
                return
            cfg: Mapping[str, Any] = {"class": node}
        elif isinstance(node, Mapping):
            if self.model(ClassConfig, node, parts) is None:
                return
            cfg = node
        else:
            if node is None:
                self.error(parts, "expected a class config {class, module_path, kwargs}, got null")
            return  # an object given in a dict config
        kwargs = cfg.get("kwargs") or {}
        if not self.deep:
            return
        try:
            cls = _resolve(cfg, default_module, _fmt_path(parts) + ".class")
        except ConfigError as e:
            self.error((*parts, "class"), str(e).split(": ", 1)[-1])
            return
        except (ImportError, AttributeError) as e:
            self.error((*parts, "class"), f"cannot import {cfg.get('class')!r}: {e}")
            return
        if not isinstance(cls, type):
            return
        self.check_kwargs(cls, kwargs, (*parts, "kwargs"))
        is_port = _is_subclass_named(cls, "qlib_prefect.workflow.record_temp", "PortAnaRecord")
        for key, val in kwargs.items():
            if is_port and key == "config":
                if val is not None:
                    self.check_port_config(val, (*parts, "kwargs", "config"))
                continue
            sub_default = _DEFAULT_MODULES.get(str(key))
            if _is_class_config(val):
                self.check_class(val, (*parts, "kwargs", key), sub_default)
            elif isinstance(val, list):
                for i, item in enumerate(val):
                    if _is_class_config(item):
                        self.check_class(item, (*parts, "kwargs", key, i), sub_default)

    def check_kwargs(self, cls: type, kwargs: Mapping[str, Any], parts: tuple) -> None:
        info = signature_info(cls)
        name = cls.__name__
        if not info.open:
            for key in kwargs:
                if info.accepts(key):
                    continue
                hint = _suggest(key, info.accepted | info.sink_names)
                if hint:
                    msg = f"unknown parameter for {name}; did you mean {hint!r}?"
                elif info.sink:
                    msg = f"unknown parameter for {name} (not one of its arguments nor a {info.sink} parameter)"
                else:
                    allowed = ", ".join(sorted(info.accepted)) or "none"
                    msg = f"unknown parameter for {name}; accepted: {allowed}"
                self.error((*parts, key), msg)
        for req in sorted(info.required - set(kwargs) - _INJECTED):
            self.error(parts, f"missing required parameter {req!r} for {name}")

    def check_port_config(self, node: Any, parts: tuple) -> None:
        self.model(PortAnalysisConfig, node, parts)
        if not isinstance(node, Mapping):
            return
        if node.get("strategy") is not None:
            self.check_class(node["strategy"], (*parts, "strategy"), _DEFAULT_MODULES["strategy"])
        if node.get("executor") is not None:
            self.check_class(node["executor"], (*parts, "executor"), _DEFAULT_MODULES["executor"])


#: placeholders filled by the trainer (``<MODEL>``, ``<DATASET>``) and by PortAnaRecord (``<PRED>``).
RUNTIME_PLACEHOLDERS = ("<MODEL>", "<DATASET>", "<PRED>")
_PLACEHOLDER_RE = re.compile(r"<([^<>]+)>")


def _dotted_exists(obj: Any, name_path: str) -> bool:
    """Whether qlib's ``get_item_from_obj(obj, name_path)`` would find a value."""
    cur = obj
    for k in name_path.split("."):
        if isinstance(cur, Mapping) and k in cur:
            cur = cur[k]
        elif isinstance(cur, list) and k.isdigit() and int(k) < len(cur):
            cur = cur[int(k)]
        else:
            return False
    return True


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(model_cls: type[BaseModel], loc: tuple) -> list[str]:
    cur: type[BaseModel] | None = model_cls
    for part in loc:
        if isinstance(part, int) or cur is None:
            continue
        fields = {(f.alias or n): f for n, f in cur.model_fields.items()}
        field = fields.get(str(part))
        cur = _model_in(field.annotation) if field is not None else None
    if cur is None:
        return []
    return [f.alias or n for n, f in cur.model_fields.items()]
