"""qlib's operators (names, argument order and semantics of ``qlib/data/ops.py``) on whole panels.

Each operator gets its evaluated arguments: :class:`Panel` for sub-expressions, plain Python values
for literal parameters. Values keep the dtype qlib's pandas/numpy code would give them (raw fields
float32, pandas rolling results float64, comparisons bool); the evaluator casts the *final* result
of each requested expression to float32, like ``ExpressionProvider.expression``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qlib_prefect.data.expression import kernels as K
from qlib_prefect.data.expression.nodes import Const, Expression
from qlib_prefect.errors import ExpressionError

__all__ = ["OPERATORS", "OpSpec", "Panel"]


@dataclass
class Panel:
    """An evaluated sub-expression: ``values`` (T x N) plus each instrument's stored span."""

    values: np.ndarray
    start: np.ndarray
    end: np.ndarray
    clean: bool = False  # True if values are known to be NaN outside [start, end]


Arg = Any  # Panel | float | int | str


@dataclass(frozen=True)
class OpSpec:
    """Arity and argument kinds of an operator: ``e`` expression, ``x`` expression or number,
    ``i`` integer window, ``w`` window (int, or float in (0, 1) for ewm), ``n`` number, ``s`` string."""

    name: str
    kinds: str
    impl: Callable[..., Panel]
    #: ``window(node) -> (left, right)`` extra dates the operator reads (qlib's ``get_extended_window_size``);
    #: None: the engine's rule for built-ins
    window: Callable[[Any], tuple[float, float]] | None = None

    def check(self, text: str, args: Sequence[Expression]) -> None:
        if len(args) != len(self.kinds):
            raise ExpressionError(
                f"invalid expression {text!r}: {self.name} takes {len(self.kinds)} argument(s), got {len(args)}"
            )
        exprs = 0
        for k, a in zip(self.kinds, args):
            is_const = isinstance(a, Const)
            val = a.value if is_const else None
            if k == "e" and is_const:
                raise ExpressionError(f"invalid expression {text!r}: {self.name} needs an expression, got {a}")
            if k == "x" and is_const and isinstance(val, str):
                raise ExpressionError(f"invalid expression {text!r}: {self.name} got a string {a}")
            if k in "iwn" and not (is_const and isinstance(val, (int, float)) and not isinstance(val, bool)):
                raise ExpressionError(f"invalid expression {text!r}: {self.name} needs a number, got {a}")
            if k == "i" and not (isinstance(val, int) or float(val).is_integer()):
                raise ExpressionError(f"invalid expression {text!r}: {self.name} needs an integer window, got {a}")
            if k == "w" and not (isinstance(val, int) or float(val).is_integer() or 0 < val < 1):
                raise ExpressionError(
                    f"invalid expression {text!r}: {self.name} window must be an integer or in (0, 1), got {a}"
                )
            if k == "s" and not (is_const and isinstance(val, str)):
                raise ExpressionError(f"invalid expression {text!r}: {self.name} needs a quoted instrument, got {a}")
            exprs += not is_const
        if exprs == 0:
            raise ExpressionError(f"invalid expression {text!r}: {self.name} needs at least one expression argument")


OPERATORS: dict[str, OpSpec] = {}


def _register(name: str, kinds: str) -> Callable[[Callable[..., Panel]], Callable[..., Panel]]:
    def deco(fn: Callable[..., Panel]) -> Callable[..., Panel]:
        OPERATORS[name] = OpSpec(name, kinds, fn)
        return fn

    return deco


def _like(p: Panel, values: np.ndarray) -> Panel:
    return Panel(values, p.start, p.end)


def _raw(a: Arg) -> Any:
    return a.values if isinstance(a, Panel) else a


def _span(*args: Arg) -> tuple[np.ndarray, np.ndarray]:
    ps = [a for a in args if isinstance(a, Panel)]
    start, end = ps[0].start, ps[0].end
    for p in ps[1:]:
        start, end = np.minimum(start, p.start), np.maximum(end, p.end)
    return start, end


