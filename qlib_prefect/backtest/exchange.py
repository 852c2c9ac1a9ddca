"""The simulated exchange: quotes as (dates x instruments) numpy panels, tradability, trade-unit rounding and
order dealing with qlib's cost rules (``qlib.backtest.exchange.Exchange``).

Quotes are read once through the provider seam (``load_field``) for the exchange's date range: deal prices,
``$close``, ``$change``, ``$factor``, ``$volume``. Per trading day the engine works on one row of those panels.

Rules reproduced from qlib 0.9.7:

* a stock is *suspended* on a day when it has no quote row (outside its stored data / membership span) or its
  ``$close`` is NaN; limits with a float threshold ``L``: ``limit_buy = $change >= L``, ``limit_sell = $change <= -L``
  (float32 comparison, as qlib's pandas comparison under NumPy 2), both OR suspended; ``None`` -> suspension only;
* deal price NaN or <= 1e-8 falls back to ``$close``;
* trade-unit rounding on raw shares: ``(amount * factor + 0.1) // unit * unit / factor``, disabled when
  ``trade_unit`` is None or when any ``$factor`` is NaN where ``$close`` exists ("adjusted-price mode");
* costs: ``max(trade_val * cost_ratio, min_cost)`` with ``cost_ratio = open/close_cost + impact_cost *
  (trade_val / (volume * price))**2`` and qlib's cash clipping of buys.

Example:
    >>> ex = Exchange(start_time="2020-01-01", end_time="2020-12-31", trade_unit=100)  # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.position import Position, _isclose
from qlib_prefect.errors import BacktestError, ConfigError

if TYPE_CHECKING:
    from qlib_prefect.data.base import Provider

__all__ = ["Exchange", "Order", "OrderDir"]

_UNSET: Any = object()
_PLAIN_FIELD = re.compile(r"^\$[A-Za-z_][A-Za-z0-9_]*$")


class OrderDir(IntEnum):
    SELL = 0
    BUY = 1


class Order:
    """One order: ``amount`` (adjusted shares) of ``stock_id`` in ``direction`` during ``[start_time, end_time]``.

    ``deal_amount`` / ``factor`` are filled by :meth:`Exchange.deal_order`.
    """

    __slots__ = ("amount", "deal_amount", "direction", "end_time", "factor", "row", "start_time", "stock_id")
    SELL = OrderDir.SELL
    BUY = OrderDir.BUY

    def __init__(self, stock_id: str, amount: float, direction: int, start_time: pd.Timestamp | None = None,
                 end_time: pd.Timestamp | None = None, factor: float | None = None, row: int = -1) -> None:
        self.stock_id = stock_id
        self.amount = amount
        self.direction = direction if isinstance(direction, OrderDir) else OrderDir(int(direction))
        self.start_time = start_time
        self.end_time = end_time
        self.factor = factor
        self.deal_amount = 0.0
        self.row = row

    @property
    def sign(self) -> int:
        return int(self.direction) * 2 - 1

    @property
    def amount_delta(self) -> float:
        return self.amount * self.sign

    @property
    def deal_amount_delta(self) -> float:
        return self.deal_amount * self.sign

    @staticmethod
    def parse_dir(direction: Any) -> Any:
        """qlib's ``Order.parse_dir``: an OrderDir, a number (> 0 buy), ``"buy"``/``"sell"`` or an array."""
        if isinstance(direction, OrderDir):
            return direction
        if isinstance(direction, (int, float, np.integer, np.floating)):
            return OrderDir.BUY if direction > 0 else OrderDir.SELL
        if isinstance(direction, str):
            dl = direction.lower().strip()
            if dl in ("sell", "buy"):
                return OrderDir.SELL if dl == "sell" else OrderDir.BUY
            raise NotImplementedError("This type of input is not supported")
        if isinstance(direction, np.ndarray):
            arr = direction.copy()
            arr[arr > 0] = OrderDir.BUY
            arr[arr <= 0] = OrderDir.SELL
            return arr
        raise NotImplementedError("This type of input is not supported")

    @property
    def key(self) -> tuple:
        return self.stock_id, self.start_time, self.end_time, self.direction

    @property
    def key_by_day(self) -> tuple:
        return self.stock_id, self.date, self.direction

    @property
    def date(self) -> pd.Timestamp:
        return pd.Timestamp(pd.Timestamp(self.start_time).replace(hour=0, minute=0, second=0))

    def __repr__(self) -> str:
        d = "BUY" if self.direction == OrderDir.BUY else "SELL"
        return (f"Order({self.stock_id}, {d}, amount={self.amount}, deal_amount={self.deal_amount}, "
                f"start_time={self.start_time})")


