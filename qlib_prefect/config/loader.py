"""Load and validate qrun-format workflow configs: ``load_config(path_or_dict) -> WorkflowConfig``.

What happens, in qrun's order (``qlib/cli/run.py``):

1. **Jinja2**: the file text is rendered as a template; undeclared variables are looked up in ``env``
   (default ``os.environ``). Undefined variables render as empty strings like qrun, and a
   :class:`ConfigWarning` lists them (``{{ X | default(5) }}`` is not reported).
2. **YAML** with YAML 1.2 scalars, like qrun's ``ruamel.yaml`` safe loader: ``1e-3`` is a float, ``yes``/``on``
   are strings, ``2008-01-01`` (unquoted) is a ``datetime.date`` (kept; downstream uses ``pd.Timestamp``).
   Anchors/aliases and ``<<`` merge keys work; a duplicated key is an error (ruamel refuses it too).
3. **BASE_CONFIG_PATH**: the base file (relative to the config file's directory, then to the working directory)
   is loaded the same way and the config is deep-merged on top (qlib's ``update_config``; ``"__DROP__"`` deletes
   a key). A base may itself name a base (cycles are errors).
4. **sys**: ``sys.path`` entries (as given) and ``sys.rel_path`` entries (relative to the config directory)
   are appended to ``sys.path`` once (idempotent), before classes are resolved.
5. **Validation** (``validate=True``): structure (:mod:`qlib_prefect.config.models`), then every class config
   (``task.model``, ``task.dataset`` and nested handler/loader/processors, each record, PortAnaRecord's
   strategy/executor, ``qlib_init.exp_manager``) is resolved and its ``kwargs`` are checked against the
   constructor signature. LGBModel's extra kwargs are checked against LightGBM's parameter names and aliases.
   All problems are reported in one :class:`~qlib_prefect.errors.ConfigError`, one line each, e.g.
   ``task.model.kwargs.learning_rat: unknown parameter for LGBModel; did you mean 'learning_rate'?
   (file workflow.yaml)``.

Placeholders (``<MODEL>``, ``<DATASET>``, ``<PRED>``, ``<a.b.0>``) are left untouched: they are filled at run time
(``qlib_prefect.utils.placeholder.fill_placeholder``).

Example:
    >>> cfg = load_config("workflow_config_lightgbm_Alpha158.yaml")  # doctest: +SKIP
    >>> cfg.experiment_name, cfg.config_hash("task.model")  # doctest: +SKIP
    ('workflow', '5f0c...')
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
import logging
import os
import re
import sys
import typing
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from qlib_prefect.config.hashing import config_hash as _config_hash
from qlib_prefect.config.models import (
    EXCHANGE_KWARGS,
    QLIB_INIT_KEYS,
    ClassConfig,
    PortAnalysisConfig,
    WorkflowSpec,
)
from qlib_prefect.errors import ConfigError

__all__ = [
    "DEFAULT_EXPERIMENT_NAME",
    "RUNTIME_PLACEHOLDERS",
    "S_DROP",
    "ConfigWarning",
    "WorkflowConfig",
    "apply_sys_path",
    "dump_yaml",
    "lightgbm_param_names",
    "load_config",
    "parse_yaml",
    "render_template",
    "update_config",
]

logger = logging.getLogger(__name__)

#: qrun's default experiment name.
DEFAULT_EXPERIMENT_NAME = "workflow"
#: the value that deletes a key when merging onto a base config (qlib's ``S_DROP``).
S_DROP = "__DROP__"


class ConfigWarning(UserWarning):
    """A config is usable but suspicious (undefined template variable, unknown qlib_init key, near-miss key)."""


# --------------------------------------------------------------------------------------------- Jinja2
def render_template(text: str, env: Mapping[str, str] | None = None, *, source: str = "<string>") -> tuple[str, list]:
    """Render ``text`` as a Jinja2 template like qrun; returns ``(rendered, undefined_variable_names)``.

    Only undeclared variables present in ``env`` (default ``os.environ``) are passed in; undefined ones render
    as empty strings.
    """
    import jinja2
    from jinja2 import meta

    mapping = os.environ if env is None else env
    missing: list[str] = []

    class _RecordingUndefined(jinja2.Undefined):
        def __str__(self) -> str:
            missing.append(str(self._undefined_name))
            return ""

    jenv = jinja2.Environment(undefined=_RecordingUndefined, keep_trailing_newline=True)
    try:
        ast = jenv.parse(text)
        names = meta.find_undeclared_variables(ast)
        context = {n: mapping[n] for n in names if n in mapping}
        rendered = jenv.from_string(ast).render(context)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(f"{source}: line {e.lineno}: Jinja2 template error: {e.message}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"{source}: Jinja2 template error: {e}") from None
    return rendered, sorted(set(missing))


# ----------------------------------------------------------------------------------------------- YAML
_BOOL_TAG, _INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2 core schema as ruamel.yaml resolves it (qrun's parser)
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT_RE = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$")


def _yaml12_resolvers() -> dict[str, list]:
    out: dict[str, list] = {}
    for ch, lst in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(t, r) for t, r in lst if t not in (_BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
        if kept:
            out[ch] = kept
    new = [(_BOOL_TAG, _BOOL_RE, "tTfF"), (_FLOAT_TAG, _FLOAT_RE, "-+0123456789."), (_INT_TAG, _INT_RE, "-+0123456789")]
    for tag, rx, first in reversed(new):
        for ch in first:
            out[ch] = [(tag, rx), *out.get(ch, [])]
    return out


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 bool/int/float resolution and duplicate-key detection."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"found duplicate key {key_node.value!r}", key_node.start_mark,
                    )  # fmt: skip
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        value = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if value.startswith("-") else 1
        value = value.lstrip("+-")
        for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
            if value.startswith(prefix):
                return sign * int(value[2:], base)
        return sign * int(value)


_Loader.yaml_implicit_resolvers = _yaml12_resolvers()
_Loader.add_constructor(_INT_TAG, _Loader.construct_yaml_int)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes every string the YAML 1.2 loader would read as something else."""


