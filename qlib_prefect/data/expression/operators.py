"""qlib's operator classes (``qlib.data.base`` / ``qlib.data.ops``) and its operator registry.

In qlib an expression is a tree of these objects, evaluated instrument by instrument through
``Expression.load(instrument, start_index, end_index, freq)`` (a ``pd.Series`` indexed by calendar
position). Here the same classes build the same trees (``Feature("close") / Ref(Feature("close"), 1)``,
``str()`` gives qlib's canonical text ``Div($close,Ref($close,1))``), and anything that takes an
expression string also takes such an object. Built-in operators are computed by the panel engine
(:mod:`qlib_prefect.data.expression.engine`), also through ``load``.

A user's own operator (qlib's extension point: a subclass of :class:`ElemOperator`,
:class:`PairOperator`, :class:`Rolling`, ... with ``_load_internal``) is registered with
``init(custom_ops=[MyOp])`` (or :meth:`OpsWrapper.register`) and then works in expression strings.
Deliberate difference: a custom operator runs instrument by instrument (its arguments are evaluated
on the panel first, then its ``_load_internal`` gets each instrument's series), so it is slower
than a built-in one; its ``get_extended_window_size`` is honoured as in qlib.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.expression import nodes
from qlib_prefect.data.expression.ops import OPERATORS, OpSpec, Panel
from qlib_prefect.data.expression.parser import clear_parse_cache, parse
from qlib_prefect.errors import ConfigError, ExpressionError

__all__ = [
    "EMA", "WMA", "Abs", "Add", "And", "ChangeInstrument", "Corr", "Count", "Cov", "Delta", "Div", "ElemOperator",
    "Eq", "Expression", "ExpressionOps", "Feature", "Ge", "Greater", "Gt", "IdxMax", "IdxMin", "If", "Kurt", "Le",
    "Less", "Log", "Lt", "Mad", "Mask", "Max", "Mean", "Med", "Min", "Mul", "Ne", "Not", "NpElemOperator",
    "NpPairOperator", "Operators", "OpsList", "OpsWrapper", "Or", "PFeature", "PairOperator", "PairRolling",
    "Power", "Quantile", "Rank", "Ref", "Resi", "Rolling", "Rsquare", "Sign", "Skew", "Slope", "Std", "Sub", "Sum",
    "Var", "register_ops",
]  # fmt: skip


def _window_size(node: nodes.Expression) -> tuple[float, float]:
    from qlib_prefect.data.expression.engine import window_size

    return window_size(node)


def _engine_series(expr: str, instrument: str, start_index: int | None, end_index: int | None) -> pd.Series:
    """``expr`` for one instrument on calendar positions ``[start_index, end_index]`` (qlib's ``load``)."""
    from qlib_prefect.data.expression.engine import Evaluator
    from qlib_prefect.data.registry import get_provider

    ev = Evaluator(get_provider(), [str(instrument)])
    col = ev.evaluate(expr)[:, 0]
    lo = 0 if start_index is None else int(start_index)
    hi = len(col) - 1 if end_index is None else int(end_index)
    return pd.Series(col[lo : hi + 1], index=pd.RangeIndex(lo, hi + 1), dtype=np.float32)


class Expression:
    """qlib's ``Expression``: Python operators build operator trees; ``load`` computes one instrument."""

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return str(self)

    # comparisons and arithmetic build trees, as in qlib (so == is Eq, not equality)
    def __gt__(self, other: Any) -> Expression:
        return Gt(self, other)

    def __ge__(self, other: Any) -> Expression:
        return Ge(self, other)

    def __lt__(self, other: Any) -> Expression:
        return Lt(self, other)

    def __le__(self, other: Any) -> Expression:
        return Le(self, other)

    def __eq__(self, other: Any) -> Expression:  # type: ignore[override]
        return Eq(self, other)

    def __ne__(self, other: Any) -> Expression:  # type: ignore[override]
        return Ne(self, other)

    __hash__ = object.__hash__

    def __add__(self, other: Any) -> Expression:
        return Add(self, other)

    def __radd__(self, other: Any) -> Expression:
        return Add(other, self)

    def __sub__(self, other: Any) -> Expression:
        return Sub(self, other)

    def __rsub__(self, other: Any) -> Expression:
        return Sub(other, self)

    def __mul__(self, other: Any) -> Expression:
        return Mul(self, other)

    def __rmul__(self, other: Any) -> Expression:
        return Mul(self, other)  # qlib's order

    def __truediv__(self, other: Any) -> Expression:
        return Div(self, other)

    def __rtruediv__(self, other: Any) -> Expression:
        return Div(other, self)

    def __pow__(self, other: Any) -> Expression:
        return Power(self, other)

    def __rpow__(self, other: Any) -> Expression:
        return Power(other, self)

    def __and__(self, other: Any) -> Expression:
        return And(self, other)

    def __rand__(self, other: Any) -> Expression:
        return And(other, self)

    def __or__(self, other: Any) -> Expression:
        return Or(self, other)

    def __ror__(self, other: Any) -> Expression:
        return Or(other, self)

    def load(self, instrument: str, start_index: int | None, end_index: int | None, *args: Any) -> pd.Series:
        """The values for ``instrument`` on calendar positions ``[start_index, end_index]``."""
        if start_index is not None and end_index is not None and start_index > end_index:
            raise ValueError(f"Invalid index range: {start_index} {end_index}")
        return self._load_internal(instrument, start_index, end_index, *args)

    def _load_internal(self, instrument: str, start_index: int | None, end_index: int | None, *args: Any) -> Any:
        return _engine_series(str(self), instrument, start_index, end_index)

    def get_longest_back_rolling(self) -> float:
        return self.get_extended_window_size()[0]

    def get_extended_window_size(self) -> tuple[float, float]:
        return _window_size(parse(str(self)))


class Feature(Expression):
    """A stored field: ``Feature("close")`` is ``$close``."""

    def __init__(self, name: str | None = None) -> None:
        self._name = name if name else type(self).__name__

    def __str__(self) -> str:
        return "$" + self._name

    def get_extended_window_size(self) -> tuple[float, float]:
        return 0, 0


class PFeature(Feature):
    """A point-in-time field (``$$name``; not supported by the engine, kept for names)."""

    def __str__(self) -> str:
        return "$$" + self._name


class ExpressionOps(Expression):
    """qlib's base of operators."""


class ElemOperator(ExpressionOps):
    """``Name(feature)``."""

    def __init__(self, feature: Any) -> None:
        self.feature = feature

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.feature})"

    def get_extended_window_size(self) -> tuple[float, float]:
        return self.feature.get_extended_window_size()


