"""Portfolio state: :class:`Position` (cash + holdings), :class:`Account` (position + daily report) and
:class:`Indicator` (daily trade indicators), mirroring ``qlib.backtest.position/account/report``.

A :class:`Position` keeps qlib's attribute layout so downstream tools reading ``positions_normal_1day.pkl``
work unchanged::

    position.position == {<code>: {"amount": float, "price": float, "weight": float, "count_day": int},
                          ..., "cash": float, "now_account_value": float}

Differences from qlib (documented in docs/backtest.md): holdings iterate in insertion order (qlib iterates a
``set``, whose order depends on PYTHONHASHSEED; only float summation order differs).

Example:
    >>> p = Position(cash=1000.0, position_dict={"A": {"amount": 10, "price": 5.0}})
    >>> p.get_stock_list(), p.calculate_value()
    (['A'], 1050.0)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import BacktestError

__all__ = ["Account", "BasePosition", "Indicator", "InfPosition", "Position"]

_SPECIAL = ("cash", "now_account_value", "cash_delay")


def _isclose(a: float, b: float) -> bool:
    """``np.isclose`` for two scalars (rtol=1e-5, atol=1e-8), without the array machinery."""
    if a == b:
        return True
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= 1e-8 + 1e-5 * abs(b)


class BasePosition:
    """qlib's position interface: a dict-like ``position`` plus queries/updates (subclasses implement them)."""

    ST_CASH = "cash"
    ST_NO = "None"

    def __init__(self, *args: Any, cash: float = 0.0, **kwargs: Any) -> None:
        self._settle_type = self.ST_NO
        self.position: dict[str, Any] = {}

    def fill_stock_value(self, start_time: Any, freq: str, last_days: int = 30) -> None:
        pass

    def skip_update(self) -> bool:
        """Whether updating is meaningless for this position (True for :class:`InfPosition`)."""
        return False

    def _abstract(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement this method")

    check_stock = update_order = update_stock_price = calculate_stock_value = calculate_value = _abstract
    get_stock_list = get_stock_price = get_stock_amount = get_cash = get_stock_amount_dict = _abstract
    get_stock_weight_dict = add_count_all = update_weight_all = _abstract

    def settle_start(self, settle_type: str) -> None:
        self._settle_type = settle_type

    def settle_commit(self) -> None:
        self._settle_type = self.ST_NO


class InfPosition(BasePosition):
    """qlib's ``InfPosition``: infinite cash and amount of every stock (for generating orders without limits).

    ``skip_update()`` is True; updates are no-ops; ``get_cash``/``get_stock_amount``/``calculate_stock_value``
    are ``inf``; value, stock list and weights raise ``NotImplementedError`` (as in qlib).
    """

    def skip_update(self) -> bool:
        return True

    def check_stock(self, stock_id: str) -> bool:
        return True

    def update_order(self, order: Any, trade_val: float, cost: float, trade_price: float) -> None:
        pass

    def update_stock_price(self, stock_id: str, price: float) -> None:
        pass

    def calculate_stock_value(self) -> float:
        return np.inf

    def calculate_value(self) -> float:
        raise NotImplementedError("InfPosition doesn't support calculating value")

    def get_stock_list(self) -> list[str]:
        raise NotImplementedError("InfPosition doesn't support stock list position")

    def get_stock_price(self, code: str) -> float:
        return np.nan

    def get_stock_amount(self, code: str) -> float:
        return np.inf

    def get_cash(self, include_settle: bool = False) -> float:
        return np.inf

    def get_stock_amount_dict(self) -> dict:
        raise NotImplementedError("InfPosition doesn't support get_stock_amount_dict")

    def get_stock_weight_dict(self, only_stock: bool = False) -> dict:
        raise NotImplementedError("InfPosition doesn't support get_stock_weight_dict")

    def add_count_all(self, bar: str) -> None:
        raise NotImplementedError("InfPosition doesn't support add_count_all")

    def update_weight_all(self) -> None:
        raise NotImplementedError("InfPosition doesn't support update_weight_all")

    def settle_start(self, settle_type: str) -> None:
        pass

    def settle_commit(self) -> None:
        pass


class Position(BasePosition):
    """Cash and holdings (qlib's ``Position``). ``position_dict`` values: an amount or ``{"amount", "price"}``."""

    def __init__(self, *, cash: float = 0.0, position_dict: dict[str, Any] | None = None) -> None:
        self._settle_type = self.ST_NO
        self.init_cash = cash
        self.position: dict[str, Any] = {}
        for code, value in (position_dict or {}).items():
            if isinstance(value, dict):
                self.position[code] = dict(value)
            elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                self.position[code] = {"amount": value}
            else:
                raise BacktestError(f"account position {code!r}: expected an amount or {{'amount', 'price'}}, "
                                    f"got {value!r}")
        self.position["cash"] = cash
        try:
            self.position["now_account_value"] = self.calculate_value()
        except (KeyError, TypeError):
            pass

    # -- queries -------------------------------------------------------------------------------------------
    def skip_update(self) -> bool:
        return False

    def check_stock(self, stock_id: str) -> bool:
        return stock_id in self.position

    def get_stock_list(self) -> list[str]:
        """Held codes in insertion order."""
        return [k for k in self.position if k not in _SPECIAL]

    def get_stock_price(self, code: str) -> float:
        return self.position[code]["price"]

    def get_stock_amount(self, code: str) -> float:
        return self.position[code]["amount"] if code in self.position else 0

    def get_stock_count(self, code: str, bar: str) -> float:
        """Number of completed bars the stock has been held (0 before its first bar end)."""
        return self.position[code].get(f"count_{bar}", 0)

    def get_stock_weight(self, code: str) -> float:
        return self.position[code]["weight"]

    def get_cash(self, include_settle: bool = False) -> float:
        cash = self.position["cash"]
        if include_settle:
            cash += self.position.get("cash_delay", 0.0)
        return cash

    def get_stock_amount_dict(self) -> dict[str, float]:
        return {c: self.position[c]["amount"] for c in self.get_stock_list()}

    def get_stock_weight_dict(self, only_stock: bool = False) -> dict[str, float]:
        total = self.calculate_stock_value() if only_stock else self.calculate_value()
        return {c: self.position[c]["amount"] * self.position[c]["price"] / total for c in self.get_stock_list()}

    def calculate_stock_value(self) -> float:
        value = 0
        for code in self.get_stock_list():
            value += self.position[code]["amount"] * self.position[code]["price"]
        return value

    def calculate_value(self) -> float:
        value = self.calculate_stock_value()
        value += self.position["cash"] + self.position.get("cash_delay", 0.0)
        return value

    # -- updates -------------------------------------------------------------------------------------------
    def update_order(self, order: Any, trade_val: float, cost: float, trade_price: float) -> None:
        """Apply a dealt order (``order.direction``: 1 buy, 0 sell)."""
        if int(order.direction) == 1:
            self._buy_stock(order.stock_id, trade_val, cost, trade_price)
        else:
            self._sell_stock(order.stock_id, trade_val, cost, trade_price)

    def _buy_stock(self, stock_id: str, trade_val: float, cost: float, trade_price: float) -> None:
        trade_amount = trade_val / trade_price
        pos = self.position
        if stock_id not in pos:
            pos[stock_id] = {"amount": trade_amount, "price": trade_price, "weight": 0}
        else:
            pos[stock_id]["amount"] += trade_amount
        pos["cash"] -= trade_val + cost

    def _sell_stock(self, stock_id: str, trade_val: float, cost: float, trade_price: float) -> None:
        trade_amount = trade_val / trade_price
        pos = self.position
        if stock_id not in pos:
            raise BacktestError(f"cannot sell {stock_id!r}: not in the current position")
        if _isclose(pos[stock_id]["amount"], trade_amount):
            del pos[stock_id]
        else:
            pos[stock_id]["amount"] -= trade_amount
            if pos[stock_id]["amount"] < -1e-5:
                raise BacktestError(f"cannot sell {trade_amount} of {stock_id!r}: only "
                                    f"{pos[stock_id]['amount'] + trade_amount} held")
        pos["cash"] += trade_val - cost

    def update_stock_price(self, stock_id: str, price: float) -> None:
        self.position[stock_id]["price"] = price

    def update_stock_count(self, stock_id: str, bar: str, count: float) -> None:
        self.position[stock_id][f"count_{bar}"] = count

    def update_stock_weight(self, stock_id: str, weight: float) -> None:
        self.position[stock_id]["weight"] = weight

    def add_count_all(self, bar: str) -> None:
        key = f"count_{bar}"
        for code in self.get_stock_list():
            d = self.position[code]
            d[key] = d[key] + 1 if key in d else 1

    def update_weight_all(self) -> None:
        for code, w in self.get_stock_weight_dict().items():
            self.position[code]["weight"] = w

    def copy(self) -> Position:
        """A deep copy (holdings are dicts of scalars) - much faster than ``copy.deepcopy``."""
        new = Position.__new__(Position)
        new._settle_type = self._settle_type
        new.init_cash = self.init_cash
        new.position = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.position.items()}
        return new

    def __deepcopy__(self, memo: dict) -> Position:
        return self.copy()

    def __repr__(self) -> str:
        return f"Position({self.position!r})"


