"""The expression parser and the operator table do not import each other (issue 11): both import the node
classes from ``nodes.py``; only the parser imports the operator table."""

from __future__ import annotations

import ast
from pathlib import Path

import qlib_prefect.data.expression as pkg

HERE = Path(pkg.__file__).parent


def _imports(name: str) -> set[str]:
    tree = ast.parse((HERE / f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):  # also function-level (lazy) imports
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_ops_and_parser_do_not_import_each_other() -> None:
    base = "qlib_prefect.data.expression"
    assert f"{base}.parser" not in _imports("ops")
    assert f"{base}.nodes" in _imports("ops") and f"{base}.nodes" in _imports("parser")
    assert not {i for i in _imports("nodes") if i.startswith("qlib_prefect")}
    from qlib_prefect.data.expression import nodes, parser

    assert parser.Feature is nodes.Feature and parser.Op is nodes.Op  # one class per node kind