class ChangeInstrument(ElemOperator):
    """``ChangeInstrument('SH000300', feature)``: ``feature`` of another instrument."""

    def __init__(self, instrument: str, feature: Any) -> None:
        self.instrument = instrument
        self.feature = feature

    def __str__(self) -> str:
        return f"{type(self).__name__}('{self.instrument}',{self.feature})"


class NpElemOperator(ElemOperator):
    """``getattr(np, func)(series)``."""

    def __init__(self, feature: Any, func: str) -> None:
        self.func = func
        super().__init__(feature)

    def _load_internal(self, instrument: str, start_index: Any, end_index: Any, *args: Any) -> Any:
        series = self.feature.load(instrument, start_index, end_index, *args)
        return getattr(np, self.func)(series)


class Mask(NpElemOperator):
    """``Mask(feature, 'instrument')``."""

    def __init__(self, feature: Any, instrument: str) -> None:
        super().__init__(feature, "mask")
        self.instrument = instrument

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.feature},'{self.instrument.lower()}')"


class PairOperator(ExpressionOps):
    """``Name(feature_left, feature_right)`` (either may be a number)."""

    def __init__(self, feature_left: Any, feature_right: Any) -> None:
        self.feature_left = feature_left
        self.feature_right = feature_right

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.feature_left},{self.feature_right})"

    def get_extended_window_size(self) -> tuple[float, float]:
        ll, lr = self.feature_left.get_extended_window_size() if isinstance(self.feature_left, Expression) else (0, 0)
        rl, rr = self.feature_right.get_extended_window_size() if isinstance(self.feature_right, Expression) else (0, 0)
        return max(ll, rl), max(lr, rr)


class NpPairOperator(PairOperator):
    """``getattr(np, func)(left, right)``."""

    def __init__(self, feature_left: Any, feature_right: Any, func: str) -> None:
        self.func = func
        super().__init__(feature_left, feature_right)

    def _load_internal(self, instrument: str, start_index: Any, end_index: Any, *args: Any) -> Any:
        def side(f: Any) -> Any:
            return f.load(instrument, start_index, end_index, *args) if isinstance(f, Expression) else f

        return getattr(np, self.func)(side(self.feature_left), side(self.feature_right))