class Indicator:
    """Daily trade indicators of an atomic (daily) executor, like ``qlib.backtest.report.Indicator``.

    ``trade_indicator_his``: ``{date: {"ffr", "pa", "pos", "deal_amount", "value", "count"}}``;
    ``order_indicator_his``: ``{date: DataFrame}`` of per-order rows (built lazily from compact lists).
    """

    _ORDER_COLS = ("amount", "inner_amount", "deal_amount", "trade_price", "trade_value", "trade_cost",
                   "trade_dir", "pa", "ffr")

    def __init__(self) -> None:
        self.trade_indicator_his: dict[pd.Timestamp, dict[str, float]] = OrderedDict()
        self._orders: dict[pd.Timestamp, tuple[list, ...]] = OrderedDict()

    def record_step(self, date: pd.Timestamp, trade_info: list[tuple[Any, float, float, float]],
                    ffr_method: str = "mean", pa_method: str = "mean") -> dict[str, float]:
        """Compute and store one bar's indicators from ``[(order, trade_val, trade_cost, trade_price), ...]``."""
        amount: dict[str, tuple] = {}
        for order, tv, tc, tp in trade_info:  # one entry per stock (a later order overwrites, as in qlib)
            sign = 1 if int(order.direction) == 1 else -1
            amount[order.stock_id] = (order.amount * sign, order.deal_amount * sign, tp, tv * sign, tc,
                                      int(order.direction))
        codes = list(amount)
        cols = list(zip(*amount.values())) if codes else [(), (), (), (), (), ()]
        a = np.array(cols[0], dtype=np.float64)
        d = np.array(cols[1], dtype=np.float64)
        v = np.array(cols[3], dtype=np.float64)
        n = len(codes)
        with np.errstate(divide="ignore", invalid="ignore"):
            ffr_arr = d / a
        pa_arr = np.zeros(n, dtype=np.float64)
        ind = {
            "ffr": self._weighted(ffr_arr, d, v, ffr_method),
            "pa": self._weighted(pa_arr, d, v, pa_method),
            "pos": 0.0 if n else float("nan"),  # pa is 0 at the innermost level: no positive order
            "deal_amount": _nansum(np.abs(d)),
            "value": _nansum(np.abs(v)),
            "count": int(np.count_nonzero(~np.isnan(a))),
        }
        self.trade_indicator_his[date] = ind
        self._orders[date] = (codes, a, d, list(cols[2]), v, list(cols[4]), list(cols[5]), ffr_arr)
        return ind

    @staticmethod
    def _weighted(x: np.ndarray, deal: np.ndarray, value: np.ndarray, method: str) -> float:
        if method == "mean":  # np.nanmean: sum with NaN -> 0, divided by the non-NaN count
            mask = np.isnan(x)
            cnt = len(x) - int(np.count_nonzero(mask))
            return float(np.add.reduce(np.where(mask, 0.0, x)) / cnt) if cnt else float("nan")
        w = np.abs(deal) if method == "amount_weighted" else np.abs(value) if method == "value_weighted" else None
        if w is None:
            raise BacktestError(f"indicator_config weight_method {method!r} is not supported; "
                                "use mean, amount_weighted or value_weighted")
        return _div(_nansum(x * w), _nansum(w))

    def generate_trade_indicators_dataframe(self) -> pd.DataFrame:
        """One row per bar: ``ffr, pa, pos, deal_amount, value, count`` (qlib's ``indicators_normal``)."""
        dates = list(self.trade_indicator_his)
        rows = list(self.trade_indicator_his.values())
        cols = ["ffr", "pa", "pos", "deal_amount", "value", "count"]
        data = {c: np.array([r[c] for r in rows], dtype=np.int64 if c == "count" else np.float64) for c in cols}
        return pd.DataFrame(data, index=pd.DatetimeIndex(dates))

    @property
    def order_indicator_his(self) -> dict[pd.Timestamp, pd.DataFrame]:
        """Per-order indicators per bar (index: instrument)."""
        out: dict[pd.Timestamp, pd.DataFrame] = OrderedDict()
        for date, (codes, a, d, p, v, c, dr, f) in self._orders.items():
            out[date] = pd.DataFrame(
                {"amount": a, "inner_amount": a, "deal_amount": d, "trade_price": np.asarray(p, dtype=float),
                 "trade_value": v, "trade_cost": np.asarray(c, dtype=float), "trade_dir": np.asarray(dr, dtype=int),
                 "pa": np.zeros(len(codes)), "ffr": f},
                index=pd.Index(codes, name="instrument"),
            )
        return out

    def order_records(self) -> pd.DataFrame:
        """Every bar's per-order rows in one frame (``datetime``, ``instrument``, ``amount``, ``deal_amount``,
        ``trade_price``, ``trade_value``, ``trade_cost``, ``trade_dir``; the values of
        :attr:`order_indicator_his`), concatenated once instead of one frame per bar."""
        import itertools

        items = [(d, o) for d, o in self._orders.items() if len(o[0])]
        lens = [len(o[0]) for _, o in items]

        def cat(i: int, dtype: Any) -> np.ndarray:
            return (np.concatenate([np.asarray(o[i], dtype=dtype) for _, o in items]) if items
                    else np.empty(0, dtype=dtype))

        dates = np.array([np.datetime64(pd.Timestamp(d), "ns") for d, _ in items], dtype="datetime64[ns]")
        return pd.DataFrame({
            "datetime": pd.DatetimeIndex(np.repeat(dates, lens)),
            "instrument": np.array(list(itertools.chain.from_iterable(o[0] for _, o in items)), dtype=object),
            "amount": cat(1, float), "deal_amount": cat(2, float), "trade_price": cat(3, float),
            "trade_value": cat(4, float), "trade_cost": cat(5, float), "trade_dir": cat(6, int),
        })

    def get_trade_indicator_his(self) -> dict[pd.Timestamp, dict[str, float]]:
        return self.trade_indicator_his