def _shape_of(*args: Arg) -> tuple[int, ...]:
    return next(a.values.shape for a in args if isinstance(a, Panel))


# ---------------------------------------------------------------- element-wise


def _elem(func: Callable[[np.ndarray], np.ndarray]) -> Callable[..., Panel]:
    def impl(ctx: Any, x: Panel) -> Panel:
        with np.errstate(all="ignore"):
            return _like(x, func(x.values))

    return impl


OPERATORS["Abs"] = OpSpec("Abs", "e", _elem(np.abs))
OPERATORS["Log"] = OpSpec("Log", "e", _elem(np.log))
OPERATORS["Sign"] = OpSpec("Sign", "e", _elem(lambda v: np.sign(v.astype(np.float32))))


@_register("Not", "e")
def _not(ctx: Any, x: Panel) -> Panel:
    v = x.values
    if v.dtype != bool:
        raise ExpressionError(f"invalid expression {ctx.text!r}: Not needs a boolean operand (a comparison)")
    return _like(x, ~v)


# ---------------------------------------------------------------- pair-wise

_PAIR_FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Power": np.power,
    "Greater": np.maximum,
    "Less": np.minimum,
    "Gt": np.greater,
    "Ge": np.greater_equal,
    "Lt": np.less,
    "Le": np.less_equal,
    "Eq": np.equal,
    "Ne": np.not_equal,
    "And": np.bitwise_and,
    "Or": np.bitwise_or,
}


def _pair(name: str) -> Callable[..., Panel]:
    func = _PAIR_FUNCS[name]

    def impl(ctx: Any, left: Arg, right: Arg) -> Panel:
        lv, rv = _raw(left), _raw(right)
        if name in ("And", "Or"):
            for v in (lv, rv):
                if (isinstance(v, np.ndarray) and v.dtype != bool) or isinstance(v, float):
                    raise ExpressionError(
                        f"invalid expression {ctx.text!r}: {name} needs boolean operands (comparisons)"
                    )
        with np.errstate(all="ignore"):
            res = func(lv, rv)
        start, end = _span(left, right)
        return Panel(np.broadcast_to(res, _shape_of(left, right)).copy() if np.ndim(res) < 2 else res, start, end)

    return impl


for _n in _PAIR_FUNCS:
    OPERATORS[_n] = OpSpec(_n, "xx", _pair(_n))


@_register("If", "exx")
def _if(ctx: Any, cond: Panel, left: Arg, right: Arg) -> Panel:
    c = cond.values
    if c.dtype != bool:
        c = c != 0  # NaN is truthy, as numpy's where on a float condition
    res = np.where(c, _raw(left), _raw(right))
    start, end = _span(cond, left, right)
    return Panel(res, start, end)


# ---------------------------------------------------------------- rolling


def _as_window(n: float | int) -> int | float:
    if isinstance(n, float) and n.is_integer():
        return int(n)
    return n


def _is_ewm(n: float | int) -> bool:
    return isinstance(n, float) and 0 < n < 1


def _generic_rolling(func: str) -> Callable[..., Panel]:
    """qlib ``Rolling``: N == 0 expanding, 0 < N < 1 ``ewm(alpha=N).mean()``, else ``rolling(N)``."""

    def impl(ctx: Any, x: Panel, n: float | int) -> Panel:
        n = _as_window(n)
        v = x.values
        if _is_ewm(n):
            return _like(x, K.ewm_mean(v, alpha=float(n)))
        if n == 0:
            return _like(x, K.expanding(v, func))
        if n < 0:
            raise ExpressionError(f"invalid expression {ctx.text!r}: negative window {n}")
        if func in ("sum", "mean", "max", "min"):
            return _like(x, K.rolling_stat(v, n, func))
        if func in ("std", "var"):
            return _like(x, K.rolling_var(v, n, std=func == "std"))
        return _like(x, K.rolling_pandas(v, n, func))

    return impl


