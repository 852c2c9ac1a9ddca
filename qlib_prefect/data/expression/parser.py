"""Safe parser for qlib expression strings (``"Mean($close, 5)/$close"``).

qlib rewrites the text with regular expressions and calls ``eval``; here the text goes through
:mod:`ast` and only a small whitelist of node types is accepted, so user text never executes.

Grammar (same as qlib): ``$field`` (a stored field), ``$$field`` (point-in-time field),
``Feature('close')`` (qlib's class spelling of ``$close``), numbers, quoted strings (instrument
codes for ``Mask``/``ChangeInstrument``), the Python operators ``+ - * / ** > >= < <= == != & |``
and unary minus, and ``Op(arg, ...)`` calls of registered operators (see
:mod:`qlib_prefect.data.expression.ops`; ``init(custom_ops=[...])`` adds user operator classes).
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

from qlib_prefect.data.expression.nodes import Const, Expression, Feature, Op, Operand
from qlib_prefect.data.expression.ops import OPERATORS
from qlib_prefect.errors import ExpressionError

__all__ = ["Const", "Expression", "Feature", "Op", "Operand", "clear_parse_cache", "parse"]


_BINOPS: dict[type, str] = {
    ast.Add: "Add",
    ast.Sub: "Sub",
    ast.Mult: "Mul",
    ast.Div: "Div",
    ast.Pow: "Power",
    ast.BitAnd: "And",
    ast.BitOr: "Or",
}
_CMPOPS: dict[type, str] = {
    ast.Gt: "Gt",
    ast.GtE: "Ge",
    ast.Lt: "Lt",
    ast.LtE: "Le",
    ast.Eq: "Eq",
    ast.NotEq: "Ne",
}
_PY_CONST = {
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Div": lambda a, b: a / b,
    "Power": lambda a, b: a**b,
}
_PIT_RE = re.compile(r"\$\$([A-Za-z_]\w*)")
_FEAT_RE = re.compile(r"\$([A-Za-z_]\w*)")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")
#: call spellings of a stored field (qlib evaluates them as classes)
_FEATURE_CALLS = frozenset({"Feature", "PFeature"})
_PIT_PREFIX = "__qp_pit__"
_FEAT_PREFIX = "__qp_feat__"


def _fail(expr: str, why: str) -> ExpressionError:
    return ExpressionError(f"invalid expression {expr!r}: {why}")


class _Builder:
    def __init__(self, text: str) -> None:
        self.text = text

    def build(self, node: ast.AST) -> Expression:
        if isinstance(node, ast.Name):
            if node.id.startswith(_PIT_PREFIX):
                return Feature(node.id[len(_PIT_PREFIX) :].lower(), pit=True)
            if node.id.startswith(_FEAT_PREFIX):
                return Feature(node.id[len(_FEAT_PREFIX) :].lower())
            raise _fail(self.text, f"unknown name {node.id!r} (fields are written $name, operators Name(...))")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float, str)):
                raise _fail(self.text, f"unsupported literal {node.value!r}")
            return Const(node.value)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.USub):
                if isinstance(operand, Const):
                    if isinstance(operand.value, str):
                        raise _fail(self.text, "unary minus on a string")
                    return Const(-operand.value)
                return Op("Mul", (operand, Const(-1)))
            raise _fail(self.text, f"unsupported unary operator {type(node.op).__name__}")
        if isinstance(node, ast.BinOp):
            name = _BINOPS.get(type(node.op))
            if name is None:
                raise _fail(self.text, f"unsupported operator {type(node.op).__name__}")
            left, right = self.build(node.left), self.build(node.right)
            if isinstance(left, Const) and isinstance(right, Const):
                if name not in _PY_CONST or isinstance(left.value, str) or isinstance(right.value, str):
                    raise _fail(self.text, f"{name} of two constants")
                try:
                    return Const(_PY_CONST[name](left.value, right.value))
                except (ArithmeticError, ValueError) as e:
                    raise _fail(self.text, f"constant arithmetic failed: {e}") from None
            return self._op(name, [left, right])
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise _fail(self.text, "chained comparisons (a < b < c) are not supported; use And(...)")
            name = _CMPOPS.get(type(node.ops[0]))
            if name is None:
                raise _fail(self.text, f"unsupported comparison {type(node.ops[0]).__name__}")
            return self._op(name, [self.build(node.left), self.build(node.comparators[0])])
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                raise _fail(self.text, "only Name(...) operator calls are allowed")
            if node.keywords:
                raise _fail(self.text, f"{node.func.id}: keyword arguments are not supported")
            if node.func.id in _FEATURE_CALLS:
                return self._feature_call(node)
            if node.func.id not in OPERATORS:
                raise _fail(self.text, f"unknown operator {node.func.id!r}; known: {', '.join(sorted(OPERATORS))}")
            return self._op(node.func.id, [self.build(a) for a in node.args])
        raise _fail(self.text, f"unsupported syntax {type(node).__name__}")

    def _feature_call(self, node: ast.Call) -> Feature:
        """qlib's ``Feature('close')`` / ``PFeature('roe')`` spelling of ``$close`` / ``$$roe``."""
        name = node.func.id  # type: ignore[attr-defined]
        arg = node.args[0] if len(node.args) == 1 else None
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _NAME_RE.fullmatch(arg.value)):
            raise _fail(self.text, f"{name} takes one quoted field name, e.g. {name}('close')")
        return Feature(arg.value.lower(), pit=name == "PFeature")

    def _op(self, name: str, args: list[Expression]) -> Op:
        spec = OPERATORS[name]
        spec.check(self.text, args)
        return Op(name, tuple(args))


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Expression:
    src = _PIT_RE.sub(lambda m: _PIT_PREFIX + m.group(1), text)
    src = _FEAT_RE.sub(lambda m: _FEAT_PREFIX + m.group(1), src)
    if "$" in src:
        raise _fail(text, "'$' must be followed by a field name")
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError as e:
        raise _fail(text, f"syntax error ({e.msg})") from None
    node = _Builder(text).build(tree.body)
    if isinstance(node, Const):
        raise _fail(text, "an expression needs at least one $field")
    return node


def clear_parse_cache() -> None:
    """Forget parsed trees (called when the operator table changes: ``init(custom_ops=...)``)."""
    _parse_cached.cache_clear()


def parse(expr: str | Expression) -> Expression:
    """Parse a qlib expression string into a node tree.

    Raises:
        ExpressionError: malformed text, unknown operator, wrong arity or argument kind (the message
            quotes the expression).

    Example:
        >>> str(parse("Mean($close, 5) / $close"))
        'Div(Mean($close,5),$close)'
    """
    if isinstance(expr, Expression):
        return expr
    if not isinstance(expr, str):
        raise ExpressionError(f"expression must be a string, got {type(expr).__name__}: {expr!r}")
    return _parse_cached(expr)
