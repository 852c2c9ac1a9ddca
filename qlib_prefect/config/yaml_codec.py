"""YAML reading and writing with qrun's scalar rules (``ruamel.yaml`` safe loader, YAML 1.2).

``1e-3`` is a float, ``yes``/``on`` are strings, ``2008-01-01`` (unquoted) is a ``datetime.date``; anchors, aliases
and ``<<`` merge keys work; a duplicated key is an error (ruamel refuses it too). :func:`dump_yaml` writes text
that :func:`parse_yaml` reads back unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from qlib_prefect.errors import ConfigError

__all__ = ["dump_yaml", "parse_yaml"]

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


#: the most scalars/collections a document may expand to through aliases (a "billion laughs" stops here; qrun hangs)
MAX_EXPANDED_NODES = 1_000_000


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes ``node`` stands for once every alias is expanded (linear in the distinct nodes: sizes are memoised)."""
    done = memo.get(id(node))
    if done is not None:
        return done
    memo[id(node)] = 1  # a recursive alias counts once (PyYAML builds it as a cycle, no expansion)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = total
    return total


class _Loader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 bool/int/float resolution, duplicate-key detection and bounded alias expansion."""

    def construct_document(self, node: Any) -> Any:
        size = _expanded_size(node, {})
        if size > MAX_EXPANDED_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases expand the document to {size:.3g} nodes (limit {MAX_EXPANDED_NODES:,}): "
                "an alias bomb?", node.start_mark,
            )  # fmt: skip
        return super().construct_document(node)

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
