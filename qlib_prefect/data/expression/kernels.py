"""Vectorised rolling kernels on (dates x instruments) panels (axis 0 = time).

Every kernel works on the whole panel at once (no per-instrument Python loop) and reproduces the
numerics qlib gets from pandas ``Series.rolling(N, min_periods=1)`` and qlib's Cython kernels
(``qlib/data/_libs/rolling.pyx``) applied to one instrument's series:

* values before an instrument's first stored date are NaN in the panel; every NaN-skipping
  statistic is then identical to qlib's, where those positions are absent;
* kernels whose result depends on the *raw* window length (``IdxMax``/``IdxMin``, ``WMA``) get the
  per-instrument first stored position ``start`` and shorten the window there, as qlib does.
"""

from __future__ import annotations

import weakref

import bottleneck as bn
import numpy as np
import pandas as pd

__all__ = [
    "corr_cov_prep",
    "ema_expanding",
    "ewm_mean",
    "expanding",
    "idx_extreme",
    "idx_extremes",
    "mad",
    "regression",
    "regression_sums",
    "rolling_corr_cov",
    "rolling_pandas",
    "rolling_quantiles",
    "rolling_ranks",
    "rolling_stat",
    "rolling_var",
    "shift",
    "wma",
]


def _f64(x: np.ndarray) -> np.ndarray:
    """float64, time-contiguous (Fortran order): bottleneck and pandas run fastest on that layout."""
    return np.asfortranarray(x, dtype=np.float64)


_FINITE: dict[int, weakref.ref] = {}


def _prep(x: np.ndarray) -> np.ndarray:
    """What pandas' rolling/expanding/ewm feed their kernels: float64 with +-inf turned into NaN (an
    input already free of inf is remembered: Alpha158 rolls one input over five windows)."""
    a = _f64(x)
    ref = _FINITE.get(id(a))
    if ref is not None and ref() is a:
        return a
    inf = np.isinf(a)
    if inf.any():
        return np.where(inf, np.nan, a)
    if len(_FINITE) > 64:
        _FINITE.clear()
    _FINITE[id(a)] = weakref.ref(a)
    return a


def shift(x: np.ndarray, n: int) -> np.ndarray:
    """``Series.shift(n)`` along time (n<0 looks ahead); bool input becomes float64 (0/1/NaN)."""
    if x.dtype == bool:
        x = x.astype(np.float64)
    out = np.full_like(x, np.nan)
    t = x.shape[0]
    if n == 0:
        out[:] = x
    elif abs(n) < t:
        if n > 0:
            out[n:] = x[:-n]
        else:
            out[:n] = x[-n:]
    return out