_Dumper.yaml_implicit_resolvers = _yaml12_resolvers()
_Dumper.add_representer(tuple, lambda d, v: d.represent_list(list(v)))
_Dumper.add_multi_representer(Path, lambda d, v: d.represent_str(str(v)))


def _represent_extra(dumper: yaml.SafeDumper, value: Any) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(value, np.generic):
        return dumper.represent_data(value.item())
    if isinstance(value, pd.Timestamp):
        if value == value.normalize() and value.tzinfo is None:
            return dumper.represent_date(value.date())
        return dumper.represent_datetime(value.to_pydatetime())
    raise yaml.representer.RepresenterError("cannot represent an object", value)


_Dumper.add_multi_representer(object, _represent_extra)


def parse_yaml(text: str, *, source: str = "<string>") -> Any:
    """Parse YAML text like qrun (YAML 1.2 scalars, anchors, dates as ``datetime.date``)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None


def dump_yaml(data: Any) -> str:
    """YAML text that :func:`parse_yaml` reads back to ``data`` (dates stay dates; objects are refused)."""
    try:
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)
    except yaml.representer.RepresenterError as e:
        obj = e.args[1] if len(e.args) > 1 else None
        raise ConfigError(f"to_yaml: cannot write a {type(obj).__name__} value as YAML") from None


# ---------------------------------------------------------------------------------------------- merge
def update_config(base_config: Mapping[str, Any], ext_config: Any) -> dict[str, Any]:
    """qlib's ``update_config``: deep-merge ``ext_config`` (a dict or a list of dicts) onto a copy of the base.

    Nested dicts merge recursively, other values replace, and the value ``"__DROP__"`` deletes the key.
    """
    out = copy.deepcopy(dict(base_config))
    for ec in ext_config if isinstance(ext_config, (list, tuple)) else [ext_config]:
        for key, val in ec.items():
            if key not in out:
                if not (isinstance(val, str) and val == S_DROP):
                    out[key] = copy.deepcopy(val)
            elif isinstance(out[key], dict) and isinstance(val, dict):
                out[key] = update_config(out[key], val)
            elif isinstance(val, str) and val == S_DROP:
                del out[key]
            else:
                out[key] = copy.deepcopy(val)
    return out


# ----------------------------------------------------------------------------------- LightGBM params
@functools.lru_cache(maxsize=1)
def _bundled_lightgbm_names() -> frozenset[str]:
    """The LightGBM 4.7 parameter names and aliases shipped with the package (no lightgbm import)."""
    from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

    return frozenset(LIGHTGBM_PARAM_ALIASES) | {a for v in LIGHTGBM_PARAM_ALIASES.values() for a in v}


@functools.lru_cache(maxsize=1)
def lightgbm_param_names() -> frozenset[str]:
    """Every LightGBM parameter name and alias (from the installed lightgbm, else the bundled 4.7 list)."""
    aliases: Mapping[str, Any]
    try:
        from lightgbm.basic import _ConfigAliases

        aliases = _ConfigAliases._get_all_param_aliases()
    except Exception:  # private API: fall back to the list generated from lightgbm 4.7.0
        from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

        aliases = LIGHTGBM_PARAM_ALIASES
    names = set(aliases)
    for v in aliases.values():
        names.update(v)
    return frozenset(names)


# ------------------------------------------------------------------------------------------ signatures
#: (module, class) whose ``**kwargs`` is a pass-through to another library: label, a cheap names function (checked
#: first) and the full names function (asked only for a name the cheap one lacks: importing lightgbm costs ~0.7 s).
_KWARGS_SINKS: dict[tuple[str, str], tuple[str, Any, Any]] = {
    ("qlib_prefect.model.gbdt", "LGBModel"): ("LightGBM", _bundled_lightgbm_names, lightgbm_param_names),
}
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


class _SigInfo(typing.NamedTuple):
    accepted: frozenset[str]
    required: frozenset[str]
    open: bool  # accepts any keyword (unknown **kwargs target)
    sink: str | None  # label of a pass-through (e.g. "LightGBM")
    sink_names: frozenset[str]
    sink_all: Any = None  # () -> every name of the pass-through, for names not in ``sink_names``

    def accepts(self, key: str) -> bool:
        if key in self.accepted or key in self.sink_names:
            return True
        return self.sink_all is not None and key in self.sink_all()


def _params_of(fn: Any, skip_first: bool) -> tuple[list[inspect.Parameter], bool] | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if skip_first and params:
        params = params[1:]
    has_var = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return named, has_var


@functools.lru_cache(maxsize=512)
def _signature_info(cls: type) -> _SigInfo:
    """What keyword arguments ``cls(...)`` accepts.

    qlib-prefect classes forward ``**kwargs`` to their base class, so their ``**kwargs`` is followed up the MRO
    (a root ``**kwargs`` is checked by the class itself and counts as closed); a registered pass-through
    (LGBModel -> LightGBM) adds that library's names. A foreign class with ``**kwargs`` accepts anything.
    """
    own = cls.__module__.startswith("qlib_prefect")
    if not own:
        info = _params_of(cls, skip_first=False)
        if info is None:
            return _SigInfo(frozenset(), frozenset(), True, None, frozenset())
        named, has_var = info
        required = frozenset(p.name for p in named if p.default is p.empty)
        return _SigInfo(frozenset(p.name for p in named), required, has_var, None, frozenset())
    accepted: set[str] = set()
    required: frozenset[str] | None = None
    is_open = False
    for klass in cls.__mro__:
        if klass is object:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        info = _params_of(init, skip_first=True)
        if info is None:
            is_open = True
            break
        named, has_var = info
        accepted.update(p.name for p in named)
        if required is None:
            required = frozenset(p.name for p in named if p.default is p.empty)
        sink = _KWARGS_SINKS.get((klass.__module__, klass.__name__))
        if sink is not None and has_var:
            return _SigInfo(frozenset(accepted), required, False, sink[0], frozenset(sink[1]()), sink[2])
        if not has_var:
            break
        if not klass.__module__.startswith("qlib_prefect"):
            is_open = True
            break
    return _SigInfo(frozenset(accepted), required or frozenset(), is_open, None, frozenset())


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
class _Source(typing.NamedTuple):
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


class _Validator:
    """Collects every problem of a merged config (errors raise together; warnings are emitted)."""

    def __init__(self, raw: dict, sources: list[_Source], *, deep: bool) -> None:
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
                    self.warn((*parts, key), f"placeholder {val!r} is not one qlib fills at run time{extra}")
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
        info = _signature_info(cls)
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


# ------------------------------------------------------------------------------------------ the config
class WorkflowConfig:
    """A loaded qrun config.

    ``raw`` is the merged dict exactly as qrun would see it (placeholders untouched, dates as ``datetime.date``);
    ``spec`` the validated :class:`~qlib_prefect.config.models.WorkflowSpec` (None when loaded with
    ``validate=False``). ``task``/``qlib_init``/``records``/``section()`` return deep copies, so a trainer may fill
    placeholders in place without changing ``raw``.
    """

    def __init__(
        self,
        *,
        raw: dict[str, Any],
        spec: WorkflowSpec | None = None,
        path: Path | None = None,
        sources: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.raw = raw
        self.spec = spec
        self.path = path
        self.sources = sources
        self.warnings = warnings

    @property
    def config_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def task(self) -> dict[str, Any]:
        """A deep copy of ``raw["task"]``."""
        return copy.deepcopy(self.raw.get("task") or {})

    @property
    def qlib_init(self) -> dict[str, Any]:
        """A deep copy of ``raw["qlib_init"]`` (``{}`` when absent), for ``init(**qlib_init)``."""
        return copy.deepcopy(self.raw.get("qlib_init") or {})

    @property
    def experiment_name(self) -> str:
        """``experiment_name`` of the config, else qrun's default ``"workflow"``."""
        return self.resolve_experiment_name()

    def resolve_experiment_name(self, default: str = DEFAULT_EXPERIMENT_NAME) -> str:
        """qrun's rule: the config's ``experiment_name`` wins over ``default`` (the CLI's ``--experiment_name``)."""
        name = self.raw.get("experiment_name")
        return default if name is None else str(name)

    @property
    def records(self) -> list[Any]:
        """``task.record`` as a list (a single record dict is wrapped, like qlib's trainer)."""
        rec = self.task.get("record")
        if rec is None:
            return []
        return list(rec) if isinstance(rec, list) else [rec]

    def section(self, dotted: str | None = None) -> Any:
        """A deep copy of the value at ``dotted`` (``"task.model"``, ``"task.record.0"``); None -> everything."""
        if not dotted:
            return copy.deepcopy(self.raw)
        cur: Any = self.raw
        for part in dotted.split("."):
            if isinstance(cur, Mapping) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
                cur = cur[int(part)]
            else:
                raise ConfigError(f"config has no section {dotted!r} (stopped at {part!r})")
        return copy.deepcopy(cur)

    def config_hash(self, section: str | None = None, length: int = 16) -> str:
        """Stable hash of a section (see :mod:`qlib_prefect.config.hashing`), e.g. ``config_hash("task.dataset")``."""
        return _config_hash(self.section(section), length=length)

    def to_yaml(self) -> str:
        """``raw`` as YAML text (anchors expanded) that :func:`load_config` reads back to an equal ``raw``."""
        return dump_yaml(self.raw)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def __repr__(self) -> str:
        src = f" from {self.path}" if self.path is not None else ""
        return f"WorkflowConfig(experiment_name={self.experiment_name!r}{src}, hash={self.config_hash()})"