class If(ExpressionOps):
    """``If(condition, feature_left, feature_right)``."""

    def __init__(self, condition: Any, feature_left: Any, feature_right: Any) -> None:
        self.condition = condition
        self.feature_left = feature_left
        self.feature_right = feature_right

    def __str__(self) -> str:
        return f"If({self.condition},{self.feature_left},{self.feature_right})"


class Rolling(ExpressionOps):
    """``Name(feature, N)``: pandas ``rolling(N, min_periods=1).<func>()``; ``N=0`` expanding, ``0<N<1`` ewm."""

    def __init__(self, feature: Any, N: int | float, func: str) -> None:
        self.feature = feature
        self.N = N
        self.func = func

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.feature},{self.N})"

    def _load_internal(self, instrument: str, start_index: Any, end_index: Any, *args: Any) -> Any:
        series = self.feature.load(instrument, start_index, end_index, *args)
        if isinstance(self.N, int) and self.N == 0:
            return getattr(series.expanding(min_periods=1), self.func)()
        if isinstance(self.N, float) and 0 < self.N < 1:
            return series.ewm(alpha=self.N, min_periods=1).mean()
        return getattr(series.rolling(self.N, min_periods=1), self.func)()

    def get_extended_window_size(self) -> tuple[float, float]:
        lft, rght = self.feature.get_extended_window_size()
        if self.N == 0:
            return lft, rght
        if 0 < self.N < 1:
            return max(lft + int(np.log(1e-6) / np.log(1 - self.N)) - 1, lft), rght
        return max(lft + self.N - 1, lft), rght


class PairRolling(ExpressionOps):
    """``Name(feature_left, feature_right, N)``: pandas pair rolling ``<func>``."""

    def __init__(self, feature_left: Any, feature_right: Any, N: int, func: str) -> None:
        self.feature_left = feature_left
        self.feature_right = feature_right
        self.N = N
        self.func = func

    def __str__(self) -> str:
        return f"{type(self).__name__}({self.feature_left},{self.feature_right},{self.N})"

    def _load_internal(self, instrument: str, start_index: Any, end_index: Any, *args: Any) -> Any:
        left = self.feature_left.load(instrument, start_index, end_index, *args)
        right = self.feature_right.load(instrument, start_index, end_index, *args)
        roll = left.expanding(min_periods=1) if self.N == 0 else left.rolling(self.N, min_periods=1)
        return getattr(roll, self.func)(right)

    def get_extended_window_size(self) -> tuple[float, float]:
        ll, lr = self.feature_left.get_extended_window_size()
        rl, rr = self.feature_right.get_extended_window_size()
        if self.N == 0:
            return -np.inf, max(lr, rr)
        return max(ll, rl) + self.N - 1, max(lr, rr)


def _builtin(base: type, name: str, *, func: str | None = None, params: str = "") -> type:
    """A concrete built-in operator class named ``name`` over ``base`` (computed by the engine)."""
    ns: dict[str, Any] = {
        "__doc__": f"qlib's ``{name}`` (computed on the panel by the engine).",
        "__module__": __name__,
    }

    if base in (NpElemOperator,):

        def __init__(self: Any, feature: Any) -> None:
            NpElemOperator.__init__(self, feature, func or name.lower())

    elif base in (NpPairOperator,):

        def __init__(self: Any, feature_left: Any, feature_right: Any) -> None:
            NpPairOperator.__init__(self, feature_left, feature_right, func or name.lower())

    elif base is Rolling and params == "q":

        def __init__(self: Any, feature: Any, N: int, qscore: float) -> None:
            Rolling.__init__(self, feature, N, "quantile")
            self.qscore = qscore

        ns["__str__"] = lambda self: f"{type(self).__name__}({self.feature},{self.N},{self.qscore})"
    elif base is Rolling:

        def __init__(self: Any, feature: Any, N: int | float) -> None:
            Rolling.__init__(self, feature, N, func or name.lower())

    else:

        def __init__(self: Any, feature_left: Any, feature_right: Any, N: int) -> None:
            PairRolling.__init__(self, feature_left, feature_right, N, func or name.lower())

    ns["__init__"] = __init__
    ns["_load_internal"] = Expression._load_internal
    ns["get_extended_window_size"] = Expression.get_extended_window_size
    return type(name, (base,), ns)