for _n, _f in {
    "Mean": "mean",
    "Sum": "sum",
    "Std": "std",
    "Var": "var",
    "Max": "max",
    "Min": "min",
    "Med": "median",
    "Count": "count",
    "Skew": "skew",
    "Kurt": "kurt",
}.items():
    OPERATORS[_n] = OpSpec(_n, "ew", _generic_rolling(_f))


def _int_window(ctx: Any, name: str, n: float | int, *, allow_negative: bool = False) -> int:
    n = _as_window(n)
    if not isinstance(n, int) or (n < 0 and not allow_negative):
        raise ExpressionError(f"invalid expression {ctx.text!r}: {name} needs a non-negative integer window, got {n}")
    return n


@_register("Ref", "ei")
def _ref(ctx: Any, x: Panel, n: float | int) -> Panel:
    n = _int_window(ctx, "Ref", n, allow_negative=True)
    if n == 0:
        # first value of the instrument's series, broadcast over its span
        v = x.values
        rows = np.clip(x.start, 0, max(v.shape[0] - 1, 0))
        first = v[rows, np.arange(v.shape[1])] if v.shape[0] else np.zeros(v.shape[1], v.dtype)
        out = np.broadcast_to(first[None, :], v.shape).copy()
        if out.dtype == bool:
            out = out.astype(np.float64)
        return _like(x, out)
    return _like(x, K.shift(x.values, n))


@_register("Delta", "ei")
def _delta(ctx: Any, x: Panel, n: float | int) -> Panel:
    n = _int_window(ctx, "Delta", n)
    v = x.values
    if n == 0:
        return _like(x, v - _ref(ctx, x, 0).values)
    return _like(x, v - K.shift(v, n))


_REGRESSION = frozenset({"Slope", "Resi", "Rsquare"})


def _regression(kind: str) -> Callable[..., Panel]:
    def impl(ctx: Any, x: Panel, n: float | int) -> Panel:
        n = _int_window(ctx, kind.capitalize(), n)
        # Slope/Resi/Rsquare of the same (x, n) share one pass of the kernel's running sums
        sums = ctx.shared("regression", n, lambda: K.regression_sums(x.values, n, x.start), _REGRESSION)
        out = K.regression(x.values, n, kind, x.start, sums=sums)
        if kind == "rsquare" and n > 0:
            std = ctx.rolling_std(0, n)
            out[np.isclose(std, 0, atol=2e-05)] = np.nan
        return _like(x, out)

    return impl


OPERATORS["Slope"] = OpSpec("Slope", "ei", _regression("slope"))
OPERATORS["Resi"] = OpSpec("Resi", "ei", _regression("resi"))
OPERATORS["Rsquare"] = OpSpec("Rsquare", "ei", _regression("rsquare"))


@_register("Rank", "ei")
def _rank(ctx: Any, x: Panel, n: float | int) -> Panel:
    n = _int_window(ctx, "Rank", n)
    v = x.values
    if n == 0:
        return _like(x, K.expanding(v, "rank"))
    # every window of Rank(x, .) in this batch (Alpha158: 5 10 20 30 60) from one pass over the lags
    ns = ctx.windows() or [n]
    res = ctx.shared("rank", 0, lambda: K.rolling_ranks(v, ns), any_window=True)
    out = res.get(n)
    return _like(x, out if out is not None else K.rolling_ranks(v, [n])[n])


@_register("Quantile", "ein")
def _quantile(ctx: Any, x: Panel, n: float | int, q: float) -> Panel:
    n = _int_window(ctx, "Quantile", n)
    v = x.values
    if n == 0:
        return _like(x, K.expanding(v, "quantile", q))
    # all quantiles of the same (x, n) in this batch (Alpha158: 0.8 and 0.2) come from one sort
    qs = sorted({float(q), *(float(s.args[2].value) for s in ctx.siblings())})
    res = ctx.shared("quantile", n, lambda: K.rolling_quantiles(v, n, qs))
    out = res.get(float(q))
    return _like(x, out if out is not None else K.rolling_quantiles(v, n, [float(q)])[float(q)])


