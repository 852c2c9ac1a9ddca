"""Signal evaluation: daily IC / Rank IC, long-short returns and precisions (qlib/contrib/eva/alpha.py).

Same inputs, outputs and numbers as qlib (checked against the real qlib to 1e-12 in tests/golden/signal), but
computed for all dates at once with numpy segment sums instead of one pandas ``groupby.apply`` call per date.

Conventions (as in qlib):

* ``pred`` and ``label`` are Series indexed by ``(datetime, instrument)``; they are aligned on the union of their
  indexes (``pd.DataFrame({"pred": pred, "label": label})``).
* IC of a date = Pearson correlation of the pairwise-complete (pred, label) values of that date, Rank IC = Spearman
  (average ranks). Fewer than 2 pairs or a constant side -> NaN (the date is kept).
* long-short: per date ``N = int(rows_that_day * quantile)`` (rows counted with NaNs), long = mean label of the N
  highest preds (ties: first row wins; rows with a NaN pred fill up
  the N, in row order, only when a date has fewer than N scored rows), short likewise with the lowest; the returned
  ``long_avg`` is the mean label of **all** rows that day (qlib's naming).

Example:
    >>> import pandas as pd
    >>> days = pd.to_datetime(["2020-01-02"])
    >>> idx = pd.MultiIndex.from_product([days, list("abc")], names=["datetime", "instrument"])
    >>> ic, ric = calc_ic(pd.Series([1.0, 2.0, 3.0], idx), pd.Series([0.1, 0.3, 0.2], idx))
    >>> round(float(ic.iloc[0]), 4), float(ric.iloc[0])
    (0.5, 0.5)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qlib_prefect.errors import DataError

__all__ = ["calc_ic", "calc_long_short_prec", "calc_long_short_return", "pearson_by_group", "rank_by_group"]


def _aligned(pred: pd.Series, label: pd.Series, *, label_float64: bool = True) -> pd.DataFrame:
    """qlib's ``pd.DataFrame({"pred": pred, "label": label})`` (union of the indexes), pred as float64.

    ``label_float64=False`` keeps a floating label dtype (float32 labels are averaged in float32, as pandas does).
    """
    for name, s in (("pred", pred), ("label", label)):
        if not isinstance(s, pd.Series):
            raise DataError(f"signal evaluation: {name} must be a pandas Series, got {type(s).__name__}")
        if not isinstance(s.index, pd.MultiIndex):
            raise DataError(f"signal evaluation: {name} needs a (datetime, instrument) MultiIndex")
    df = pd.DataFrame({"pred": pred, "label": label})
    keep_label = not label_float64 and df["label"].dtype.kind == "f"
    return df.astype({"pred": np.float64} if keep_label else {"pred": np.float64, "label": np.float64})


def _group_codes(df: pd.DataFrame, date_col: str) -> tuple[np.ndarray, pd.Index]:
    if date_col not in df.index.names:
        raise DataError(f"signal evaluation: index has no level {date_col!r} (levels: {list(df.index.names)})")
    codes, uniques = pd.factorize(df.index.get_level_values(date_col), sort=True)
    return codes, pd.Index(uniques, name=date_col)


def _seg_max(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group maximum of ``values`` (groups given by integer codes); -inf for empty groups."""
    out = np.full(n_groups, -np.inf)
    if values.size:
        order = np.argsort(codes, kind="stable")
        sc = codes[order]
        starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
        out[sc[starts]] = np.maximum.reduceat(values[order], starts)
    return out


