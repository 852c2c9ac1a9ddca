"""Signal strategies: :class:`BaseSignalStrategy` and :class:`TopkDropoutStrategy` (qlib's
``qlib.contrib.strategy.signal_strategy``), decision-for-decision identical to qlib 0.9.7.

The prediction is bucketed once onto the trading calendar (score of an instrument for the interval
``[cal[i], cal[i+1])`` = its last non-NaN score there, NaN if all are NaN); on trade day ``cal[t]`` the strategy
uses bucket ``t-1`` (signal lag). Ranking reproduces pandas' ``sort_values(ascending=False)`` (quicksort, NaN
last) so ties and NaN scores order exactly as in qlib; NaN scores are *kept* (ranked last, so held stocks with a
NaN or missing score are sold first), as qlib does.

Example:
    >>> s = TopkDropoutStrategy(signal=pred, topk=50, n_drop=5)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.exchange import Exchange, Order, OrderDir
from qlib_prefect.backtest.position import Position
from qlib_prefect.errors import BacktestError

__all__ = ["BaseSignalStrategy", "BaseStrategy", "PredSignal", "StepContext", "TopkDropoutStrategy"]


def _argsort_desc(values: np.ndarray) -> np.ndarray:
    """pandas ``nargsort(kind="quicksort", ascending=False, na_position="last")``."""
    mask = np.isnan(values)
    if not mask.any():
        idx = np.arange(len(values))[::-1]
        return idx[values[::-1].argsort(kind="quicksort")][::-1]
    idx = np.arange(len(values))
    non_nan_idx = idx[~mask][::-1]
    non_nans = values[~mask][::-1]
    indexer = non_nan_idx[non_nans.argsort(kind="quicksort")][::-1]
    return np.concatenate([indexer, np.flatnonzero(mask)])


@dataclass
class StepContext:
    """What a strategy sees at one trading step."""

    t: int  # index in the (future) trading calendar
    row: int  # row in the exchange's quote panels (-1: no quotes that day)
    start_time: pd.Timestamp
    end_time: pd.Timestamp
    position: Position
    freq: str = "day"


class PredSignal:
    """A prediction DataFrame/Series bucketed onto the trading calendar (qlib's ``SignalWCache``)."""

    def __init__(self, signal: pd.DataFrame | pd.Series) -> None:
        self.raw = signal
        self.buckets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.codes: list[str] = []

    @staticmethod
    def _series(signal: Any) -> pd.Series:
        if isinstance(signal, pd.DataFrame):
            if signal.shape[1] == 0:
                raise BacktestError("signal: the prediction DataFrame has no column")
            s = signal.iloc[:, 0]
        elif isinstance(signal, pd.Series):
            s = signal
        else:
            raise BacktestError(f"signal: expected a DataFrame/Series prediction, got {type(signal).__name__}")
        idx = s.index
        if not isinstance(idx, pd.MultiIndex) or idx.nlevels != 2 or not {"datetime", "instrument"} <= set(idx.names):
            raise BacktestError(
                f"signal: the prediction index must be a 2-level MultiIndex named (datetime, instrument), got "
                f"{list(idx.names)}"
            )
        if len(s) == 0:
            raise BacktestError("signal: the prediction is empty")
        if not (pd.api.types.is_float_dtype(s.dtype) or pd.api.types.is_integer_dtype(s.dtype)):
            raise BacktestError(f"signal: scores must be numeric, column {s.name!r} has dtype {s.dtype}")
        if idx.has_duplicates:
            dup = idx[idx.duplicated()][0]
            raise BacktestError(f"signal: duplicated prediction index entry {tuple(map(str, dup))} "
                                "(one score per (datetime, instrument) expected)")
        return s

    def prepare(self, calendar: pd.DatetimeIndex) -> None:
        """Bucket the scores onto ``calendar``; builds integer code ids in sorted-code order."""
        s = self._series(self.raw)
        idx = s.index
        dt = pd.DatetimeIndex(idx.get_level_values("datetime"))
        k = idx.names.index("instrument")
        lev = np.asarray([str(c) for c in idx.levels[k]], dtype=object)
        lev_codes = np.asarray(idx.codes[k])
        used = np.unique(lev_codes)  # integer unique: cheap
        names = lev[used]
        srt = np.argsort(names.astype(str), kind="stable")
        rank = np.empty(len(lev), dtype=np.intp)
        rank[used[srt]] = np.arange(len(used))
        inv = rank[lev_codes]  # code id in sorted-code order
        self.codes = [str(c) for c in names[srt]]
        vals = s.to_numpy()
        if vals.dtype.kind in "iu":
            vals = vals.astype(np.float64)
        bucket = np.searchsorted(calendar.values, dt.values, side="right") - 1
        key = bucket.astype(np.int64) * (len(names) + 1) + inv
        if len(key) > 1 and bool(np.all(key[1:] > key[:-1])):  # typical: sorted, one row per (day, code)
            b, i, v = bucket, inv, vals
        else:
            order = np.lexsort((dt.values, inv, bucket))  # by bucket, instrument, datetime
            b, i, v = bucket[order], inv[order], vals[order]
        key_change = np.r_[True, (b[1:] != b[:-1]) | (i[1:] != i[:-1])]
        if not key_change.all():  # several rows per (bucket, instrument): last non-NaN (pandas GroupBy.last)
            grp = np.cumsum(key_change) - 1
            ok = ~np.isnan(v)
            pos = np.full(grp[-1] + 1, -1)
            np.maximum.at(pos, grp[ok], np.flatnonzero(ok))
            starts = np.flatnonzero(key_change)
            v = np.where(pos >= 0, v[np.maximum(pos, 0)], np.nan).astype(v.dtype)
            b, i = b[starts], i[starts]
        cuts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        ends = np.r_[cuts[1:], len(b)]
        self.buckets = {int(b[c]): (i[c:e].astype(np.intp), v[c:e]) for c, e in zip(cuts, ends)}
        self.dtype = v.dtype

    def get(self, bucket: int) -> tuple[np.ndarray, np.ndarray] | None:
        return self.buckets.get(bucket)


class BaseStrategy:
    """Base of all strategies: wired to the exchange by the engine via :meth:`reset`."""

    def __init__(self, *, trade_exchange: Exchange | None = None, level_infra: Any = None, common_infra: Any = None,
                 outer_trade_decision: Any = None, **kwargs: Any) -> None:
        if kwargs:
            raise BacktestError(f"{type(self).__name__}: unknown strategy kwargs {sorted(kwargs)}")
        self.trade_exchange = trade_exchange

    def reset(self, *, trade_exchange: Exchange, calendar: pd.DatetimeIndex, extra_codes: list[str]) -> None:
        if self.trade_exchange is None:
            self.trade_exchange = trade_exchange

    def needed_codes(self, calendar: pd.DatetimeIndex) -> list[str] | None:
        """Codes whose quotes the strategy can ever ask for (``None``: any). Lets the engine load less."""
        return None

    def generate_trade_decision(self, step: StepContext) -> list[Order]:  # pragma: no cover - abstract
        raise NotImplementedError


class BaseSignalStrategy(BaseStrategy):
    """A strategy driven by a prediction signal (DataFrame/Series, ``(model, dataset)`` or a config)."""

    def __init__(self, *, signal: Any = None, model: Any = None, dataset: Any = None, risk_degree: float = 0.95,
                 trade_exchange: Exchange | None = None, level_infra: Any = None, common_infra: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(trade_exchange=trade_exchange, level_infra=level_infra, common_infra=common_infra, **kwargs)
        if model is not None and dataset is not None:
            signal = (model, dataset)
        if signal is None:
            raise BacktestError(f"{type(self).__name__}: `signal` is required")
        if isinstance(signal, str) and signal == "<PRED>":
            raise BacktestError(f"{type(self).__name__}: signal placeholder '<PRED>' was not replaced by a prediction")
        if not isinstance(risk_degree, (int, float)) or not 0 <= risk_degree <= 1:
            raise BacktestError(f"{type(self).__name__}: risk_degree must be in [0, 1], got {risk_degree!r}")
        self.risk_degree = float(risk_degree)
        self._signal_spec = signal
        self.signal: PredSignal | None = None

    def _resolve_signal(self) -> PredSignal:
        sig = self._signal_spec
        if isinstance(sig, PredSignal):
            return sig
        if isinstance(sig, (tuple, list)) and len(sig) == 2:
            model, dataset = sig
            sig = model.predict(dataset)
        elif isinstance(sig, (dict, str)):
            from qlib_prefect.utils import init_instance_by_config

            sig = init_instance_by_config(sig)
        return PredSignal(sig)

    def _prepare_signal(self, calendar: pd.DatetimeIndex) -> PredSignal:
        cached = getattr(self, "_prepared_for", None)
        if self.signal is None or cached is None or cached is not calendar:
            self.signal = self._resolve_signal()
            self.signal.prepare(calendar)
            self._prepared_for = calendar
        return self.signal

    def needed_codes(self, calendar: pd.DatetimeIndex) -> list[str] | None:
        return list(self._prepare_signal(calendar).codes)

    def reset(self, *, trade_exchange: Exchange, calendar: pd.DatetimeIndex, extra_codes: list[str]) -> None:
        super().reset(trade_exchange=trade_exchange, calendar=calendar, extra_codes=extra_codes)
        self._prepare_signal(calendar)
        self._prepared_for = None  # a later run re-reads the signal (e.g. a shuffled prediction)

    def get_risk_degree(self, trade_step: int | None = None) -> float:
        return self.risk_degree

    def previous_scores(self, step: StepContext) -> tuple[Any, Any] | None:
        """``(instrument ids, scores)`` of the previous step's prediction (what this step trades on; qlib's
        ``get_pred_score`` of the previous trade step), or None when there is none."""
        assert self.signal is not None
        return self.signal.get(step.t - 1) if step.t >= 1 else None


class TopkDropoutStrategy(BaseSignalStrategy):
    """Hold ``topk`` stocks; each day replace up to ``n_drop`` of them by better-ranked ones (qlib semantics).

    ``seed`` seeds the numpy Generator used by ``method_sell/method_buy="random"`` (qlib uses the global,
    unseeded numpy state).
    """

    def __init__(self, *, topk: int, n_drop: int, method_sell: str = "bottom", method_buy: str = "top",
                 hold_thresh: int = 1, only_tradable: bool = False, forbid_all_trade_at_limit: bool = True,
                 seed: int | None = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, v, lo in (("topk", topk, 1), ("n_drop", n_drop, 0), ("hold_thresh", hold_thresh, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise BacktestError(f"TopkDropoutStrategy: {name} must be an integer >= {lo}, got {v!r}")
        if method_sell not in ("bottom", "random"):
            raise BacktestError(f"TopkDropoutStrategy: method_sell must be 'bottom' or 'random', got {method_sell!r}")
        if method_buy not in ("top", "random"):
            raise BacktestError(f"TopkDropoutStrategy: method_buy must be 'top' or 'random', got {method_buy!r}")
        self.topk = int(topk)
        self.n_drop = int(n_drop)
        self.method_sell = method_sell
        self.method_buy = method_buy
        self.hold_thresh = hold_thresh
        self.only_tradable = bool(only_tradable)
        self.forbid_all_trade_at_limit = bool(forbid_all_trade_at_limit)
        self.rng = np.random.default_rng(seed)

    def reset(self, *, trade_exchange: Exchange, calendar: pd.DatetimeIndex, extra_codes: list[str]) -> None:
        super().reset(trade_exchange=trade_exchange, calendar=calendar, extra_codes=extra_codes)
        sig = self.signal
        assert sig is not None
        ex = self.trade_exchange.load()
        # global code ids: the signal's codes (sorted) plus any other code we may hold
        codes = list(sig.codes)
        known = set(codes)
        extra = sorted(set(extra_codes) - known)
        if extra:  # keep ids in sorted-code order (ties/union order depend on it)
            allc = sorted(known | set(extra))
            where = {c: k for k, c in enumerate(allc)}
            remap = np.array([where[c] for c in codes], dtype=np.intp)
            sig.buckets = {k: (remap[i], v) for k, (i, v) in sig.buckets.items()}
            codes = allc
        self._codes = codes
        self._code_id = {c: k for k, c in enumerate(codes)}
        self._ex_col = np.array([ex.col.get(c, -1) for c in codes], dtype=np.intp)
        self._held = np.zeros(len(codes), dtype=bool)
        self._scores = np.full(len(codes), np.nan, dtype=getattr(sig, "dtype", np.float64))

    def _code_ids(self, codes: list[str]) -> np.ndarray:
        cid = self._code_id
        out = np.empty(len(codes), dtype=np.intp)
        for k, c in enumerate(codes):
            j = cid.get(c)
            if j is None:  # a held code unknown to the signal (only via a custom position): extend the table
                j = len(self._codes)
                self._codes.append(c)
                cid[c] = j
                self._ex_col = np.r_[self._ex_col, self.trade_exchange.col.get(c, -1)]
                self._held = np.r_[self._held, False]
                self._scores = np.r_[self._scores, np.nan].astype(self._scores.dtype)
            out[k] = j
        return out

    def _tradable_mask(self, ids: np.ndarray, row: int) -> np.ndarray:
        cols = self._ex_col[ids]
        if row < 0:
            return np.zeros(len(ids), dtype=bool)
        ok = cols >= 0
        out = np.zeros(len(ids), dtype=bool)
        out[ok] = self.trade_exchange.tradable_any[row, cols[ok]]
        return out

    def generate_trade_decision(self, step: StepContext) -> list[Order]:
        pred = self.previous_scores(step)
        if pred is None:
            return []
        ids_p, scores_p = pred
        ex = self.trade_exchange
        row = step.row
        pos = step.position
        current_stock_list = pos.get_stock_list()
        held_ids = self._code_ids(current_stock_list)
        scores = self._scores
        held = self._held
        scores[ids_p] = scores_p
        held[held_ids] = True
        try:
            last = held_ids[_argsort_desc(scores[held_ids])]
            n_last = len(last)
            only_t = self.only_tradable

            def first_n(li: np.ndarray, n: int) -> np.ndarray:
                if only_t:
                    take = li[self._tradable_mask(li, row)]
                    return take[: (n if n >= 1 else 1)]
                return li[:n]  # numpy slicing == list slicing (negative n included)

            def last_n(li: np.ndarray, n: int) -> np.ndarray:
                if only_t:
                    take = li[self._tradable_mask(li, row)]
                    k = n if n >= 1 else 1
                    return take[-k:] if len(take) else take
                return li[-n:]  # n == 0 -> the whole list, as qlib's list(li)[-0:]

            n_new = self.n_drop + self.topk - n_last
            if self.method_buy == "top":
                cand = ~held[ids_p]
                today = first_n(ids_p[cand][_argsort_desc(scores_p[cand])], n_new)
            else:
                topk_candi = first_n(ids_p[_argsort_desc(scores_p)], self.topk)
                candi = topk_candi[~held[topk_candi]]
                try:
                    today = np.asarray(self.rng.choice(candi, n_new, replace=False), dtype=np.intp)
                except ValueError:
                    today = candi
            if n_last and len(today):  # pd.Index.union sorts by code
                key = self._codes.__getitem__
                comb = np.array(sorted(np.concatenate([last, today]).tolist(), key=key), dtype=np.intp)
            else:
                comb = last if n_last else today
            comb = comb[_argsort_desc(scores[comb])]
            if self.method_sell == "bottom":
                drop = set(last_n(comb, self.n_drop).tolist())
                sell = [i for i in last.tolist() if i in drop]
            else:
                candi = last[self._tradable_mask(last, row)] if only_t else last
                if n_last:
                    try:
                        sell = list(self.rng.choice(candi, self.n_drop, replace=False))
                    except ValueError:
                        sell = list(candi)
                else:
                    sell = []
            buy = list(today)[: len(sell) + self.topk - n_last]
        finally:
            scores[ids_p] = np.nan
            held[held_ids] = False

        codes = self._codes
        sell_set = {codes[i] for i in sell}
        # sells are simulated on a scratch position holding only cash and the stocks to sell (qlib deep-copies
        # the whole position; only these entries are read or changed)
        temp = Position.__new__(Position)
        temp._settle_type = Position.ST_NO
        temp.position = {c: dict(pos.position[c]) for c in current_stock_list if c in sell_set}
        temp.position["cash"] = cash = pos.position["cash"]
        sell_dir = None if self.forbid_all_trade_at_limit else OrderDir.SELL
        buy_dir = None if self.forbid_all_trade_at_limit else OrderDir.BUY
        sell_orders: list[Order] = []
        buy_orders: list[Order] = []
        bar = step.freq
        for code in current_stock_list:
            if code not in sell_set or not ex.is_tradable(code, row, sell_dir):
                continue
            if temp.get_stock_count(code, bar=bar) < self.hold_thresh:
                continue
            order = Order(code, temp.get_stock_amount(code), OrderDir.SELL, step.start_time, step.end_time, row=row)
            if ex.check_order(order):
                sell_orders.append(order)
                tv, tc, _ = ex.deal_order(order, position=temp)
                cash += tv - tc
        value = cash * self.risk_degree / len(buy) if len(buy) > 0 else 0
        for i in buy:
            code = codes[i]
            if not ex.is_tradable(code, row, buy_dir):
                continue
            price = ex.deal_price(code, row, OrderDir.BUY)
            amount = ex.round_amount_by_trade_unit(value / price, ex.factor_of(code, row))
            buy_orders.append(Order(code, amount, OrderDir.BUY, step.start_time, step.end_time, row=row))
        return sell_orders + buy_orders