def _idx(argmax: bool) -> Callable[..., Panel]:
    def impl(ctx: Any, x: Panel, n: float | int) -> Panel:
        n = _int_window(ctx, "IdxMax" if argmax else "IdxMin", n)
        if n == 0:
            return _like(x, K.idx_extreme(x.values, n, x.start, argmax=argmax))
        # every window of this operator on x in the batch (Alpha158: 5 10 20 30 60) in one lag pass
        ns = ctx.windows() or [n]
        res = ctx.shared("idx", 0, lambda: K.idx_extremes(x.values, ns, x.start, argmax=argmax), any_window=True)
        out = res.get(n)
        return _like(x, out if out is not None else K.idx_extremes(x.values, [n], x.start, argmax=argmax)[n])

    return impl


OPERATORS["IdxMax"] = OpSpec("IdxMax", "ei", _idx(True))
OPERATORS["IdxMin"] = OpSpec("IdxMin", "ei", _idx(False))


@_register("WMA", "ei")
def _wma(ctx: Any, x: Panel, n: float | int) -> Panel:
    return _like(x, K.wma(x.values, _int_window(ctx, "WMA", n), x.start))


@_register("Mad", "ei")
def _mad(ctx: Any, x: Panel, n: float | int) -> Panel:
    return _like(x, K.mad(x.values, _int_window(ctx, "Mad", n), x.start))


@_register("EMA", "ew")
def _ema(ctx: Any, x: Panel, n: float | int) -> Panel:
    n = _as_window(n)
    if n == 0:
        return _like(x, K.ema_expanding(x.values, x.start))
    if _is_ewm(n):
        return _like(x, K.ewm_mean(x.values, alpha=float(n)))
    if n < 0:
        raise ExpressionError(f"invalid expression {ctx.text!r}: EMA needs a non-negative window, got {n}")
    return _like(x, K.ewm_mean(x.values, span=float(n)))


def _pair_rolling(func: str) -> Callable[..., Panel]:
    def impl(ctx: Any, left: Panel, right: Panel, n: float | int) -> Panel:
        n = _int_window(ctx, func.capitalize(), n)
        # the de-meaned pairs and their cumulative sums serve every window of (left, right) in the batch
        prep = ctx.shared("corr", 0, lambda: K.corr_cov_prep(left.values, right.values), frozenset({"Corr", "Cov"}),
                          any_window=True, operands=2)  # fmt: skip
        out = K.rolling_corr_cov(left.values, right.values, n, func, prep=prep, exact_const=func != "corr" or n == 0)
        if func == "corr" and n > 0:
            mask = np.isclose(ctx.rolling_std(0, n), 0, atol=2e-05) | np.isclose(ctx.rolling_std(1, n), 0, atol=2e-05)
            out[mask] = np.nan
        start, end = _span(left, right)
        return Panel(out, start, end)

    return impl


OPERATORS["Corr"] = OpSpec("Corr", "eei", _pair_rolling("corr"))
OPERATORS["Cov"] = OpSpec("Cov", "eei", _pair_rolling("cov"))


# ---------------------------------------------------------------- other instruments


@_register("Mask", "es")
def _mask(ctx: Any, x: Panel, instrument: str) -> Panel:  # pragma: no cover - replaced by the evaluator
    raise AssertionError("Mask is evaluated by the Evaluator")


@_register("ChangeInstrument", "se")
def _change(ctx: Any, instrument: str, x: Panel) -> Panel:  # pragma: no cover - replaced by the evaluator
    raise AssertionError("ChangeInstrument is evaluated by the Evaluator")
