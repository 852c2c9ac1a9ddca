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

import bottleneck as bn
import numpy as np
import pandas as pd

__all__ = [
    "ema_expanding",
    "ewm_mean",
    "expanding",
    "idx_extreme",
    "mad",
    "regression",
    "rolling_corr_cov",
    "rolling_pandas",
    "rolling_stat",
    "rolling_var",
    "shift",
    "wma",
]


def _f64(x: np.ndarray) -> np.ndarray:
    """float64, time-contiguous (Fortran order): bottleneck and pandas run fastest on that layout."""
    return np.asfortranarray(x, dtype=np.float64)


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
    return pd.DataFrame(_f64(x), copy=False)


def rolling_pandas(x: np.ndarray, n: int, func: str, *args: float) -> np.ndarray:
    """``DataFrame.rolling(n, min_periods=1).<func>(*args)`` on the panel (exact pandas numerics)."""
    r = _frame(x).rolling(int(n), min_periods=1)
    if func == "rank":
        return r.rank(pct=True).to_numpy()
    return getattr(r, func)(*args).to_numpy()


def rolling_stat(x: np.ndarray, n: int, func: str) -> np.ndarray:
    """Rolling sum/mean/max/min (bottleneck, NaN skipped, NaN when the window has no value)."""
    a = _f64(x)
    if a.shape[0] == 0:
        return a.copy()
    w = _window(n, a.shape[0])
    fn = {"sum": bn.move_sum, "mean": bn.move_mean, "max": bn.move_max, "min": bn.move_min}[func]
    return fn(a, w, min_count=1, axis=0)


def _window(n: int, t_len: int) -> int:
    return max(1, min(int(n), t_len))


def rolling_var(x: np.ndarray, n: int, *, std: bool = False) -> np.ndarray:
    """pandas rolling ``var``/``std`` (ddof=1, min_periods=1), computed by pandas itself: its online
    Welford/Kahan state leaves small non-zero values in constant windows that follow large values
    (e.g. ``Std`` of a run of zeros), and qlib's numbers (WVMA, the ``isclose(std, 0)`` masks of
    ``Corr``/``Rsquare``) depend on them. Leading NaN do not touch that state, so the full-calendar
    panel gives bit-identical results to qlib's per-instrument series."""
    return rolling_pandas(x, n, "std" if std else "var")


def expanding(x: np.ndarray, func: str, *args: float) -> np.ndarray:
    """``DataFrame.expanding(min_periods=1).<func>()`` (leading NaN = absent, so this is exact)."""
    e = _frame(x).expanding(min_periods=1)
    if func == "rank":
        return e.rank(pct=True).to_numpy()
    return getattr(e, func)(*args).to_numpy()


def ewm_mean(x: np.ndarray, *, alpha: float | None = None, span: float | None = None) -> np.ndarray:
    """``DataFrame.ewm(alpha=..|span=.., min_periods=1).mean()``."""
    return _frame(x).ewm(alpha=alpha, span=span, min_periods=1).mean().to_numpy()


def rolling_corr_cov(a: np.ndarray, b: np.ndarray, n: int, func: str) -> np.ndarray:
    """pandas pairwise rolling ``corr``/``cov`` (ddof=1, min_periods=1): a position counts only if both
    values are present. Moving sums of de-meaned values (corr/cov are shift invariant) keep the
    cancellation error far below float32 resolution; a window whose values are all equal has
    variance exactly 0 (-> corr NaN), as in pandas."""
    x64, y64 = _f64(a), _f64(b)
    t_len = x64.shape[0]
    if t_len == 0:
        return x64.copy()
    both = ~(np.isnan(x64) | np.isnan(y64))
    X = np.where(both, x64, np.nan)
    Y = np.where(both, y64, np.nan)
    with np.errstate(all="ignore"):
        cx = np.where(both.any(axis=0), bn.nanmean(X, axis=0), 0.0)
        cy = np.where(both.any(axis=0), bn.nanmean(Y, axis=0), 0.0)
    X -= cx
    Y -= cy
    w = t_len if n == 0 else _window(n, t_len)

    def msum(v: np.ndarray) -> np.ndarray:
        if n == 0:
            return np.where(np.cumsum(both, axis=0) > 0, np.nancumsum(v, axis=0), np.nan)
        return bn.move_sum(v, w, min_count=1, axis=0)

    cnt = msum(both.astype(np.float64))
    sx, sy, sxy = msum(X), msum(Y), msum(X * Y)
    with np.errstate(all="ignore"):
        cov = (sxy - sx * sy / cnt) / (cnt - 1)
        cov[~(cnt >= 2)] = np.nan
        if func == "cov":
            return cov
        vx = (msum(X * X) - sx * sx / cnt) / (cnt - 1)
        vy = (msum(Y * Y) - sy * sy / cnt) / (cnt - 1)
        if n == 0:
            cx_ = np.fmax.accumulate(X, axis=0) == np.fmin.accumulate(X, axis=0)
            cy_ = np.fmax.accumulate(Y, axis=0) == np.fmin.accumulate(Y, axis=0)
        else:
            cx_ = bn.move_max(X, w, min_count=1, axis=0) == bn.move_min(X, w, min_count=1, axis=0)
            cy_ = bn.move_max(Y, w, min_count=1, axis=0) == bn.move_min(Y, w, min_count=1, axis=0)
        vx = np.where(cx_, 0.0, np.maximum(vx, 0.0))
        vy = np.where(cy_, 0.0, np.maximum(vy, 0.0))
        den = np.sqrt(vx * vy)
        out = np.where(den > 0, cov / den, np.nan)
    out[~(cnt >= 2)] = np.nan
    return out