def rank_by_group(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """1-based average ranks of NaN-free ``values`` within each group (``rankdata(method="average")`` per group)."""
    order = np.lexsort((values, codes))
    sv, sc = values[order], codes[order]
    n = sv.size
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = sc[1:] != sc[:-1]
    new_tie = new_group.copy()
    new_tie[1:] |= sv[1:] != sv[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    pos = np.arange(n) - group_start + 1.0  # rank within the group, ties broken by order
    tie_id = np.cumsum(new_tie) - 1
    first = pos[new_tie]
    count = np.bincount(tie_id)
    ranks = np.empty(n)
    ranks[order] = (first + (count - 1) / 2.0)[tie_id]
    return ranks


def pearson_by_group(a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Pearson correlation of ``a`` and ``b`` within each group (pandas' ``Series.corr`` formula, vectorised).

    Inputs must be NaN-free; ``codes`` are group numbers in ``[0, n_groups)``.
    """
    n = np.bincount(codes, minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = a - (np.bincount(codes, a, n_groups) / n)[codes]
        db = b - (np.bincount(codes, b, n_groups) / n)[codes]
        sa = _seg_max(np.abs(da), codes, n_groups)
        sb = _seg_max(np.abs(db), codes, n_groups)
        da = da / sa[codes]
        db = db / sb[codes]
        fact = n - 1
        div_a = np.sqrt(np.bincount(codes, da * da, n_groups) / fact)
        div_b = np.sqrt(np.bincount(codes, db * db, n_groups) / fact)
        res = np.bincount(codes, da * db, n_groups) / fact / div_a / div_b
    bad = (n < 2) | (sa == 0) | (sb == 0) | (div_a == 0) | (div_b == 0) | ~np.isfinite(sa) | ~np.isfinite(sb)
    res = np.clip(res, -1.0, 1.0)
    res[bad] = np.nan
    return res


def calc_ic(
    pred: pd.Series, label: pd.Series, date_col: str = "datetime", dropna: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Daily IC (Pearson) and Rank IC (Spearman) of ``pred`` against ``label``; Series indexed by date."""
    df = _aligned(pred, label)
    codes, dates = _group_codes(df, date_col)
    keep = codes >= 0
    p = df["pred"].to_numpy()
    lab = df["label"].to_numpy()
    valid = keep & ~np.isnan(p) & ~np.isnan(lab)
    c, p, lab = codes[valid], p[valid], lab[valid]
    g = len(dates)
    ic = pearson_by_group(p, lab, c, g)
    # average ranks within each date (scipy.stats.rankdata "average", as spearmanr uses), on the valid pairs only
    rp = rank_by_group(p, c)
    rl = rank_by_group(lab, c)
    ric = pearson_by_group(rp, rl, c, g)
    ic_s, ric_s = pd.Series(ic, index=dates), pd.Series(ric, index=dates)
    if dropna:
        return ic_s.dropna(), ric_s.dropna()
    return ic_s, ric_s


def _ranked(p: np.ndarray, codes: np.ndarray, n_groups: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (date, pred) as ``nlargest``/``nsmallest(keep="first")`` see it, and each date's offset in it.

    Stable sort: ties keep row order; NaN preds sort last (pandas fills up with them, in row order).
    """
    order = np.lexsort((-p if largest else p, codes))
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return order, starts


def _top_n_mask(order: np.ndarray, starts: np.ndarray, codes: np.ndarray, n_sel: np.ndarray) -> np.ndarray:
    """Rows among the first ``n_sel[date]`` of their date in ``order``."""
    sc = codes[order]
    chosen = (np.arange(sc.size) - starts[sc]) < n_sel[sc]
    mask = np.zeros(codes.size, dtype=bool)
    mask[order[chosen]] = True
    return mask


def _quantile_n(codes: np.ndarray, n_groups: int, quantile: float) -> np.ndarray:
    sizes = np.bincount(codes, minlength=n_groups)
    return np.floor(sizes * float(quantile)).astype(np.int64)


def _selected_mean(
    lab: np.ndarray, order: np.ndarray, starts: np.ndarray, codes: np.ndarray, n_sel: np.ndarray
) -> np.ndarray:
    """NaN-skipping mean label of each date's selected rows (NaN when nothing valid is selected).

    float64 labels: one vectorised pass. Other float dtypes: pandas' ``Series.mean`` arithmetic (sum and count in
    the label's dtype, NaN -> 0, numpy's pairwise sum over the rows in pred order) with one small numpy call per
    date, so float32 results are bit-identical to qlib's.
    """
    n_groups = n_sel.size
    if lab.dtype == np.float64:
        mask = _top_n_mask(order, starts, codes, n_sel) & ~np.isnan(lab)
        cnt = np.bincount(codes[mask], minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(codes[mask], lab[mask], n_groups) / cnt
    out = np.full(n_groups, np.nan)
    ordered = lab[order]
    valid = ~np.isnan(ordered)
    filled = np.where(valid, ordered, lab.dtype.type(0))
    for g in np.flatnonzero(n_sel > 0):
        sl = slice(starts[g], starts[g] + n_sel[g])
        cnt = lab.dtype.type(np.count_nonzero(valid[sl]))
        if cnt > 0:
            out[g] = filled[sl].sum(dtype=lab.dtype) / cnt
    return out


def _quantile_frame(
    pred: pd.Series, label: pd.Series, date_col: str, quantile: float, dropna: bool
) -> tuple[pd.DataFrame, np.ndarray, pd.Index, np.ndarray]:
    """The aligned pred/label frame (rows without a date dropped), its date codes, the dates and, per date,
    how many names the top/bottom ``quantile`` holds (shared by the long-short return and precision)."""
    df = _aligned(pred, label, label_float64=False)
    if dropna:
        df = df.dropna()
    codes, dates = _group_codes(df, date_col)
    if (codes < 0).any():
        df, codes = df[codes >= 0], codes[codes >= 0]
    return df, codes, dates, _quantile_n(codes, len(dates), quantile)


def calc_long_short_return(
    pred: pd.Series, label: pd.Series, date_col: str = "datetime", quantile: float = 0.2, dropna: bool = False
) -> tuple[pd.Series, pd.Series]:
    """Daily long-short return ``(long - short) / 2`` and the daily mean label of all rows (qlib's ``long_avg``).

    Output dtypes as qlib's: long-short float64, ``long_avg`` in the label's dtype.
    """
    df, codes, dates, n_sel = _quantile_frame(pred, label, date_col, quantile, dropna)
    g, lab, p = len(dates), df["label"].to_numpy(), df["pred"].to_numpy()
    r_long = _selected_mean(lab, *_ranked(p, codes, g, True), codes, n_sel)
    r_short = _selected_mean(lab, *_ranked(p, codes, g, False), codes, n_sel)
    r_avg = df["label"].groupby(level=date_col).mean()
    r_avg.name = None
    return pd.Series((r_long - r_short) / 2, index=dates), r_avg


def calc_long_short_prec(
    pred: pd.Series,
    label: pd.Series,
    date_col: str = "datetime",
    quantile: float = 0.2,
    dropna: bool = False,
    is_alpha: bool = False,
) -> tuple[pd.Series, pd.Series]:
    """Daily share of the top (bottom) ``quantile`` names by pred whose label is > 0 (< 0).

    With ``is_alpha`` the label is first de-meaned per date. Dates where ``N == 0`` are absent (as in qlib).
    """
    if is_alpha:
        label = label - label.groupby(level=date_col).mean()
    if int(1 / quantile) >= len(label.index.get_level_values(1).unique()):
        raise ValueError("Need more instruments to calculate precision")
    df, codes, dates, n_sel = _quantile_frame(pred, label, date_col, quantile, dropna)
    g, lab, p = len(dates), df["label"].to_numpy(), df["pred"].to_numpy()
    out = []
    for largest in (True, False):
        mask = _top_n_mask(*_ranked(p, codes, g, largest), codes, n_sel)
        hit = (lab > 0) if largest else (lab < 0)
        present = np.bincount(codes[mask], minlength=g) > 0
        cnt = np.bincount(codes[mask & ~np.isnan(lab)], minlength=g)
        hits = np.bincount(codes[mask & hit], minlength=g)
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = hits / cnt
        out.append(pd.Series(prec[present], index=dates[present]))
    return out[0], out[1]