def _frame(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(_prep(x), copy=False)


#: pandas rolling functions whose state is just the multiset of values in the window (skiplist or a
#: count): evaluating all instruments in one long series separated by ``n - 1`` NaN is bit-identical
_STATELESS = frozenset({"quantile", "rank", "median", "count"})


def rolling_pandas(x: np.ndarray, n: int, func: str, *args: float) -> np.ndarray:
    """``DataFrame.rolling(n, min_periods=1).<func>(*args)`` on the panel (exact pandas numerics)."""
    a = _prep(x)
    t_len, n_inst = a.shape
    if func in _STATELESS and t_len and n_inst > 1:
        sep = max(int(n) - 1, 0)
        buf = np.full((t_len + sep, n_inst), np.nan, order="F")
        buf[sep:] = a  # NaN gap before each instrument: no window spans two instruments
        r = pd.Series(buf.ravel(order="F"), copy=False).rolling(int(n), min_periods=1)
        res = r.rank(pct=True) if func == "rank" else getattr(r, func)(*args)
        return np.asfortranarray(res.to_numpy().reshape(buf.shape, order="F")[sep:])
    r = pd.DataFrame(a, copy=False).rolling(int(n), min_periods=1)
    if func == "rank":
        return r.rank(pct=True).to_numpy()
    return getattr(r, func)(*args).to_numpy()


def rolling_quantiles(x: np.ndarray, n: int, qs: list[float], chunk: int = 64) -> dict[float, np.ndarray]:
    """pandas ``rolling(n, min_periods=1).quantile(q)`` (linear) for several ``q`` from one sort of the
    windows. Quantiles involve no accumulation, so this is bit-identical to pandas' skiplist:
    ``v[i] + (v[i+1] - v[i]) * (q (m-1) - i)`` over the ``m`` sorted non-NaN values, ``i = int(q (m-1))``.
    Full windows (``m = n``) read two fixed columns of the sorted windows; only the others gather."""
    a = _prep(x)
    t_len, n_inst = a.shape
    w = _window(n, t_len) if t_len else 1
    outs = {q: np.empty((t_len, n_inst), order="F") for q in qs}
    if t_len == 0:
        return outs
    a32 = a.astype(np.float32)
    # float32 values (raw fields) sort ~30% faster as float32; the interpolation stays float64
    exact = bool(np.array_equal(a32, a, equal_nan=True))
    padded = np.full((t_len + w - 1, n_inst), np.nan, dtype=np.float32 if exact else np.float64, order="F")
    padded[w - 1 :] = a32 if exact else a
    del a32
    m_all = np.nan_to_num(bn.move_sum((~np.isnan(a)).astype(np.float64), w, min_count=1, axis=0)).astype(np.int64)
    for c0 in range(0, n_inst, chunk):
        sub = np.ascontiguousarray(padded[:, c0 : c0 + chunk].T)  # (c, T + w - 1)
        win = np.lib.stride_tricks.sliding_window_view(sub, w, axis=1)  # (c, T, w)
        srt = np.sort(win, axis=-1)  # NaN last
        m = np.ascontiguousarray(m_all[:, c0 : c0 + chunk].T)  # (c, T) non-NaN values per window
        part = m < w
        ps = srt[part]  # (k, w): windows with NaN or shortened at the start
        pm = m[part]
        for q, out in outs.items():
            kf = q * (w - 1)
            k = min(int(kf), w - 1)
            lo = srt[..., k].astype(np.float64)
            hi = srt[..., min(k + 1, w - 1)].astype(np.float64)
            r = lo if k == kf else lo + (hi - lo) * (kf - k)
            if ps.size:
                idxf = q * (pm - 1)
                idx = np.clip(idxf.astype(np.int64), 0, w - 1)
                plo = np.take_along_axis(ps, idx[:, None], -1)[:, 0].astype(np.float64)
                phi = np.take_along_axis(ps, np.minimum(idx + 1, w - 1)[:, None], -1)[:, 0].astype(np.float64)
                with np.errstate(invalid="ignore"):
                    pr = np.where(idx == idxf, plo, plo + (phi - plo) * (idxf - idx))
                pr[pm == 0] = np.nan
                r[part] = pr
            out[:, c0 : c0 + chunk] = r.T
    return outs


def rolling_ranks(x: np.ndarray, ns: list[int]) -> dict[int, np.ndarray]:
    """pandas ``rolling(n, min_periods=1).rank(pct=True)`` (average ties) for several windows ``ns`` of
    one input, from one pass over the lags. pandas ranks the newest value in its skiplist: with ``lo`` =
    window values below it and ``eq`` = values equal to it (itself included), ``rank = lo + (eq + 1) / 2``
    (the average of ranks ``lo + 1 .. lo + eq``, exact in float64) divided by the window's non-NaN count;
    NaN when the newest value is NaN. Counting is exact, so the result is bit-identical to pandas."""
    a = _prep(x)
    t_len = a.shape[0]
    ns = sorted({max(1, int(n)) for n in ns})
    wmax = min(ns[-1], t_len) if t_len else 1
    valid = ~np.isnan(a)
    lo = np.zeros(a.shape, dtype=np.int16 if wmax < 32000 else np.int64, order="F")
    eq = np.ones_like(lo)
    cnt = valid.astype(lo.dtype)
    outs: dict[int, np.ndarray] = {}

    def emit(n: int) -> None:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (lo + (eq + 1) * 0.5) / cnt
        r[~valid] = np.nan
        outs[n] = np.asfortranarray(r)

    pending = list(ns)
    while pending and pending[0] <= 1:
        emit(pending.pop(0))
    for j in range(1, wmax):
        cur, old = a[j:], a[:-j]
        lo[j:] += old < cur
        eq[j:] += old == cur
        cnt[j:] += valid[:-j]
        while pending and pending[0] == j + 1:
            emit(pending.pop(0))
    for n in pending:  # windows longer than the calendar
        emit(n)
    return outs


#: below ``SUSPECT * max|x|`` (per instrument) a bottleneck result may differ from pandas' by more than
#: float32 resolution (online-algorithm residues); those instruments are recomputed with pandas.
SUSPECT = {"sum": 1e-6, "mean": 1e-6, "std": 1e-4, "var": 1e-4}  # var: compared as sqrt(var)


#: instruments recomputed by pandas so far, per function (diagnostics for benchmarks)
FALLBACK_STATS: dict[str, int] = {}


_SCALE_CACHE: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def _scale(a: np.ndarray) -> np.ndarray:
    """``max |a|`` per instrument, remembered for the same input array (Alpha158 rolls one input over
    five windows)."""
    hit = _SCALE_CACHE.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    if not a.size:
        return np.zeros(a.shape[1])
    with np.errstate(invalid="ignore"):
        scale = np.fmax(bn.nanmax(a, axis=0), -bn.nanmin(a, axis=0))
    if len(_SCALE_CACHE) > 32:
        _SCALE_CACHE.clear()
    _SCALE_CACHE[id(a)] = (weakref.ref(a), scale)
    return scale


def _pandas_fallback(a: np.ndarray, res: np.ndarray, n: int, func: str) -> np.ndarray:
    """Recompute with pandas (bit-identical to qlib) the instruments where ``res`` is suspiciously
    close to zero relative to the instrument's largest value."""
    scale = _scale(a)
    with np.errstate(invalid="ignore"):
        if func in ("sum", "mean"):
            # an exact 0 from bottleneck is pandas' 0 too (float32-sourced values sum exactly in
            # float64); only tiny non-zero residues are suspect
            mag = np.abs(res)
            mag[res == 0] = np.inf
        else:  # std >= 0
            mag = np.abs(res) if func == "var" else res
        low = bn.nanmin(mag, axis=0) if res.size else np.full(res.shape[1], np.nan)
        if func == "var":
            low = np.sqrt(low)
        bad = low < SUSPECT[func] * scale
    cols = np.flatnonzero(bad)
    FALLBACK_STATS[func] = FALLBACK_STATS.get(func, 0) + int(cols.size)
    if cols.size:
        sub = pd.DataFrame(np.asfortranarray(a[:, cols]), copy=False).rolling(int(n), min_periods=1)
        res[:, cols] = getattr(sub, func)().to_numpy()
    return res


def rolling_stat(x: np.ndarray, n: int, func: str) -> np.ndarray:
    """Rolling sum/mean/max/min with bottleneck (NaN skipped, NaN when the window has no value).

    ``max``/``min`` are exact; ``sum``/``mean`` agree with pandas' Kahan sums to ~1e-12 relative, and
    instruments with near-zero results (where residues matter) are recomputed by pandas."""
    a = _prep(x)
    if a.shape[0] == 0:
        return a.copy()
    w = _window(n, a.shape[0])
    fn = {"sum": bn.move_sum, "mean": bn.move_mean, "max": bn.move_max, "min": bn.move_min}[func]
    res = fn(a, w, min_count=1, axis=0)
    if func in ("sum", "mean"):
        res = _pandas_fallback(a, res, n, func)
    return res


def _window(n: int, t_len: int) -> int:
    return max(1, min(int(n), t_len))


def rolling_var(x: np.ndarray, n: int, *, std: bool = False) -> np.ndarray:
    """pandas rolling ``var``/``std`` (ddof=1, min_periods=1).

    pandas' online Welford/Kahan state leaves small non-zero values in constant windows that follow
    large values (e.g. ``Std`` of a run of zeros) and qlib's numbers (WVMA, the ``isclose(std, 0)``
    masks of ``Corr``/``Rsquare``) depend on them. Bottleneck is used where the result is far from
    zero (agreement ~1e-8 relative or better); instruments with any small value are recomputed with
    pandas itself, bit-identical to qlib (leading NaN do not touch pandas' state)."""
    a = _prep(x)
    t_len = a.shape[0]
    if t_len == 0:
        return a.copy()
    w = _window(n, t_len)
    v = bn.move_var(a, w, min_count=min(2, w), axis=0, ddof=1)  # NaN with fewer than 2 values
    if w == 1:
        v[:] = np.nan
    res = np.sqrt(np.maximum(v, 0.0)) if std else v
    return _pandas_fallback(a, res, n, "std" if std else "var")


def expanding(x: np.ndarray, func: str, *args: float) -> np.ndarray:
    """``DataFrame.expanding(min_periods=1).<func>()`` (leading NaN = absent, so this is exact)."""
    e = _frame(x).expanding(min_periods=1)
    if func == "rank":
        return e.rank(pct=True).to_numpy()
    return getattr(e, func)(*args).to_numpy()


def ewm_mean(x: np.ndarray, *, alpha: float | None = None, span: float | None = None) -> np.ndarray:
    """``DataFrame.ewm(alpha=..|span=.., min_periods=1).mean()``."""
    return _frame(x).ewm(alpha=alpha, span=span, min_periods=1).mean().to_numpy()


def corr_cov_prep(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Shared by every window of ``Corr/Cov(a, b, .)``: the pairwise-present values, de-meaned per
    instrument (corr/cov are shift invariant; this keeps cancellation far below float32 resolution),
    and cumulative sums (leading zero row) of the count, x, y, xy, xx and yy."""
    x64, y64 = _f64(a), _f64(b)
    both = np.isfinite(x64) & np.isfinite(y64)  # pandas turns inf into NaN before rolling
    X = np.where(both, x64, np.nan)
    Y = np.where(both, y64, np.nan)
    with np.errstate(all="ignore"):
        cx = np.nan_to_num(bn.nanmean(X, axis=0), nan=0.0)
        cy = np.nan_to_num(bn.nanmean(Y, axis=0), nan=0.0)
    X -= cx
    Y -= cy
    Xz = np.where(both, X, 0.0)
    Yz = np.where(both, Y, 0.0)
    t_len, n_inst = X.shape

    def csum(v: np.ndarray) -> np.ndarray:
        out = np.zeros((t_len + 1, n_inst), order="F")
        np.cumsum(v, axis=0, out=out[1:])
        return out

    return {"X": X, "Y": Y, "n": csum(both.astype(np.float64)), "x": csum(Xz), "y": csum(Yz),
            "xy": csum(Xz * Yz), "xx": csum(Xz * Xz), "yy": csum(Yz * Yz)}  # fmt: skip


def rolling_corr_cov(
    a: np.ndarray, b: np.ndarray, n: int, func: str, *, prep: dict | None = None, exact_const: bool = True
) -> np.ndarray:
    """pandas pairwise rolling ``corr``/``cov`` (ddof=1, min_periods=1): a position counts only if both
    values are present. Window sums are differences of cumulative sums of de-meaned values (``prep``,
    see :func:`corr_cov_prep`; the error is of the order of a running moving sum's). A window whose
    values are all equal has variance exactly 0 (-> corr NaN), as in pandas; ``exact_const=False``
    (the caller masks windows with a near-zero rolling std anyway) checks this only for instruments
    with values above 1e6, where pandas' std residue of a constant window could exceed that mask."""
    p = prep if prep is not None else corr_cov_prep(a, b)
    X, Y = p["X"], p["Y"]
    t_len = X.shape[0]
    if t_len == 0:
        return X.copy()
    w = t_len if n == 0 else _window(n, t_len)

    def msum(k: str) -> np.ndarray:
        cs = p[k]
        out = cs[1:].copy(order="F")
        if w < t_len:
            out[w:] -= cs[1 : t_len + 1 - w]
        return out

    cnt = msum("n")
    sx, sy, sxy = msum("x"), msum("y"), msum("xy")
    few = ~(cnt >= 2)
    with np.errstate(all="ignore"):
        cov = (sxy - sx * sy / cnt) / (cnt - 1)
        cov[few] = np.nan
        if func == "cov":
            return cov
        vx = np.maximum((msum("xx") - sx * sx / cnt) / (cnt - 1), 0.0)
        vy = np.maximum((msum("yy") - sy * sy / cnt) / (cnt - 1), 0.0)
        cols = slice(None)
        if not exact_const:
            big = (bn.nanmax(np.abs(X), axis=0) > 1e6) | (bn.nanmax(np.abs(Y), axis=0) > 1e6)
            cols = np.flatnonzero(big)
        if exact_const or cols.size:
            Xc, Yc = X[:, cols], Y[:, cols]
            if n == 0:
                cx_ = np.fmax.accumulate(Xc, axis=0) == np.fmin.accumulate(Xc, axis=0)
                cy_ = np.fmax.accumulate(Yc, axis=0) == np.fmin.accumulate(Yc, axis=0)
            else:
                cx_ = bn.move_max(Xc, w, min_count=1, axis=0) == bn.move_min(Xc, w, min_count=1, axis=0)
                cy_ = bn.move_max(Yc, w, min_count=1, axis=0) == bn.move_min(Yc, w, min_count=1, axis=0)
            vx[:, cols] = np.where(cx_, 0.0, vx[:, cols])
            vy[:, cols] = np.where(cy_, 0.0, vy[:, cols])
        den = np.sqrt(vx * vy)
        out = np.where(den > 0, cov / den, np.nan)
    out[few] = np.nan
    return out


def _window_len(t_len: int, n: int, start: np.ndarray) -> np.ndarray:
    """Raw window length at each (t, instrument): ``min(n, t - start + 1)`` (>= 1)."""
    t = np.arange(t_len)[:, None]
    return np.clip(t - start[None, :] + 1, 1, n)


def idx_extreme(x: np.ndarray, n: int, start: np.ndarray, *, argmax: bool) -> np.ndarray:
    """qlib ``IdxMax``/``IdxMin``: ``np.argmax(raw window) + 1`` (first NaN wins), window shortened
    at the series start; NaN where the window holds no value. ``n == 0`` -> expanding window."""
    a = _prep(x)  # pandas rolling.apply sees inf as NaN
    t_len, n_inst = a.shape
    rows = np.arange(t_len)[:, None]
    before = rows < start[None, :]
    isn = np.isnan(a) & ~before
    fill = -np.inf if argmax else np.inf
    if n == 0:
        big = np.where(before, fill, np.where(np.isnan(a), fill, a))
        # position of the running extreme (first occurrence)
        if argmax:
            run = np.maximum.accumulate(big, axis=0)
            prev = np.vstack([np.full((1, n_inst), -np.inf), run[:-1]])
            new = big > prev
        else:
            run = np.minimum.accumulate(big, axis=0)
            prev = np.vstack([np.full((1, n_inst), np.inf), run[:-1]])
            new = big < prev
        pos = np.where(new, rows, -1)
        pos = np.maximum.accumulate(pos, axis=0)
        pos = np.where(pos < 0, start[None, :], pos)  # all values equal to fill: argmax -> first element
        nanpos = np.where(isn, rows, t_len + 1)
        first_nan = np.minimum.accumulate(nanpos, axis=0)
        best = np.where(first_nan <= rows, first_nan, pos)
        out = (best - start[None, :] + 1).astype(np.float64)
        cnt = np.cumsum(~np.isnan(a) & ~before, axis=0)
        out[(cnt == 0) | before] = np.nan
        return out
    return idx_extremes(x, [n], start, argmax=argmax)[n]


def idx_extremes(x: np.ndarray, ns: list[int], start: np.ndarray, *, argmax: bool) -> dict[int, np.ndarray]:
    """qlib ``IdxMax``/``IdxMin`` (``np.argmax(raw window) + 1``, first NaN wins, oldest of equal
    extremes, window shortened at the series start) for several windows ``ns > 0`` of one input from one
    pass over the lags, newest to oldest: an older value replaces the running extreme when it is at
    least as large (NaN counts as +inf, absent dates before the start as -inf), so after lag ``n - 1``
    the running lag is the answer for window ``n``. Exact (comparisons only)."""
    a = _prep(x)  # pandas rolling.apply sees inf as NaN
    t_len = a.shape[0]
    ns = sorted({max(1, int(n)) for n in ns})
    rows = np.arange(t_len)[:, None]
    before = rows < start[None, :]
    isn = np.isnan(a)
    a32 = a.astype(np.float32)
    exact = bool(np.array_equal(a32, a, equal_nan=True))
    v = a32 if exact else a.copy(order="F")
    if not argmax:
        np.negative(v, out=v)  # argmin = argmax of the negated values (ties and NaN unchanged)
    v[isn] = np.inf
    v[before] = -np.inf
    best = v.copy(order="F")
    jb = np.zeros(a.shape, dtype=np.int32, order="F")
    valid = (~isn).astype(np.float64)
    outs: dict[int, np.ndarray] = {}

    def emit(n: int) -> None:
        w = min(n, t_len) if t_len else 1
        length = np.clip(rows - start[None, :] + 1, 1, w)
        out = (length - jb).astype(np.float64)
        has = bn.move_sum(valid, w, min_count=1, axis=0) > 0 if t_len else np.zeros(a.shape, dtype=bool)
        out[~has | before] = np.nan
        outs[n] = np.asfortranarray(out)

    pending = list(ns)
    wmax = min(ns[-1], t_len) if t_len else 1
    while pending and pending[0] <= 1:
        emit(pending.pop(0))
    upd = np.empty(a.shape, dtype=bool, order="F")
    for j in range(1, wmax):
        old, cur = v[:-j], best[j:]
        u = upd[j:]
        np.greater_equal(old, cur, out=u)
        np.copyto(cur, old, where=u)
        np.copyto(jb[j:], j, where=u)
        while pending and pending[0] == j + 1:
            emit(pending.pop(0))
    for n in pending:  # windows longer than the calendar
        emit(n)
    return outs


def wma(x: np.ndarray, n: int, start: np.ndarray) -> np.ndarray:
    """qlib ``WMA``: weights 1..L (newest heaviest) normalised over the raw window length L, then
    ``nanmean(w * x)``; ``n == 0`` -> expanding."""
    a = _prep(x)
    t_len = a.shape[0]
    n = t_len if n == 0 else min(int(n), t_len)
    length = _window_len(t_len, n, start)
    denom = length * (length + 1) / 2.0
    acc = np.zeros_like(a)
    cnt = np.zeros_like(a)
    for j in range(n):  # lag loop (vectorised over the panel)
        xs = shift(a, j)
        inwin = j < length
        ok = inwin & ~np.isnan(xs)
        acc += np.where(ok, (length - j) / denom * np.where(ok, xs, 0.0), 0.0)
        cnt += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / cnt, np.nan)


def mad(x: np.ndarray, n: int, start: np.ndarray) -> np.ndarray:
    """qlib ``Mad``: mean absolute deviation around the window mean (non-NaN values)."""
    a = _prep(x)
    t_len = a.shape[0]
    n = t_len if n == 0 else min(int(n), t_len)
    length = _window_len(t_len, n, start)
    m = rolling_stat(a, n, "mean")
    acc = np.zeros_like(a)
    cnt = np.zeros_like(a)
    for j in range(n):
        xs = shift(a, j)
        ok = (j < length) & ~np.isnan(xs)
        acc += np.where(ok, np.abs(np.where(ok, xs, 0.0) - m), 0.0)
        cnt += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / cnt, np.nan)


def ema_expanding(x: np.ndarray, start: np.ndarray) -> np.ndarray:
    """qlib ``EMA(x, 0)``: for each t, weights ``a**k`` (k = age) with ``a = 1 - 2/(1+L)``, L the
    raw expanding length, normalised over all L weights, ``nansum``. O(T^2) but vectorised."""
    a = _prep(x)
    t_len, n_inst = a.shape
    out = np.full_like(a, np.nan)
    filled = np.where(np.isnan(a), 0.0, a)
    valid = ~np.isnan(a)
    for t in range(t_len):  # time loop, vectorised over instruments
        s = np.minimum(start, t)
        length = t - s + 1  # (N,)
        lo = int(s.min()) if n_inst else t
        ages = t - np.arange(lo, t + 1)[:, None]  # (k, 1)
        alpha = 1.0 - 2.0 / (1.0 + length)
        w = np.where(ages < length[None, :], alpha[None, :] ** ages, 0.0)
        w = w / w.sum(axis=0, keepdims=True)
        out[t] = (w * filled[lo : t + 1]).sum(axis=0)
        has = (valid[lo : t + 1] & (ages < length[None, :])).any(axis=0)
        out[t, ~has] = np.nan
    out[np.arange(t_len)[:, None] < start[None, :]] = np.nan
    return out


def regression_sums(x: np.ndarray, n: int, start: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Per-date running sums ``(cnt, x_sum, x2_sum, y_sum, y2_sum, xy_sum, pos)`` of qlib's Cython
    ``Slope/Resi/Rsquare`` kernels (``rolling.pyx``: deque prefilled with NaN; ``n == 0``:
    ``expanding.pyx``). The float64 recurrence is replayed step by step in time, vectorised across
    instruments, in the kernel's operation order, so the sums drift exactly as in qlib."""
    a = np.ascontiguousarray(x, dtype=np.float64)  # row (date) contiguous for the time loop
    t_len, n_inst = a.shape
    ok = ~np.isnan(a)
    v0 = np.where(ok, a, 0.0)
    okf = ok.astype(np.float64)
    shape = (t_len, n_inst)
    sums = {k: np.empty(shape) for k in ("x", "x2", "y", "y2", "xy")}
    if n == 0:
        if start is None:
            start = np.zeros(n_inst, dtype=np.int64)
        size = np.arange(t_len, dtype=np.float64)[:, None] - start[None, :] + 1.0  # expanding length
        add_x = np.where(ok, size, 0.0)
        # cumulative sums in the kernel's order: one addition per date (NaN adds nothing)
        with np.errstate(invalid="ignore"):
            sums["x"] = np.cumsum(add_x, axis=0)
            sums["x2"] = np.cumsum(np.where(ok, size * size, 0.0), axis=0)
            sums["y"] = np.cumsum(v0, axis=0)
            sums["y2"] = np.cumsum(v0 * v0, axis=0)
            sums["xy"] = np.cumsum(np.where(ok, size * a, 0.0), axis=0)
        cnt = np.cumsum(okf, axis=0)
        return cnt, sums["x"], sums["x2"], sums["y"], sums["y2"], sums["xy"], size
    w = int(n)
    fw = float(w)
    add_x, add_x2, add_xy = okf * fw, okf * (fw * fw), v0 * fw
    add_y2 = v0 * v0
    i_sum, x_sum, x2_sum, y_sum, y2_sum, xy_sum = (np.zeros(n_inst) for _ in range(6))
    tmp = np.empty(n_inst)
    for t in range(t_len):
        # shift the x positions of the window by one (uses the sums before removal)
        np.subtract(xy_sum, y_sum, out=xy_sum)
        np.add(x2_sum, i_sum, out=x2_sum)
        np.multiply(x_sum, 2.0, out=tmp)
        np.subtract(x2_sum, tmp, out=x2_sum)
        np.subtract(x_sum, i_sum, out=x_sum)
        if t >= w:  # the value leaving the window (the prefilled NaN before that)
            r = t - w
            np.subtract(i_sum, okf[r], out=i_sum)
            np.subtract(y_sum, v0[r], out=y_sum)
            np.subtract(y2_sum, add_y2[r], out=y2_sum)
        np.add(i_sum, okf[t], out=i_sum)
        np.add(x_sum, add_x[t], out=x_sum)
        np.add(x2_sum, add_x2[t], out=x2_sum)
        np.add(y_sum, v0[t], out=y_sum)
        np.add(y2_sum, add_y2[t], out=y2_sum)
        np.add(xy_sum, add_xy[t], out=xy_sum)
        sums["x"][t], sums["x2"][t], sums["y"][t] = x_sum, x2_sum, y_sum
        sums["y2"][t], sums["xy"][t] = y2_sum, xy_sum
    cnt = bn.move_sum(okf, min(w, t_len), min_count=1, axis=0) if t_len else okf
    cnt = np.nan_to_num(cnt, nan=0.0)
    return cnt, sums["x"], sums["x2"], sums["y"], sums["y2"], sums["xy"], fw


def regression(
    x: np.ndarray, n: int, kind: str, start: np.ndarray | None = None, sums: tuple | None = None
) -> np.ndarray:
    """qlib's Cython ``rolling_slope/rolling_resi/rolling_rsquare`` (``n == 0``: ``expanding_*``)."""
    if sums is None:
        sums = regression_sums(x, n, start)
    cnt, x_sum, x2_sum, y_sum, y2_sum, xy_sum, pos = sums
    val = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = _reg_out(kind, cnt, x_sum, x2_sum, y_sum, y2_sum, xy_sum, val, pos)
    return np.asfortranarray(out)


def _reg_out(
    kind: str,
    cnt: np.ndarray,
    x_sum: np.ndarray,
    x2_sum: np.ndarray,
    y_sum: np.ndarray,
    y2_sum: np.ndarray,
    xy_sum: np.ndarray,
    val: np.ndarray,
    pos: float | np.ndarray,
) -> np.ndarray:
    num = cnt * xy_sum - x_sum * y_sum
    if kind == "slope":
        return num / (cnt * x2_sum - x_sum * x_sum)
    if kind == "resi":
        slope = num / (cnt * x2_sum - x_sum * x_sum)
        x_mean = x_sum / cnt
        y_mean = y_sum / cnt
        interp = y_mean - slope * x_mean
        return val - (slope * pos + interp)
    r = num / np.sqrt((cnt * x2_sum - x_sum * x_sum) * (cnt * y2_sum - y_sum * y_sum))
    return r * r