def _window_len(t_len: int, n: int, start: np.ndarray) -> np.ndarray:
    """Raw window length at each (t, instrument): ``min(n, t - start + 1)`` (>= 1)."""
    t = np.arange(t_len)[:, None]
    return np.clip(t - start[None, :] + 1, 1, n)


def idx_extreme(x: np.ndarray, n: int, start: np.ndarray, *, argmax: bool) -> np.ndarray:
    """qlib ``IdxMax``/``IdxMin``: ``np.argmax(raw window) + 1`` (first NaN wins), window shortened
    at the series start; NaN where the window holds no value. ``n == 0`` -> expanding window."""
    a = _f64(x)
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
    w = min(int(n), t_len)
    padded = np.full((t_len + w - 1, n_inst), fill, order="F")
    padded[w - 1 :] = np.where(before | np.isnan(a), fill, a)
    best = np.full((t_len, n_inst), fill, order="F")
    pos = np.zeros((t_len, n_inst), dtype=np.int64, order="F")
    upd = np.empty((t_len, n_inst), dtype=bool, order="F")
    cmp = np.greater if argmax else np.less
    ext = np.maximum if argmax else np.minimum
    for k in range(w):  # lag loop from the oldest slot: strict comparison keeps the first occurrence
        xs = padded[k : k + t_len]
        cmp(xs, best, out=upd)
        np.copyto(pos, k, where=upd)
        ext(best, xs, out=best)
    lo = np.maximum(rows - w + 1, start[None, :])  # first present position of the window
    lo_c = np.clip(lo, 0, t_len - 1)
    # first NaN at or after each position (t_len if none)
    nxt = np.where(isn, rows, t_len)
    nxt = np.minimum.accumulate(nxt[::-1], axis=0)[::-1]
    first_nan = np.take_along_axis(nxt, lo_c, axis=0)
    lead = rows - w + 1  # calendar position of window slot 0
    res = np.where(first_nan <= rows, first_nan - lo, pos + lead - lo)
    out = (res + 1).astype(np.float64)
    valid = bn.move_sum((~np.isnan(a)).astype(np.float64), w, min_count=1, axis=0)
    out[(valid == 0) | before] = np.nan
    return out


def wma(x: np.ndarray, n: int, start: np.ndarray) -> np.ndarray:
    """qlib ``WMA``: weights 1..L (newest heaviest) normalised over the raw window length L, then
    ``nanmean(w * x)``; ``n == 0`` -> expanding."""
    a = _f64(x)
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
    a = _f64(x)
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
    a = _f64(x)
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


def regression(x: np.ndarray, n: int, kind: str, start: np.ndarray | None = None) -> np.ndarray:
    """qlib's Cython ``rolling_slope/rolling_resi/rolling_rsquare`` (``n == 0``: ``expanding_*``).

    The incremental float64 recurrence of ``rolling.pyx`` (buffer prefilled with NaN) is replayed
    step by step in time, vectorised across instruments, so sums drift exactly as in qlib.
    """
    a = np.ascontiguousarray(x, dtype=np.float64)  # row (date) contiguous for the time loop
    t_len, n_inst = a.shape
    out = np.empty_like(a)
    z = np.zeros(n_inst)
    i_sum, x_sum, x2_sum, y_sum, y2_sum, xy_sum = (z.copy() for _ in range(6))
    na_count = np.zeros(n_inst, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if n == 0:
            if start is None:
                start = np.zeros(n_inst, dtype=np.int64)
            for t in range(t_len):
                val = a[t]
                size = (t - start + 1).astype(np.float64)  # per-instrument expanding length
                isn = np.isnan(val) & (size >= 1)
                ok = ~np.isnan(val)
                na_count += isn
                v0 = np.where(ok, val, 0.0)
                x_sum = x_sum + np.where(ok, size, 0.0)
                x2_sum = x2_sum + np.where(ok, size * size, 0.0)
                y_sum = y_sum + v0
                y2_sum = y2_sum + v0 * v0
                xy_sum = xy_sum + np.where(ok, size * val, 0.0)
                cnt = size - na_count
                out[t] = _reg_out(kind, cnt, x_sum, x2_sum, y_sum, y2_sum, xy_sum, val, size)
            return np.asfortranarray(out)
        w = int(n)
        fw = float(w)
        buf = np.full((w, n_inst), np.nan)  # ring buffer, prefilled with NaN as in rolling.pyx
        na_count[:] = w
        for t in range(t_len):
            val = a[t]
            xy_sum = xy_sum - y_sum
            x2_sum = x2_sum + i_sum - 2 * x_sum
            x_sum = x_sum - i_sum
            front = buf[t % w]
            fok = ~np.isnan(front)
            f0 = np.where(fok, front, 0.0)
            i_sum = i_sum - fok
            y_sum = y_sum - f0
            if kind == "rsquare":
                y2_sum = y2_sum - f0 * f0
            na_count -= ~fok
            buf[t % w] = val
            isn = np.isnan(val)
            ok = ~isn
            na_count += isn
            v0 = np.where(ok, val, 0.0)
            i_sum = i_sum + ok
            x_sum = x_sum + np.where(ok, fw, 0.0)
            x2_sum = x2_sum + np.where(ok, fw * fw, 0.0)
            y_sum = y_sum + v0
            if kind == "rsquare":
                y2_sum = y2_sum + v0 * v0
            xy_sum = xy_sum + np.where(ok, fw * val, 0.0)
            cnt = (w - na_count).astype(np.float64)
            out[t] = _reg_out(kind, cnt, x_sum, x2_sum, y_sum, y2_sum, xy_sum, val, fw)
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