Abs = _builtin(NpElemOperator, "Abs", func="abs")
Sign = _builtin(NpElemOperator, "Sign", func="sign")
Log = _builtin(NpElemOperator, "Log", func="log")
Not = _builtin(NpElemOperator, "Not", func="bitwise_not")
Power = _builtin(NpPairOperator, "Power", func="power")
Add = _builtin(NpPairOperator, "Add", func="add")
Sub = _builtin(NpPairOperator, "Sub", func="subtract")
Mul = _builtin(NpPairOperator, "Mul", func="multiply")
Div = _builtin(NpPairOperator, "Div", func="divide")
Greater = _builtin(NpPairOperator, "Greater", func="maximum")
Less = _builtin(NpPairOperator, "Less", func="minimum")
Gt = _builtin(NpPairOperator, "Gt", func="greater")
Ge = _builtin(NpPairOperator, "Ge", func="greater_equal")
Lt = _builtin(NpPairOperator, "Lt", func="less")
Le = _builtin(NpPairOperator, "Le", func="less_equal")
Eq = _builtin(NpPairOperator, "Eq", func="equal")
Ne = _builtin(NpPairOperator, "Ne", func="not_equal")
And = _builtin(NpPairOperator, "And", func="bitwise_and")
Or = _builtin(NpPairOperator, "Or", func="bitwise_or")
Ref = _builtin(Rolling, "Ref", func="ref")
Mean = _builtin(Rolling, "Mean", func="mean")
Sum = _builtin(Rolling, "Sum", func="sum")
Std = _builtin(Rolling, "Std", func="std")
Var = _builtin(Rolling, "Var", func="var")
Skew = _builtin(Rolling, "Skew", func="skew")
Kurt = _builtin(Rolling, "Kurt", func="kurt")
Max = _builtin(Rolling, "Max", func="max")
Min = _builtin(Rolling, "Min", func="min")
IdxMax = _builtin(Rolling, "IdxMax", func="idxmax")
IdxMin = _builtin(Rolling, "IdxMin", func="idxmin")
Quantile = _builtin(Rolling, "Quantile", params="q")
Med = _builtin(Rolling, "Med", func="median")
Mad = _builtin(Rolling, "Mad", func="mad")
Rank = _builtin(Rolling, "Rank", func="rank")
Count = _builtin(Rolling, "Count", func="count")
Delta = _builtin(Rolling, "Delta", func="delta")
Slope = _builtin(Rolling, "Slope", func="slope")
Rsquare = _builtin(Rolling, "Rsquare", func="rsquare")
Resi = _builtin(Rolling, "Resi", func="resi")
WMA = _builtin(Rolling, "WMA", func="wma")
EMA = _builtin(Rolling, "EMA", func="ema")
Corr = _builtin(PairRolling, "Corr", func="corr")
Cov = _builtin(PairRolling, "Cov", func="cov")
for _cls in (ChangeInstrument, If, Mask):
    _cls._load_internal = Expression._load_internal  # type: ignore[method-assign]
    _cls.get_extended_window_size = Expression.get_extended_window_size  # type: ignore[method-assign]

#: qlib's ``OpsList`` (without the high-frequency ``TResample``).
OpsList: list[type] = [
    ChangeInstrument, Rolling, Ref, Max, Min, Sum, Mean, Std, Var, Skew, Kurt, Med, Mad, Slope, Rsquare, Resi, Rank,
    Quantile, Count, EMA, WMA, Corr, Cov, Delta, Abs, Sign, Log, Power, Add, Sub, Mul, Div, Greater, Less, And, Or,
    Not, Gt, Ge, Lt, Le, Eq, Ne, Mask, IdxMax, IdxMin, If, Feature, PFeature,
]  # fmt: skip
_BUILTIN = frozenset(OpsList)
#: the engine's operator table as shipped (restored by every ``init()``)
_ENGINE_OPS: dict[str, OpSpec] = dict(OPERATORS)


# ------------------------------------------------------------------------------------- custom operators
class _Bound(Expression):
    """An argument of a custom operator: a parsed sub-expression, optionally with its evaluated panel."""

    def __init__(self, node: nodes.Expression, panel: Panel | None = None, col: int = 0) -> None:
        self.node, self.panel, self.col = node, panel, col

    def __str__(self) -> str:
        return str(self.node)

    def _load_internal(self, instrument: str, start_index: Any, end_index: Any, *args: Any) -> pd.Series:
        if self.panel is None:
            return _engine_series(str(self.node), instrument, start_index, end_index)
        v = self.panel.values[:, self.col]
        lo = 0 if start_index is None else int(start_index)
        hi = len(v) - 1 if end_index is None else int(end_index)
        return pd.Series(v[lo : hi + 1], index=pd.RangeIndex(lo, hi + 1))

    def get_extended_window_size(self) -> tuple[float, float]:
        return _window_size(self.node)