class Exchange:
    """Market simulator over one provider (see module docstring). Quotes load lazily on first use."""

    def __init__(
        self,
        *,
        freq: str = "day",
        start_time: Any = None,
        end_time: Any = None,
        codes: str | Sequence[str] = "all",
        deal_price: str | Sequence[str] | None = None,
        subscribe_fields: Sequence[str] = (),
        limit_threshold: float | tuple[str, str] | None = None,
        volume_threshold: Any = None,
        open_cost: float = 0.0015,
        close_cost: float = 0.0025,
        min_cost: float = 5.0,
        impact_cost: float = 0.0,
        extra_quote: Any = None,
        trade_unit: int | None = _UNSET,
        provider: Provider | None = None,
    ) -> None:
        from qlib_prefect.config.runtime import C

        if str(freq).lower() not in ("day", "1day", "d", "1d"):
            raise ConfigError(f"exchange_kwargs.freq: only daily backtests are supported, got {freq!r}")
        if volume_threshold is not None:
            raise ConfigError("exchange_kwargs.volume_threshold is not supported by qlib-prefect's daily exchange")
        if extra_quote is not None:
            raise ConfigError("exchange_kwargs.extra_quote is not supported by qlib-prefect's exchange")
        self.freq = "day"
        self.start_time = start_time
        self.end_time = end_time
        self.codes = codes
        self.subscribe_fields = list(subscribe_fields)
        self.trade_unit = C.get("trade_unit") if trade_unit is _UNSET else trade_unit
        if limit_threshold is None:
            limit_threshold = C.get("limit_threshold")
        if deal_price is None:
            deal_price = C.get("deal_price", "close")
        if isinstance(limit_threshold, (list, tuple)):
            if len(limit_threshold) != 2:
                raise ConfigError("exchange_kwargs.limit_threshold: a tuple must be (buy_limit_expr, sell_limit_expr)")
            limit_threshold = tuple(limit_threshold)
        elif limit_threshold is not None and not isinstance(limit_threshold, (int, float)):
            raise ConfigError(f"exchange_kwargs.limit_threshold: unsupported value {limit_threshold!r}")
        self.limit_threshold = limit_threshold
        if isinstance(deal_price, str):
            dp = deal_price if deal_price.startswith("$") else "$" + deal_price
            self.buy_price = self.sell_price = dp
        elif isinstance(deal_price, (list, tuple)) and len(deal_price) == 2:
            self.buy_price, self.sell_price = (str(x) for x in deal_price)
        else:
            raise ConfigError(f"exchange_kwargs.deal_price: unsupported value {deal_price!r}")
        for name, v in (("open_cost", open_cost), ("close_cost", close_cost), ("min_cost", min_cost),
                        ("impact_cost", impact_cost)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"exchange_kwargs.{name}: expected a non-negative number, got {v!r}")
        self.open_cost = float(open_cost)
        self.close_cost = float(close_cost)
        self.min_cost = float(min_cost)
        self.impact_cost = float(impact_cost)
        self._provider = provider
        self._loaded = False

    # -- loading -------------------------------------------------------------------------------------------
    @property
    def provider(self) -> Any:
        if self._provider is None:
            from qlib_prefect.data.registry import get_provider

            self._provider = get_provider()
        return self._provider

    def load(self, only_codes: Sequence[str] | None = None) -> Exchange:
        """Read all quotes for ``[start_time, end_time]`` into panels (idempotent).

        ``only_codes`` restricts a market universe (``codes="all"``) to the codes a strategy can ever query
        (the engine passes the prediction's codes plus held ones); other codes then count as absent.
        """
        if self._loaded:
            return self
        prov = self.provider
        data_cal = pd.DatetimeIndex(prov.calendar())
        n_data = len(data_cal)
        s = 0 if self.start_time is None else bisect.bisect_left(data_cal, pd.Timestamp(self.start_time))
        e = n_data - 1 if self.end_time is None else bisect.bisect_right(data_cal, pd.Timestamp(self.end_time)) - 1
        self.row0 = s
        self.dates = data_cal[s:e + 1] if e >= s else data_cal[:0]
        self._date_row = {d: i for i, d in enumerate(self.dates)}
        if isinstance(self.codes, str):
            spans = prov.instruments(self.codes)
            codes = sorted(spans) if only_codes is None else sorted(set(spans) & {str(c) for c in only_codes})
        else:
            spans = None
            codes = list(dict.fromkeys(str(c) for c in self.codes))
        self.code_list = codes
        self.col = {c: j for j, c in enumerate(codes)}
        nrow, ncol = len(self.dates), len(codes)
        present = np.zeros((nrow, ncol), dtype=bool)
        rows = np.arange(s, s + nrow)[:, None]

        def field(expr: str) -> np.ndarray:
            nonlocal present
            if _PLAIN_FIELD.match(expr):
                fd = prov.load_field(expr[1:], codes)
                present |= (rows >= fd.start[None, :]) & (rows <= fd.end[None, :])
                return np.asarray(fd.values[s:s + nrow], dtype=np.float64)
            return self._evaluate(expr, codes)[s:s + nrow]

        close = field("$close")
        buy = close if self.buy_price == "$close" else field(self.buy_price)
        sell = buy if self.sell_price == self.buy_price else (close if self.sell_price == "$close"
                                                             else field(self.sell_price))
        change32 = self._raw32("change", codes, s, nrow, present, rows)
        factor = field("$factor")
        volume = field("$volume")
        if spans is not None:
            member = np.zeros((nrow, ncol), dtype=bool)
            js = [j for j, c in enumerate(codes) for _ in spans[c]]
            lo = self.dates.searchsorted(pd.DatetimeIndex([a for c in codes for a, _ in spans[c]]), "left")
            hi = self.dates.searchsorted(pd.DatetimeIndex([b for c in codes for _, b in spans[c]]), "right")
            for j, a, b in zip(js, lo.tolist(), hi.tolist()):
                member[a:b, j] = True
            present &= member
        nan_close = np.isnan(close)
        suspended = ~present | nan_close
        lt = self.limit_threshold
        if lt is None:
            lb = ls = suspended
        elif isinstance(lt, tuple):
            lb = self._evaluate(lt[0], codes)[s:s + nrow].astype(bool) | suspended
            ls = self._evaluate(lt[1], codes)[s:s + nrow].astype(bool) | suspended
        else:
            with np.errstate(invalid="ignore"):
                lb = (change32 >= float(lt)) | suspended
                ls = (change32 <= -float(lt)) | suspended
        self.trade_w_adj_price = bool(np.any(present & np.isnan(factor) & ~nan_close))

        def with_fallback(p: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                bad = np.isnan(p) | (p <= 1e-08)
            return np.where(bad, close, p)

        self.close = close
        self.buy_deal = with_fallback(buy)
        self.sell_deal = self.buy_deal if sell is buy else with_fallback(sell)
        self.factor = factor
        self.volume = volume
        self.present = present
        self.suspended = suspended
        self.limit_buy = lb
        self.limit_sell = ls
        self.tradable_any = ~(suspended | lb | ls)
        self.tradable_buy = ~(suspended | lb)
        self.tradable_sell = ~(suspended | ls)
        self._loaded = True
        return self

    def _raw32(self, name: str, codes: list[str], s: int, nrow: int, present: np.ndarray,
               rows: np.ndarray) -> np.ndarray:
        fd = self.provider.load_field(name, codes)
        present |= (rows >= fd.start[None, :]) & (rows <= fd.end[None, :])
        return np.asarray(fd.values[s:s + nrow], dtype=np.float32)

    def _evaluate(self, expr: str, codes: list[str]) -> np.ndarray:
        try:
            from qlib_prefect.data.expression import Evaluator  # type: ignore[attr-defined]
        except ImportError as e:  # pragma: no cover - depends on the expression engine being installed
            raise BacktestError(f"exchange: expression {expr!r} needs qlib_prefect.data.expression ({e})") from e
        out = Evaluator(self.provider, codes).evaluate(expr)
        vals = getattr(out, "values", out)
        if isinstance(vals, pd.DataFrame):
            vals = vals.to_numpy()
        arr = np.asarray(vals, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(codes):
            raise BacktestError(f"exchange: expression {expr!r} did not evaluate to a (dates x instruments) panel")
        return arr

    # -- lookups (row = position in self.dates) -----------------------------------------------------------
    def row_of(self, time: Any) -> int:
        """Row of a trading date in the quote panels (``-1`` if outside the exchange's range)."""
        self.load()
        return self._date_row.get(pd.Timestamp(time).normalize(), -1)

    def _rc(self, stock_id: str, row: int) -> int:
        if row < 0:
            return -1
        return self.col.get(stock_id, -1)

    def is_suspended(self, stock_id: str, row: int) -> bool:
        j = self._rc(stock_id, row)
        return True if j < 0 else bool(self.suspended[row, j])

    def is_tradable(self, stock_id: str, row: int, direction: int | None = None) -> bool:
        """Not suspended and not limited (``direction`` None: neither limit-up nor limit-down)."""
        j = self._rc(stock_id, row)
        if j < 0:
            return False
        if direction is None:
            return bool(self.tradable_any[row, j])
        return bool(self.tradable_buy[row, j] if int(direction) == 1 else self.tradable_sell[row, j])

    def deal_price(self, stock_id: str, row: int, direction: int) -> float:
        j = self._rc(stock_id, row)
        if j < 0:
            return float("nan")
        return (self.buy_deal if int(direction) == 1 else self.sell_deal)[row, j]

    def close_price(self, stock_id: str, row: int) -> float:
        j = self._rc(stock_id, row)
        return float("nan") if j < 0 else self.close[row, j]

    def factor_of(self, stock_id: str, row: int) -> float | None:
        j = self._rc(stock_id, row)
        return None if j < 0 else self.factor[row, j]

    # qlib-compatible, time-based API ------------------------------------------------------------------------
    def is_stock_tradable(self, stock_id: str, start_time: Any, end_time: Any = None,
                          direction: int | None = None) -> bool:
        return self.is_tradable(stock_id, self.row_of(start_time), direction)

    def check_stock_suspended(self, stock_id: str, start_time: Any, end_time: Any = None) -> bool:
        return self.is_suspended(stock_id, self.row_of(start_time))

    def get_deal_price(self, stock_id: str, start_time: Any, end_time: Any = None, direction: int = 1) -> float:
        return self.deal_price(stock_id, self.row_of(start_time), direction)

    def get_close(self, stock_id: str, start_time: Any, end_time: Any = None) -> float:
        return self.close_price(stock_id, self.row_of(start_time))

    def get_factor(self, stock_id: str, start_time: Any, end_time: Any = None) -> float | None:
        return self.factor_of(stock_id, self.row_of(start_time))

    def check_order(self, order: Order) -> bool:
        row = order.row if order.row >= 0 else self.row_of(order.start_time)
        return self.is_tradable(order.stock_id, row, order.direction)

    # -- trading --------------------------------------------------------------------------------------------
    def round_amount_by_trade_unit(self, deal_amount: float, factor: float | None) -> float:
        """Round adjusted ``deal_amount`` down to whole trade units of raw shares (qlib's +0.1 guard)."""
        if not self.trade_w_adj_price and self.trade_unit is not None:
            if factor is None:
                raise BacktestError("round_amount_by_trade_unit: factor is unknown (stock absent from the quote)")
            return (deal_amount * factor + 0.1) // self.trade_unit * self.trade_unit / factor
        return deal_amount

    def _buy_amount_by_cash_limit(self, trade_price: float, cash: float, cost_ratio: float) -> float:
        max_trade_amount = 0.0
        if cash >= self.min_cost:
            critical_price = self.min_cost / cost_ratio + self.min_cost
            if cash >= critical_price:
                max_trade_amount = cash / (1 + cost_ratio) / trade_price
            else:
                max_trade_amount = (cash - self.min_cost) / trade_price
        return max_trade_amount

    def deal_order(self, order: Order, trade_account: Any = None, position: Position | None = None
                   ) -> tuple[float, float, float]:
        """Deal ``order`` against the account (or a bare position); returns ``(trade_val, trade_cost, price)``.

        Not tradable in the order's direction -> ``deal_amount = 0`` and ``(0.0, 0.0, nan)``.
        """
        row = order.row if order.row >= 0 else self.row_of(order.start_time)
        j = self._rc(order.stock_id, row)
        buy = int(order.direction) == 1
        if j < 0 or not (self.tradable_buy[row, j] if buy else self.tradable_sell[row, j]):
            order.deal_amount = 0.0
            return 0.0, 0.0, float("nan")
        if trade_account is not None and position is not None:
            raise BacktestError("deal_order: pass either trade_account or position, not both")
        pos = trade_account.current_position if trade_account is not None else position
        trade_price = (self.buy_deal if buy else self.sell_deal)[row, j]
        total_trade_val = self.volume[row, j] * trade_price
        order.factor = factor = self.factor[row, j]
        deal = order.amount
        trade_val = deal * trade_price
        if not total_trade_val or math.isnan(total_trade_val):
            adj_cost_ratio = self.impact_cost
        else:
            adj_cost_ratio = self.impact_cost * (trade_val / total_trade_val) ** 2
        if not buy:
            cost_ratio = self.close_cost + adj_cost_ratio
            if pos is not None:
                current_amount = pos.position[order.stock_id]["amount"] if order.stock_id in pos.position else 0
                if not _isclose(deal, current_amount):
                    deal = self.round_amount_by_trade_unit(min(current_amount, deal), factor)
                if pos.position["cash"] + deal * trade_price < max(deal * trade_price * cost_ratio, self.min_cost):
                    deal = 0
        else:
            cost_ratio = self.open_cost + adj_cost_ratio
            if pos is not None:
                cash = pos.position["cash"]
                trade_val = deal * trade_price
                if cash < max(trade_val * cost_ratio, self.min_cost):
                    deal = 0
                elif cash < trade_val + max(trade_val * cost_ratio, self.min_cost):
                    max_buy = self._buy_amount_by_cash_limit(trade_price, cash, cost_ratio)
                    deal = self.round_amount_by_trade_unit(min(max_buy, deal), factor)
                else:
                    deal = self.round_amount_by_trade_unit(deal, factor)
            else:
                deal = self.round_amount_by_trade_unit(deal, factor)
        order.deal_amount = deal
        trade_val = deal * trade_price
        trade_cost = max(trade_val * cost_ratio, self.min_cost)
        if trade_val <= 1e-5:
            trade_cost = 0
        else:
            if trade_account is not None:
                trade_account.update_order(order, trade_val, trade_cost, trade_price)
            elif pos is not None:
                pos.update_order(order, trade_val, trade_cost, trade_price)
        return trade_val, trade_cost, trade_price