# -------------------------------------------------------------------------------------------- loading
def _read_file(path: Path, name: str, env: Mapping[str, str] | None) -> tuple[dict, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {name}") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot read config file: {e}") from None
    rendered, undefined = render_template(text, env, source=name)
    data = parse_yaml(rendered, source=name)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: a workflow config must be a YAML mapping, got {type(data).__name__}")
    return data, undefined


def _find_base(base: Any, config_dir: Path, where: str) -> Path:
    if not isinstance(base, (str, Path)) or not str(base).strip():
        raise ConfigError(f"BASE_CONFIG_PATH: expected a file path, got {base!r} (file {where})")
    p = Path(str(base)).expanduser()
    for cand in (p,) if p.is_absolute() else (config_dir / p, Path.cwd() / p):
        if cand.is_file():
            return cand.resolve()
    raise ConfigError(f"BASE_CONFIG_PATH: cannot find the base config {str(base)!r} (file {where})")


def _as_list(v: Any, where: str) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (str, Path)):
        return [str(v)]
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, Path)) for x in v):
        return [str(x) for x in v]
    raise ConfigError(f"{where}: expected a path or a list of paths, got {v!r}")


def apply_sys_path(raw: Mapping[str, Any], config_dir: Path) -> list[str]:
    """Append ``sys.path``/``sys.rel_path`` entries to ``sys.path`` (once each); returns the entries added."""
    sysc = raw.get("sys") or {}
    if not isinstance(sysc, Mapping):
        raise ConfigError(f"sys: expected a mapping with 'path'/'rel_path', got {type(sysc).__name__}")
    entries = _as_list(sysc.get("path"), "sys.path")
    entries += [str((config_dir / p).resolve()) for p in _as_list(sysc.get("rel_path"), "sys.rel_path")]
    added = []
    for e in entries:
        if e not in sys.path:
            sys.path.append(e)
            added.append(e)
    return added