def _kinds(cls: type) -> str:
    """Our argument kinds (see :class:`OpSpec`) from the constructor's parameters."""
    params = [
        p
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    out = ""
    for p in params:
        name = p.name.lower()
        if name.startswith("feature") or name == "condition":
            out += "e" if issubclass(cls, (ElemOperator, Rolling, PairRolling)) else "x"
        elif name == "instrument":
            out += "s"
        else:
            out += "n"
    return out


def _custom_spec(cls: type) -> OpSpec:
    name = cls.__name__

    def build(args: Sequence[Any]) -> Any:
        return cls(*args)

    def impl(ctx: Any, *args: Any) -> Panel:
        panels = [a for a in args if isinstance(a, Panel)]
        t, n = panels[0].values.shape
        start, end = panels[0].start, panels[0].end
        for p in panels[1:]:
            start, end = np.minimum(start, p.start), np.maximum(end, p.end)
        node_args = [a for a in ctx.node.args]
        out = np.full((t, n), np.nan, dtype=np.float64)
        for j, code in enumerate(ctx.ev.codes):  # a user operator is written per instrument, as in qlib
            lo, hi = int(start[j]), int(end[j])
            if lo > hi:
                continue
            built = [_Bound(nd, a, j) if isinstance(a, Panel) else a for nd, a in zip(node_args, args, strict=True)]
            res = build(built).load(code, lo, hi, "day")
            ser = pd.Series(res) if not isinstance(res, pd.Series) else res
            if len(ser) == hi - lo + 1 and not isinstance(ser.index, pd.RangeIndex):
                ser.index = pd.RangeIndex(lo, hi + 1)
            vals = ser.reindex(pd.RangeIndex(lo, hi + 1)).to_numpy()
            out[lo : hi + 1, j] = np.asarray(vals, dtype=np.float64)
        return Panel(out, start, end)

    def window(node: nodes.Op) -> tuple[float, float]:
        built = [a.value if isinstance(a, nodes.Const) else _Bound(a) for a in node.args]
        return build(built).get_extended_window_size()

    return OpSpec(name, _kinds(cls), impl, window=window)


class OpsWrapper:
    """qlib's operator registry (``qlib.data.ops.Operators``): ``register(ops_list)``, ``reset()``, attributes."""

    def __init__(self) -> None:
        self._ops: dict[str, type] = {}

    def reset(self) -> None:
        """Back to the built-in operators only."""
        self._ops = {}
        OPERATORS.clear()
        OPERATORS.update(_ENGINE_OPS)
        clear_parse_cache()

    def register(self, ops_list: Sequence[type | dict[str, Any]]) -> None:
        """Add operator classes (or ``{"class", "module_path"}`` configs); a user class named like a
        built-in overrides it (qlib warns the same)."""
        for op in ops_list:
            cls = _resolve(op)
            if not (isinstance(cls, type) and issubclass(cls, Expression)):
                raise TypeError(f"operator must be subclass of ExpressionOps, not {cls}")
            self._ops[cls.__name__] = cls
            if cls not in _BUILTIN:
                OPERATORS[cls.__name__] = _custom_spec(cls)
        clear_parse_cache()

    def __getattr__(self, key: str) -> type:
        if key.startswith("__"):
            raise AttributeError(key)
        if key not in self._ops:
            raise AttributeError(f"The operator [{key}] is not registered")
        return self._ops[key]


def _resolve(op: type | dict[str, Any]) -> Any:
    if not isinstance(op, dict):
        return op
    from qlib_prefect.config.classpath import resolve_class

    if "class" not in op:
        raise ConfigError(f"custom_ops: an operator config needs 'class', got {op!r}")
    return resolve_class(op["class"], op.get("module_path"), where="custom_ops")


Operators = OpsWrapper()


def register_ops(custom_ops: Sequence[type | dict[str, Any]] | None) -> None:
    """qlib's ``register_all_ops``: reset to the built-ins, then register ``custom_ops`` (called by ``init``)."""
    Operators.reset()
    Operators.register(OpsList)
    if custom_ops is not None:
        if not isinstance(custom_ops, (list, tuple)):
            raise ConfigError(f"qlib_init.custom_ops: expected a list of operator classes, got {custom_ops!r}")
        Operators.register(custom_ops)


Operators.register(OpsList)


def as_expression_text(field: Any) -> str:
    """An expression string for ``field`` (a string, or one of these operator objects)."""
    if isinstance(field, str):
        return field
    if isinstance(field, (Expression, nodes.Expression)):
        return str(field)
    raise ExpressionError(f"a field must be an expression string or operator object, got {field!r}")