def _div(a: float, b: float) -> float:
    return a / b if b != 0 else float("nan")


def _nansum(x: np.ndarray) -> float:
    """``np.nansum`` (NaN -> 0, numpy pairwise summation)."""
    return float(np.add.reduce(np.where(np.isnan(x), 0.0, x)))


class Account:
    """Position + accumulated turnover/cost + the daily portfolio report (qlib's ``Account``)."""

    def __init__(self, *, init_cash: float = 1e9, position_dict: dict[str, Any] | None = None, freq: str = "day",
                 port_metr_enabled: bool = True) -> None:
        self.init_cash = init_cash
        self.freq = freq
        self.current_position = Position(cash=init_cash, position_dict=position_dict)
        self._port_metr_enabled = port_metr_enabled
        self.total_turnover = 0.0
        self.total_cost = 0.0
        self.hist_positions: dict[pd.Timestamp, Position] = {}
        self.indicator = Indicator()
        self._rows: list[tuple[float, ...]] = []
        self._dates: list[pd.Timestamp] = []

    def is_port_metr_enabled(self) -> bool:
        return self._port_metr_enabled

    def get_cash(self) -> float:
        return self.current_position.get_cash()

    def update_order(self, order: Any, trade_val: float, cost: float, trade_price: float) -> None:
        """Apply a dealt order to the position and to the accumulated turnover/cost."""
        if self._port_metr_enabled:
            self.total_turnover += trade_val
            self.total_cost += cost
        self.current_position.update_order(order, trade_val, cost, trade_price)

    def close_bar(self, date: pd.Timestamp, bench: float) -> None:
        """Bar end after re-pricing: report row + position snapshot (qlib's ``update_portfolio_metrics`` and
        ``update_hist_positions``; the account value is computed once, with qlib's summation order)."""
        pos = self.current_position
        p = pos.position
        codes = pos.get_stock_list()
        stock_value = 0
        for c in codes:
            d = p[c]
            stock_value += d["amount"] * d["price"]
        now_value = stock_value + (p["cash"] + p.get("cash_delay", 0.0))
        if self._rows:
            last_value, _, last_to, last_cost = self._rows[-1][:4]
        else:
            last_value, last_to, last_cost = self.init_cash, 0, 0
        now_cost = self.total_cost - last_cost
        now_to = self.total_turnover - last_to
        ret = (now_value - last_value + now_cost) / last_value
        # (account, return, total_turnover, total_cost, turnover, cost, value, cash, bench)
        self._rows.append((now_value, ret, self.total_turnover, self.total_cost, now_to / last_value,
                           now_cost / last_value, stock_value, p["cash"], bench))
        self._dates.append(date)
        p["now_account_value"] = now_value
        for c in codes:
            d = p[c]
            d["weight"] = d["amount"] * d["price"] / now_value
        self.hist_positions[date] = pos.copy()

    def get_portfolio_metrics(self) -> tuple[pd.DataFrame, dict[pd.Timestamp, Position]]:
        """``(report_df, positions)``: report columns ``account, return, total_turnover, turnover, total_cost,
        cost, value, cash, bench``; index ``datetime``."""
        if not self._port_metr_enabled:
            raise BacktestError("generate_portfolio_metrics must be True to get portfolio metrics")
        arr = np.array(self._rows, dtype=np.float64).reshape(len(self._rows), 9)
        df = pd.DataFrame(
            {"account": arr[:, 0], "return": arr[:, 1], "total_turnover": arr[:, 2], "turnover": arr[:, 4],
             "total_cost": arr[:, 3], "cost": arr[:, 5], "value": arr[:, 6], "cash": arr[:, 7], "bench": arr[:, 8]},
            index=pd.DatetimeIndex(self._dates, name="datetime"),
        )
        return df, self.hist_positions

    def get_hist_positions(self) -> dict[pd.Timestamp, Position]:
        return self.hist_positions

    def get_trade_indicator(self) -> Indicator:
        return self.indicator