def load_config(
    path_or_dict: str | Path | Mapping[str, Any] | WorkflowConfig,
    *,
    env: Mapping[str, str] | None = None,
    validate: bool | str = True,
    apply_sys: bool = True,
) -> WorkflowConfig:
    """Load a qrun-format workflow config (see the module docstring).

    Args:
        path_or_dict: a YAML file, or an already-parsed dict (no template rendering; ``BASE_CONFIG_PATH`` and
            ``sys.rel_path`` are then relative to the working directory).
        env: variables for the Jinja2 template (default ``os.environ``).
        validate: ``True`` (structure + classes + kwargs), ``"structure"`` (keys only, no class import) or
            ``False``.
        apply_sys: apply the ``sys`` section to ``sys.path``.

    Raises:
        ConfigError: unreadable file, template/YAML error, missing base file, or (when validating) every
            invalid key, one line each, naming its dotted path, a suggestion and the file.
    """
    if isinstance(path_or_dict, WorkflowConfig):
        return path_or_dict
    if validate not in (True, False, "structure"):
        raise ConfigError(f"load_config: validate must be True, False or 'structure', got {validate!r}")
    pending_warnings: list[str] = []
    sources: list[_Source] = []
    if isinstance(path_or_dict, Mapping):
        path = None
        config_dir = Path.cwd()
        data = copy.deepcopy(dict(path_or_dict))
        sources_names: list[str] = []
    else:
        path = Path(path_or_dict).expanduser()
        config_dir = path.resolve().parent
        name = str(path_or_dict)
        data, undefined = _read_file(path, name, env)
        if undefined:
            pending_warnings.append(f"{name}: undefined template variable(s) rendered as empty: {', '.join(undefined)}")
        sources.append(_Source(name, data))
        sources_names = [name]
    chain = [data]  # the top file first, then its base, the base's base, ...
    seen = {path.resolve()} if path is not None else set()
    cur, cur_dir, where = data, config_dir, (sources_names[0] if sources_names else "<dict>")
    while cur.get("BASE_CONFIG_PATH"):
        base_path = _find_base(cur["BASE_CONFIG_PATH"], cur_dir, where)
        if base_path in seen:
            raise ConfigError(f"BASE_CONFIG_PATH: cycle through {base_path} (file {where})")
        seen.add(base_path)
        base_name = str(base_path)
        base_data, undefined = _read_file(base_path, base_name, env)
        if undefined:
            pending_warnings.append(
                f"{base_name}: undefined template variable(s) rendered as empty: {', '.join(undefined)}"
            )
        sources.append(_Source(base_name, base_data))
        sources_names.append(base_name)
        chain.append(base_data)
        cur, cur_dir, where = base_data, base_path.parent, base_name
    raw = chain[-1] if len(chain) == 1 else copy.deepcopy(chain[-1])
    for ext in reversed(chain[:-1]):
        raw = update_config(raw, ext)
    if apply_sys:
        try:
            apply_sys_path(raw, config_dir)
        except ConfigError as e:
            if not sources_names:
                raise
            raise ConfigError(f"{e} (file {sources_names[0]})") from None
    spec = None
    errors: list[str] = []
    if validate:
        v = _Validator(raw, sources, deep=validate is True)
        spec = v.run()
        pending_warnings.extend(v.warnings)
        errors = v.errors
    _emit(pending_warnings)
    if errors:
        err = ConfigError("\n".join(errors))
        err.problems = list(errors)  # type: ignore[attr-defined]
        raise err
    return WorkflowConfig(
        raw=raw, spec=spec, path=path, sources=tuple(sources_names), warnings=tuple(pending_warnings)
    )


def _emit(messages: list[str]) -> None:
    for m in messages:
        logger.info(m)
        warnings.warn(m, ConfigWarning, stacklevel=3)

