"""Evaluate qlib expressions on whole (dates x instruments) panels, and build feature frames.

:class:`Evaluator` evaluates expressions for a fixed list of instruments over the full calendar and
memoises every sub-expression by its canonical string (``Ref($close,1)`` is computed once for all of
Alpha158). :func:`compute_features` is the panel equivalent of qlib's ``D.features`` / data loader:
evaluate, slice to the calendar-aligned ``[start, end]``, keep the instrument's membership spans, and
gather the cells into a ``(datetime, instrument)`` frame in one vectorised step.

Semantics follow qlib 0.9.7. :class:`Evaluator` computes on each instrument's stored history from
``query_start`` (default: all of it; the dates before it are not computed at all, so a one-day query costs its
lookback, not the history); :func:`compute_features` reproduces qlib's loaded window exactly
by grouping the expressions by ``start - lft`` (qlib's ``get_extended_window_size``), which matters for
expanding windows (N=0), ``Ref(x, 0)``, EMA/ewm and the tiny online-algorithm residues of pandas.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.base import FieldData, Provider
from qlib_prefect.data.expression.ops import OPERATORS, Panel
from qlib_prefect.data.expression.parser import Const, Expression, Feature, Op, parse
from qlib_prefect.errors import DataError, ExpressionError
from qlib_prefect.tweaks.heap import heap_reuse
from qlib_prefect.utils.threads import usable_cpus

__all__ = ["STANDARD_FIELDS", "Evaluator", "compute_features", "window_size"]

#: Fields qlib datasets may lack; a missing one reads as NaN (e.g. ``$vwap`` in Yahoo/US data).
STANDARD_FIELDS = frozenset({"open", "high", "low", "close", "volume", "vwap", "factor", "change", "amount"})

#: Operators whose output at t depends on other dates: their inputs are masked to NaN outside the
#: instrument's stored span (those dates are *absent* in qlib, not values).
_POSITIONAL = frozenset(OPERATORS) - {
    "Abs", "Log", "Sign", "Not", "Add", "Sub", "Mul", "Div", "Power", "Greater", "Less",
    "Gt", "Ge", "Lt", "Le", "Eq", "Ne", "And", "Or", "If", "Mask", "ChangeInstrument",
}  # fmt: skip
#: Element-wise operators that map NaN to NaN: outputs stay NaN outside the span ("clean").
_NAN_PRESERVING = frozenset({"Abs", "Log", "Sign", "Add", "Sub", "Mul", "Div", "Greater", "Less"})
_STD_MASKED = frozenset({"Rsquare", "Corr"})
#: positional operators whose output keeps the input dtype (a float32 shift stays float32, as in pandas)
_NATIVE_DTYPE = frozenset({"Ref", "Delta"})


class _Ctx:
    """What an operator implementation may ask the evaluator for."""

    def __init__(self, ev: Evaluator, node: Op, text: str) -> None:
        self.ev, self.node, self.text = ev, node, text

    def shared(
        self,
        kind: str,
        n: int,
        compute: Any,
        names: frozenset[str] | None = None,
        *,
        any_window: bool = False,
        operands: int = 1,
    ) -> Any:
        """A by-product shared by operators (``names``, default: this one) on the same ``operands``
        leading arguments and window ``n`` (the next argument; ``any_window``: every non-zero window);
        dropped once every such node of the current batch has fetched it."""
        me = self.node
        ops_, win = me.args[:operands], me.args[operands]
        key = f"{kind}:{','.join(map(str, ops_))}:{n}"
        aux, left = self.ev._aux, self.ev._aux_left
        if key not in aux:
            aux[key] = compute()
            names = names or frozenset({me.name})
            left[key] = sum(
                1
                for o in self.ev._batch.values()
                if isinstance(o, Op)
                and o.name in names
                and o.args[:operands] == ops_
                and (o.args[operands] == win or ((any_window or kind == "idx") and o.args[operands] != Const(0)))
            )
        val = aux[key]
        left[key] = left.get(key, 1) - 1
        if left[key] <= 0:
            aux.pop(key, None)
            left.pop(key, None)
        return val

    def windows(self, operands: int = 1) -> list[int]:
        """The non-zero integer windows (argument ``operands``) of every node of the current batch with
        this operator and the same ``operands`` leading arguments (this node's included)."""
        me = self.node
        out = set()
        for o in self.ev._batch.values():
            if isinstance(o, Op) and o.name == me.name and o.args[:operands] == me.args[:operands]:
                w = o.args[operands]
                if isinstance(w, Const) and isinstance(w.value, (int, float)) and float(w.value).is_integer():
                    if w.value > 0:
                        out.add(int(w.value))
        return sorted(out)

    def siblings(self) -> list[Op]:
        """Other nodes of the current batch with this operator and the same first two arguments."""
        me = self.node
        return [
            o
            for o in self.ev._batch.values()
            if isinstance(o, Op) and o.name == me.name and o.args[:2] == me.args[:2] and o is not me
        ]

    def rolling_std(self, i: int, n: int) -> np.ndarray:
        """pandas ``rolling(n, min_periods=1).std()`` of the i-th argument (memoised as ``Std(arg,n)``)."""
        return self.ev._eval(_std_node(self.node.args[i], n), self.text).values


def _std_node(arg: Expression, n: int) -> Op:
    return Op("Std", (arg, Const(int(n))))


def _deps(node: Expression) -> list[Expression]:
    if not isinstance(node, Op):
        return []
    if node.name in ("Mask", "ChangeInstrument"):
        return []  # evaluated by a sub-evaluator for the other instrument
    deps = list(node.children())
    if node.name in _STD_MASKED:
        n = node.args[-1]
        if isinstance(n, Const) and isinstance(n.value, (int, float)) and n.value != 0:
            deps += [_std_node(a, int(n.value)) for a in node.args[: 1 if node.name == "Rsquare" else 2]]
    return deps


def _collect(nodes: Sequence[Expression]) -> dict[str, Expression]:
    """Every distinct sub-expression (incl. implicit dependencies) of ``nodes`` by canonical key."""
    out: dict[str, Expression] = {}
    stack = list(nodes)
    while stack:
        nd = stack.pop()
        k = str(nd)
        if k not in out:
            out[k] = nd
            stack.extend(_deps(nd))
    return out


class Evaluator:
    """Evaluate expressions for ``codes`` over the provider's full calendar.

    Args:
        provider: a :class:`qlib_prefect.data.base.Provider`.
        codes: instrument codes (panel columns, in this order).
        cache_bytes: soft limit of the sub-expression memo kept between :meth:`evaluate` calls
            (oldest entries are dropped first). :meth:`evaluate_many` frees intermediates itself.
        query_start: calendar position before which stored data is absent (qlib's loaded window
            ``start - lft``); 0 = each instrument's full stored history. The panels then cover only
            ``calendar[query_start:]`` (:attr:`calendar` is that slice; positions are relative to it).

    Example:
        >>> ev = Evaluator(provider, ["SH600000", "SH600004"])  # doctest: +SKIP
        >>> ev.evaluate("Mean($close, 5) / $close").shape  # doctest: +SKIP
        (1259, 2)
    """

    def __init__(
        self, provider: Provider, codes: Sequence[str], *, cache_bytes: int = 1 << 30, query_start: int = 0
    ) -> None:
        self.provider = provider
        self.codes = [str(c) for c in codes]
        full = pd.DatetimeIndex(provider.calendar())
        self._t_full = len(full)
        self.query_start = min(max(0, int(query_start)), self._t_full)
        self.calendar = full[self.query_start :]
        self.cache_bytes = int(cache_bytes)
        self._memo: OrderedDict[str, Panel] = OrderedDict()
        self._fields: dict[str, FieldData] = {}
        self._outside: dict[bytes, np.ndarray] = {}
        self._subs: dict[str, Evaluator] = {}
        self._refs: dict[str, int] | None = None
        self._keep: set[str] = set()
        self._aux: dict[str, Any] = {}
        self._aux_left: dict[str, int] = {}
        self._prep_cache: OrderedDict[str, Panel] = OrderedDict()
        self._batch: dict[str, Expression] = {}
        avail = None
        if hasattr(provider, "fields"):
            try:
                avail = {str(f).lower().lstrip("$") for f in provider.fields()}
            except Exception:  # a provider without field listing: no check
                avail = None
        self._available = avail

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.calendar), len(self.codes)

    # ------------------------------------------------------------------ public API
    def evaluate(self, expr: str | Expression) -> np.ndarray:
        """The (T x N) float32 panel of ``expr`` (NaN outside each instrument's stored span; T: the dates
        from ``query_start``)."""
        node = parse(expr)
        text = expr if isinstance(expr, str) else str(node)
        self._batch = _collect([node])
        try:
            return self._finish(self._eval(node, text))
        finally:
            self._aux.clear()
            self._aux_left.clear()
            self._prep_cache.clear()
            self._batch = {}
            self._trim()

    def evaluate_many(self, exprs: Sequence[str | Expression]) -> list[np.ndarray]:
        """Evaluate several expressions sharing sub-expressions; intermediates are freed as soon as
        no remaining expression needs them (peak memory stays small for Alpha158)."""
        outs: list[np.ndarray] = []
        self._each(exprs, lambda k, p: outs.append(self._finish(p)))
        return outs

    def _each(self, exprs: Sequence[str | Expression], consume: Any) -> None:
        """:meth:`evaluate_many` streaming: ``consume(k, panel)`` gets each result (not yet cast to
        float32 nor masked outside its span; see :meth:`_finish`) before its memory can be freed."""
        nodes = [parse(e) for e in exprs]
        texts = [e if isinstance(e, str) else str(n) for e, n in zip(exprs, nodes)]
        refs: dict[str, int] = {}
        seen: set[str] = set()
        stack = list(nodes)
        while stack:
            nd = stack.pop()
            k = str(nd)
            if k in seen:
                continue
            seen.add(k)
            for d in _deps(nd):
                refs[str(d)] = refs.get(str(d), 0) + 1
                stack.append(d)
        for nd in nodes:
            refs[str(nd)] = refs.get(str(nd), 0) + 1
        self._keep = set(self._memo)
        self._refs = refs
        self._batch = _collect(nodes)
        try:
            for k, (nd, text) in enumerate(zip(nodes, texts)):
                consume(k, self._eval(nd, text))
                self._release(str(nd))
        finally:
            self._refs = None
            self._aux.clear()
            self._aux_left.clear()
            self._prep_cache.clear()
            self._batch = {}
        self._trim()

    def span(self, exprs: Sequence[str | Expression]) -> tuple[np.ndarray, np.ndarray]:
        """Per instrument, the union ``(start, end)`` of the stored spans of the fields ``exprs`` read
        (qlib returns rows exactly there)."""
        t, n = self.shape
        start = np.full(n, t, dtype=np.int64)
        end = np.full(n, -1, dtype=np.int64)
        for e in exprs:
            s, en = self._span_of(parse(e), e if isinstance(e, str) else str(e))
            start, end = np.minimum(start, s), np.maximum(end, en)
        return start, end

    def clear(self) -> None:
        """Drop every memoised sub-expression."""
        self._memo.clear()

    def _columns(self, lo: int, hi: int) -> Evaluator:
        """An evaluator for instruments ``codes[lo:hi]`` sharing this one's loaded fields (column views)."""
        sub = Evaluator(self.provider, self.codes[lo:hi], cache_bytes=self.cache_bytes, query_start=self.query_start)
        for name, fd in self._fields.items():
            sub._fields[name] = FieldData(fd.values[:, lo:hi], fd.start[lo:hi], fd.end[lo:hi])
        return sub

    # ------------------------------------------------------------------ internals
    def _finish(self, p: Panel) -> np.ndarray:
        v = p.values
        out = v.astype(np.float32)  # always a copy: callers may modify it
        out[self._outside_mask(p.start, p.end)] = np.nan
        return out

    def _trim(self) -> None:
        total = sum(p.values.nbytes for p in self._memo.values())
        while self._memo and total > self.cache_bytes:
            _, p = self._memo.popitem(last=False)
            total -= p.values.nbytes

    def _release(self, key: str) -> None:
        if self._refs is None or key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key] <= 0 and key not in self._keep:
            self._memo.pop(key, None)

    def _outside_mask(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        key = start.tobytes() + end.tobytes()
        m = self._outside.get(key)
        if m is None:
            rows = np.arange(self.shape[0])[:, None]
            m = np.asfortranarray((rows < start[None, :]) | (rows > end[None, :]))
            if len(self._outside) > 64:
                self._outside.clear()
            self._outside[key] = m
        return m

    def _masked(self, p: Panel, key: str, f64: bool) -> Panel:
        """``p`` with NaN outside the stored span (bool -> float64, as pandas does for rolling);
        ``f64``: also float64 and time-contiguous, the input every rolling kernel converts to (a few
        recent ones are kept, since Alpha158 rolls the same input over five windows in a row)."""
        ck = f"{key}|{int(f64)}"
        hit = self._prep_cache.get(ck)
        if hit is not None:
            self._prep_cache.move_to_end(ck)
            return hit
        v = p.values
        if not (p.clean and v.dtype != bool):
            if v.dtype == bool or not np.issubdtype(v.dtype, np.floating):
                v = v.astype(np.float64)
            v = np.where(self._outside_mask(p.start, p.end), np.nan, v).astype(v.dtype, copy=False)
        if f64:
            v = np.asfortranarray(v, dtype=np.float64)
        q = Panel(v, p.start, p.end, clean=True)
        self._prep_cache[ck] = q
        while len(self._prep_cache) > 6:
            self._prep_cache.popitem(last=False)
        return q

    def _field(self, node: Feature, text: str) -> FieldData:
        name = node.name
        if node.pit:
            raise ExpressionError(f"invalid expression {text!r}: point-in-time fields ($${name}) are not supported")
        fd = self._fields.get(name)
        if fd is None:
            if self._available is not None and name not in self._available and name not in STANDARD_FIELDS:
                raise ExpressionError(
                    f"expression {text!r}: unknown field ${name}; available fields: "
                    f"{', '.join('$' + f for f in sorted(self._available))}"
                )
            fd = self.provider.load_field(name, self.codes)
            vals = np.asarray(fd.values)
            if vals.shape != (self._t_full, len(self.codes)):
                raise DataError(f"provider returned shape {vals.shape} for ${name}, "
                                f"expected {(self._t_full, len(self.codes))}")
            qs = self.query_start
            # only the dates from query_start, time-contiguous for the rolling kernels
            vals = np.asfortranarray(vals[qs:], dtype=np.float32)
            start = np.asarray(fd.start, dtype=np.int64)
            end = np.asarray(fd.end, dtype=np.int64)
            if qs > 0:  # spans relative to query_start; data ending before it is absent
                start = np.where(end >= qs, np.maximum(start, qs) - qs, len(self.calendar))
                end = np.where(end >= qs, end - qs, -1)
            fd = FieldData(vals, start, end)
            self._fields[name] = fd
        return fd

    def _span_of(self, node: Expression, text: str) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(node, Feature):
            fd = self._field(node, text)
            return fd.start, fd.end
        if isinstance(node, Op) and node.name in ("Mask", "ChangeInstrument"):
            sub, inner = self._sub(node)
            s, e = sub._span_of(inner, text)
            return np.repeat(s, len(self.codes)), np.repeat(e, len(self.codes))
        t, n = self.shape
        start, end = np.full(n, t, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        for c in node.children():
            s, e = self._span_of(c, text)
            start, end = np.minimum(start, s), np.maximum(end, e)
        return start, end

    def _sub(self, node: Op) -> tuple[Evaluator, Expression]:
        if node.name == "Mask":
            inner, code = node.args[0], node.args[1]
        else:
            code, inner = node.args[0], node.args[1]
        assert isinstance(code, Const)
        c = str(code.value)
        sub = self._subs.get(c)
        if sub is None:
            sub = Evaluator(self.provider, [c], cache_bytes=self.cache_bytes, query_start=self.query_start)
            self._subs[c] = sub
        return sub, inner

    def _eval(self, node: Expression, text: str) -> Panel:
        key = str(node)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if isinstance(node, Feature):
            fd = self._field(node, text)
            p = Panel(fd.values, fd.start, fd.end)
            p.clean = True
        elif isinstance(node, Op):
            p = self._eval_op(node, text)
        else:  # pragma: no cover - parse() never returns a bare constant
            raise ExpressionError(f"invalid expression {text!r}: constant without a field")
        self._memo[key] = p
        for d in _deps(node):
            self._release(str(d))
        return p

    def _eval_op(self, node: Op, text: str) -> Panel:
        spec = OPERATORS[node.name]
        if node.name in ("Mask", "ChangeInstrument"):
            sub, inner = self._sub(node)
            q = sub._eval(inner, text)
            n = len(self.codes)
            return Panel(np.repeat(q.values, n, axis=1), np.repeat(q.start, n), np.repeat(q.end, n))
        positional = node.name in _POSITIONAL
        args: list[Any] = []
        for a in node.args:
            if isinstance(a, Const):
                args.append(a.value)
            else:
                p = self._eval(a, text)
                args.append(self._masked(p, str(a), node.name not in _NATIVE_DTYPE) if positional else p)
        try:
            with np.errstate(all="ignore"):  # NaN/inf arithmetic is expected (qlib: np.seterr(invalid="ignore"))
                out = spec.impl(_Ctx(self, node, text), *args)
        except ExpressionError:
            raise
        except (ValueError, TypeError, IndexError) as e:
            raise ExpressionError(f"expression {text!r}: {node} failed: {e}") from e
        panels = [a for a in args if isinstance(a, Panel)]
        out.clean = (
            node.name in _NAN_PRESERVING
            and all(p.clean for p in panels)
            and len({(p.start.tobytes(), p.end.tobytes()) for p in panels}) == 1
        )
        return out


_ROLLING = frozenset(
    {"Mean", "Sum", "Std", "Var", "Max", "Min", "Med", "Count", "Skew", "Kurt", "Mad", "Slope", "Resi",
     "Rsquare", "Rank", "Quantile", "IdxMax", "IdxMin", "EMA", "WMA", "Delta"}
)  # fmt: skip


def window_size(node: Expression) -> tuple[float, float]:
    """qlib's ``get_extended_window_size()``: how many dates before/after the query the expression
    loads (``Rolling(N)``: ``lft + N - 1``; ``Ref(N)``: ``lft + N`` / ``rght - N``; ``N == 0``: unchanged)."""
    if isinstance(node, Feature) or not isinstance(node, Op):
        return 0, 0
    name = node.name
    spec = OPERATORS.get(name)
    if spec is not None and spec.window is not None:  # a user operator (init(custom_ops=...))
        return spec.window(node)
    if name in ("Mask", "ChangeInstrument"):
        return window_size(node.children()[0])
    if name in _ROLLING or name == "Ref":
        lft, rght = window_size(node.args[0])
        n = node.args[1].value  # type: ignore[union-attr]
        if n == 0:
            return lft, rght
        if name == "Ref":
            return max(lft + n, lft), max(rght - n, rght)
        if isinstance(n, float) and 0 < n < 1:
            size = int(np.log(1e-6) / np.log(1 - n))
            return max(lft + size - 1, lft), rght
        return max(lft + n - 1, lft), rght
    sizes = [window_size(c) for c in node.children()] or [(0, 0)]
    lft, rght = max(s[0] for s in sizes), max(s[1] for s in sizes)
    if name in ("Corr", "Cov"):
        n = node.args[2].value  # type: ignore[union-attr]
        return (lft + n - 1 if n != 0 else -np.inf), rght
    return lft, rght


#: instruments per thread below which compute_features stays single-threaded
_MIN_CODES_PER_THREAD = 128


def _threads(n_codes: int) -> int:
    """Threads for :func:`compute_features`: ``$QLIB_PREFECT_EXPR_THREADS``, else the CPUs this process may use
    (at most 4), with at least ``_MIN_CODES_PER_THREAD`` instruments each. A column split costs ~20% more CPU
    in total for a shorter wall time; set ``QLIB_PREFECT_EXPR_THREADS=1`` when the cores are busy anyway."""
    from qlib_prefect.config.settings import get_settings

    want = get_settings().expr_threads or usable_cpus()
    return max(1, min(want, n_codes // _MIN_CODES_PER_THREAD))


def _resolve_instruments(provider: Any, instruments: Any) -> tuple[list[str], dict[str, list] | None]:
    """``(codes, spans)``: spans ``None`` means no membership filter (a plain list of codes)."""
    if isinstance(instruments, str):
        spans = provider.instruments(instruments)
        return sorted(spans), dict(spans)
    if isinstance(instruments, Mapping):
        if "market" in instruments and "filter_pipe" in instruments:  # filters evaluate expressions: callers first
            raise DataError("an instruments config with a filter_pipe must be resolved to membership spans first "
                            "(qlib_prefect.data.filter.apply_filter_pipe)")
        return sorted(str(k) for k in instruments), {str(k): v for k, v in instruments.items()}
    if isinstance(instruments, Sequence):
        return sorted({str(c) for c in instruments}), None
    raise DataError(
        f"instruments must be a market name, a list of codes or a {{code: spans}} dict, got {instruments!r}"
    )


def _align(cal: pd.DatetimeIndex, start: Any, end: Any) -> tuple[int, int]:
    """Calendar positions ``[si, ei]``: first day >= start, last day <= end (``ei < si`` if empty)."""
    si = 0 if start is None else int(cal.searchsorted(pd.Timestamp(start), side="left"))
    ei = len(cal) - 1 if end is None else int(cal.searchsorted(pd.Timestamp(end), side="right")) - 1
    return si, ei


def compute_features(
    provider: Provider,
    instruments: Any,
    exprs: list[str],
    names: list[str] | None = None,
    start: Any = None,
    end: Any = None,
    *,
    freq: str = "day",
    evaluator: Evaluator | None = None,
) -> pd.DataFrame:
    """Evaluate ``exprs`` on the panel and return the frame qlib's data loader would build.

    Features use each instrument's full history; rows are then restricted to the calendar-aligned
    ``[start, end]``, to the instrument's stored span and to its membership spans (a market name or
    ``{code: spans}``; a plain list keeps every stored row). Result: float32 columns ``names`` (default:
    the expressions) in order, index ``(datetime, instrument)`` sorted; instruments without rows are
    dropped.
    """
    if freq != "day":
        raise DataError(f"only freq='day' is supported, got {freq!r}")
    exprs = list(exprs)
    names = list(exprs) if names is None else list(names)
    if len(names) != len(exprs):
        raise ExpressionError(f"{len(exprs)} expressions but {len(names)} names")
    codes, spans = _resolve_instruments(provider, instruments)
    cal = pd.DatetimeIndex(provider.calendar())
    si, ei = _align(cal, start, end)
    # qlib computes each expression on [start - lft, ...]: group expressions by that first date
    groups: dict[int, list[int]] = {}
    for k, e in enumerate(exprs):
        lft = window_size(parse(e))[0]
        qs = 0 if si <= 0 or not np.isfinite(lft) else max(0, si - int(lft))
        groups.setdefault(qs, []).append(k)
    evs = {}
    for qs in groups:
        if evaluator is not None and evaluator.codes == codes and evaluator.query_start == qs:
            evs[qs] = evaluator
        else:
            evs[qs] = Evaluator(provider, codes, query_start=qs)
    t_len = len(cal)
    # row mask over the panel: [si, ei] & stored span (union over the fields read) & membership
    s_start = np.full(len(codes), t_len, dtype=np.int64)
    s_end = np.full(len(codes), -1, dtype=np.int64)
    for qs, ks in groups.items():  # the evaluators' spans are relative to their query_start
        a, b = evs[qs].span([exprs[k] for k in ks])
        a, b = np.where(b >= 0, a + qs, t_len), np.where(b >= 0, b + qs, -1)
        s_start, s_end = np.minimum(s_start, a), np.maximum(s_end, b)
    rows = np.arange(t_len)[:, None]
    keep = (rows >= np.maximum(s_start, si)[None, :]) & (rows <= np.minimum(s_end, ei)[None, :])
    if spans is not None:
        member = np.zeros_like(keep)
        for j, c in enumerate(codes):  # membership spans: a few slices per instrument
            for b, e in spans.get(c, []) or []:
                lo = int(cal.searchsorted(pd.Timestamp(b), side="left"))
                hi = int(cal.searchsorted(pd.Timestamp(e), side="right"))
                member[lo:hi, j] = True
        keep &= member
    ti, ci = np.nonzero(keep)  # row-major: sorted by (datetime, instrument)
    has = keep.any(axis=0)
    first = np.where(has, keep.argmax(axis=0), t_len)
    last = np.where(has, t_len - 1 - keep[::-1].argmax(axis=0), -1)

    n_thr = 1 if evaluator is not None else _threads(len(codes))
    bounds = np.linspace(0, len(codes), n_thr + 1).astype(np.int64)
    parts = []
    for lo, hi in ((bounds[i], bounds[i + 1]) for i in range(n_thr)):
        sel = np.flatnonzero((ci >= lo) & (ci < hi)) if n_thr > 1 else None
        c_, t_ = (ci, ti) if sel is None else (ci[sel], ti[sel])
        parts.append((int(lo), int(hi), sel, c_ - lo, t_, first[lo:hi], last[lo:hi]))

    def run_part(lo: int, hi: int, sel: Any, col: np.ndarray, row: np.ndarray, first_: np.ndarray,
                 last_: np.ndarray) -> None:
        flat = np.empty(t_len * (hi - lo), dtype=np.float32)
        tmp = np.empty(len(row), dtype=np.float32) if sel is not None else None

        def gather(ev: Evaluator, ks: list[int], lin: np.ndarray, buf: np.ndarray, fst: np.ndarray,
                   lst: np.ndarray, i: int, p: Panel) -> None:
            k = ks[i]
            v = p.values
            if v.dtype.kind != "f" or not (np.all(p.start <= fst) and np.all(p.end >= lst)):
                # bool/int results, or kept rows outside the result's span: the full float32 + NaN mask pass
                v = ev._finish(p)
            if v.dtype != np.float32 or not v.flags.f_contiguous:  # take() casting on the fly is 3x slower
                with np.errstate(all="ignore"):  # as astype: NaN/inf/overflow quietly
                    np.copyto(buf, v, casting="unsafe")
                v = buf
            if sel is None:
                np.take(v.ravel(order="F"), lin, out=data[:, k], mode="clip")
            else:
                np.take(v.ravel(order="F"), lin, out=tmp, mode="clip")
                out = data[:, k]
                out[sel] = tmp  # this part's rows of the (datetime, instrument) frame (faster than np.put)

        for qs, ks in groups.items():  # a group's panels start at its query_start: positions relative to it
            ev = evs[qs] if n_thr == 1 else evs[qs]._columns(lo, hi)
            t_rel = t_len - qs
            lin = col * t_rel + (row - qs)
            buf = flat[: t_rel * (hi - lo)].reshape((t_rel, hi - lo), order="F")
            fst, lst = first_ - qs, last_ - qs
            ev._each([exprs[k] for k in ks], functools.partial(gather, ev, ks, lin, buf, fst, lst))

    with heap_reuse():
        data = np.empty((len(ti), len(exprs)), dtype=np.float32, order="F")  # = pandas' block layout
        if n_thr == 1:
            run_part(*parts[0])
        else:  # instruments are independent: column blocks in threads (numpy/bottleneck release the GIL)
            with ThreadPoolExecutor(n_thr, thread_name_prefix="qlib-prefect-expr") as pool:
                for f in [pool.submit(run_part, *part) for part in parts]:
                    f.result()
    index = pd.MultiIndex.from_arrays(
        [cal[ti], pd.Index(np.asarray(codes, dtype=object)[ci], dtype=object)], names=["datetime", "instrument"]
    )
    return pd.DataFrame(data, index=index, columns=pd.Index(names, dtype=object), copy=False)
