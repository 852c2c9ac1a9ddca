"""qlib's weight-based strategies (``qlib.contrib.strategy``): ``WeightStrategyBase``, ``SoftTopkStrategy`` and
the order generators ``OrderGenWInteract`` / ``OrderGenWOInteract`` (``qlib.contrib.strategy.order_generator``).

A weight strategy turns the previous step's scores into target weights
(:meth:`WeightStrategyBase.generate_target_weight_position`); an order generator turns the weights into orders
against the exchange. The exchange helpers qlib keeps on ``Exchange``
(``generate_amount_position_from_weight_position``, ``generate_order_for_target_amount_position``,
``calculate_amount_position_value``, ``get_real_deal_amount``) are functions here with the exchange as first
argument. The order list is qlib's: sells then buys, each in the
order of ``random.Random(0).shuffle(sorted(codes))`` (qlib seeds the global ``random`` with 0 for this).
"""

from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.exchange import Exchange, Order, OrderDir
from qlib_prefect.backtest.position import Position
from qlib_prefect.backtest.strategy import BaseSignalStrategy, StepContext
from qlib_prefect.errors import BacktestError

__all__ = [
    "OrderGenWInteract",
    "OrderGenWOInteract",
    "OrderGenerator",
    "SoftTopkStrategy",
    "WeightStrategyBase",
    "calculate_amount_position_value",
    "generate_amount_position_from_weight_position",
    "generate_order_for_target_amount_position",
    "get_real_deal_amount",
]


# ------------------------------------------------------------------------------ qlib's Exchange helpers
def calculate_amount_position_value(
    ex: Exchange, amount_dict: dict, start_time: Any, end_time: Any, only_tradable: bool = False,
    direction: int = OrderDir.SELL,
) -> float:  # fmt: skip
    """Value of ``{code: amount}`` at the deal price (``only_tradable``: codes neither suspended nor limited)."""
    value = 0.0
    for code, amount in amount_dict.items():
        if not only_tradable or ex.is_stock_tradable(code, start_time, end_time):
            value += ex.get_deal_price(code, start_time, end_time, direction) * amount
    return value


def generate_amount_position_from_weight_position(
    ex: Exchange, weight_position: dict, cash: float, start_time: Any, end_time: Any, direction: int = OrderDir.BUY
) -> dict:
    """``{code: amount}`` spending ``cash`` over the tradable codes by weight (qlib: ``cash * w / W // price``)."""
    tradable_weight = 0.0
    for code, wp in weight_position.items():
        if ex.is_stock_tradable(code, start_time, end_time):
            if wp < 0 or wp > 1:
                raise BacktestError(f"weight_position is {wp}, weight_position is not in the range of (0, 1).")
            tradable_weight += wp
    if tradable_weight - 1.0 >= 1e-5:
        raise BacktestError(f"tradable_weight is {tradable_weight}, can not greater than 1.")
    out = {}
    for code, wp in weight_position.items():
        if wp > 0.0 and ex.is_stock_tradable(code, start_time, end_time):
            out[code] = cash * wp / tradable_weight // ex.get_deal_price(code, start_time, end_time, direction)
    return out


def get_real_deal_amount(ex: Exchange, current_amount: float, target_amount: float, factor: float | None) -> float:
    """Signed trade amount from ``current`` to ``target`` in whole trade units (a full sell is exact)."""
    if current_amount == target_amount:
        return 0
    if current_amount < target_amount:
        return ex.round_amount_by_trade_unit(target_amount - current_amount, factor)
    if target_amount == 0:
        return -current_amount
    return -ex.round_amount_by_trade_unit(current_amount - target_amount, factor)


def generate_order_for_target_amount_position(
    ex: Exchange, target_position: dict, current_position: dict, start_time: Any, end_time: Any
) -> list[Order]:
    """Orders from ``current_position`` to ``target_position`` (``{code: amount}``): sells, then buys."""
    ids = sorted(set(current_position) | set(target_position))
    random.Random(0).shuffle(ids)  # qlib: random.seed(0); random.shuffle(...)
    row = ex.row_of(start_time)
    buys: list[Order] = []
    sells: list[Order] = []
    for code in ids:
        if not ex.is_stock_tradable(code, start_time, end_time):
            continue
        factor = ex.get_factor(code, start_time, end_time)
        deal = get_real_deal_amount(ex, current_position.get(code, 0), target_position.get(code, 0), factor)
        if deal == 0:
            continue
        direction = OrderDir.BUY if deal > 0 else OrderDir.SELL
        order = Order(code, abs(deal), direction, start_time, end_time, factor=factor, row=row)
        (buys if deal > 0 else sells).append(order)
    return sells + buys


# ------------------------------------------------------------------------------------- order generators
class OrderGenerator:
    """Turns a target weight position into orders."""

    def generate_order_list_from_target_weight_position(
        self, current: Position, trade_exchange: Exchange, target_weight_position: dict | None, risk_degree: float,
        pred_start_time: Any, pred_end_time: Any, trade_start_time: Any, trade_end_time: Any,
    ) -> list[Order]:  # fmt: skip
        raise NotImplementedError


class OrderGenWInteract(OrderGenerator):
    """Uses the trade date's prices: the tradable value (minus the ``1 - risk_degree`` reserve, divided by
    ``1 + max(open_cost, close_cost)``) is spread over the tradable targets by weight."""

    def generate_order_list_from_target_weight_position(
        self, current: Position, trade_exchange: Exchange, target_weight_position: dict | None, risk_degree: float,
        pred_start_time: Any, pred_end_time: Any, trade_start_time: Any, trade_end_time: Any,
    ) -> list[Order]:  # fmt: skip
        if target_weight_position is None:
            return []
        ex, ts, te = trade_exchange, trade_start_time, trade_end_time
        amounts = current.get_stock_amount_dict()
        total = calculate_amount_position_value(ex, amounts, ts, te, only_tradable=False)
        tradable = calculate_amount_position_value(ex, amounts, ts, te, only_tradable=True)
        tradable += current.get_cash()
        tradable -= (1.0 - risk_degree) * (total + current.get_cash())
        if tradable < 0:  # selling every tradable stock cannot fill the reserve: sell them all
            target = {c: a for c, a in amounts.items() if not ex.is_stock_tradable(c, ts, te)}
        else:
            tradable /= 1 + max(ex.close_cost, ex.open_cost)
            target = generate_amount_position_from_weight_position(ex, target_weight_position, tradable, ts, te)
        return generate_order_for_target_amount_position(ex, target, amounts, ts, te)


class OrderGenWOInteract(OrderGenerator):
    """Uses only what is known before the trade date: the prediction date's close (or the held price)."""

    def generate_order_list_from_target_weight_position(
        self, current: Position, trade_exchange: Exchange, target_weight_position: dict | None, risk_degree: float,
        pred_start_time: Any, pred_end_time: Any, trade_start_time: Any, trade_end_time: Any,
    ) -> list[Order]:  # fmt: skip
        if target_weight_position is None:
            return []
        ex = trade_exchange
        risk_total_value = risk_degree * current.calculate_value()
        held = set(current.get_stock_list())
        amounts = {}
        for code, w in target_weight_position.items():
            if ex.is_stock_tradable(code, trade_start_time, trade_end_time) and ex.is_stock_tradable(
                code, pred_start_time, pred_end_time
            ):
                amounts[code] = risk_total_value * w / ex.get_close(code, pred_start_time, pred_end_time)
            elif code in held:
                amounts[code] = risk_total_value * w / current.get_stock_price(code)
        return generate_order_for_target_amount_position(
            ex, amounts, current.get_stock_amount_dict(), trade_start_time, trade_end_time
        )


# ------------------------------------------------------------------------------------------- strategies
class WeightStrategyBase(BaseSignalStrategy):
    """A signal strategy whose subclass gives target weights; ``order_generator_cls_or_obj`` (class or
    instance, default :class:`OrderGenWOInteract`, as in qlib) turns them into orders."""

    def __init__(self, *, order_generator_cls_or_obj: Any = OrderGenWOInteract, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        gen = order_generator_cls_or_obj
        if isinstance(gen, (str, dict)):
            from qlib_prefect.utils import init_instance_by_config

            gen = init_instance_by_config(gen, "qlib_prefect.backtest.weight", _where="order_generator_cls_or_obj")
        self.order_generator = gen() if isinstance(gen, type) else gen

    def generate_target_weight_position(
        self, score: pd.Series, current: Position, trade_start_time: Any, trade_end_time: Any
    ) -> dict | None:
        """``{code: weight}`` for this step from ``score`` (the previous step's prediction)."""
        raise NotImplementedError

    def generate_trade_decision(self, step: StepContext) -> list[Order]:
        pred = self.previous_scores(step)
        if pred is None:
            return []
        ids, vals = pred
        codes = np.asarray(self.signal.codes, dtype=object)
        score = pd.Series(np.asarray(vals), index=pd.Index(codes[ids], name="instrument"), name="score")
        cal = getattr(self, "_prepared_cal", None)
        pred_start = cal[step.t - 1] if cal is not None else None
        pred_end = step.start_time - pd.Timedelta(seconds=1)
        current = copy.deepcopy(step.position)
        target = self.generate_target_weight_position(
            score=score, current=current, trade_start_time=step.start_time, trade_end_time=step.end_time
        )
        return self.order_generator.generate_order_list_from_target_weight_position(
            current=current,
            trade_exchange=self.trade_exchange,
            risk_degree=self.get_risk_degree(step.t),
            target_weight_position=target,
            pred_start_time=pred_start,
            pred_end_time=pred_end,
            trade_start_time=step.start_time,
            trade_end_time=step.end_time,
        )

    def reset(self, *, trade_exchange: Exchange, calendar: pd.DatetimeIndex, extra_codes: list[str]) -> None:
        super().reset(trade_exchange=trade_exchange, calendar=calendar, extra_codes=extra_codes)
        self._prepared_cal = calendar


class SoftTopkStrategy(WeightStrategyBase):
    """Hold the ``topk`` best-scored stocks at ``risk_degree / topk`` each, moving at most ``trade_impact_limit``
    (alias ``max_sold_weight``) of weight per stock and step (qlib 0.9.7's budget-constrained rebalancing)."""

    def __init__(
        self,
        model: Any = None,
        dataset: Any = None,
        topk: int | None = None,
        order_generator_cls_or_obj: Any = OrderGenWInteract,
        max_sold_weight: float = 1.0,
        trade_impact_limit: float | None = None,
        risk_degree: float = 0.95,
        buy_method: str = "first_fill",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            model=model, dataset=dataset, order_generator_cls_or_obj=order_generator_cls_or_obj,
            risk_degree=risk_degree, **kwargs,
        )  # fmt: skip
        self.topk = topk
        self.trade_impact_limit = trade_impact_limit if trade_impact_limit is not None else max_sold_weight
        self.buy_method = buy_method

    def get_risk_degree(self, trade_step: int | None = None) -> float:
        return self.risk_degree

    def generate_target_weight_position(
        self, score: pd.Series, current: Position, trade_start_time: Any, trade_end_time: Any, **kwargs: Any
    ) -> dict:
        if self.topk is None or self.topk <= 0:
            return {}
        limit = self.trade_impact_limit

        def capped(weight: float) -> float:
            return weight if limit is None else min(weight, limit)

        ideal = self.risk_degree / self.topk
        ideal_list = score.sort_values(ascending=False).iloc[: self.topk].index.tolist()
        cur = current.get_stock_weight_dict(only_stock=True)
        initial_total = sum(cur.values())
        if not cur:  # cold start
            return {code: capped(ideal) for code in ideal_list}
        nxt = {t: cur.get(t, 0.0) for t in set(cur) | set(ideal_list)}
        released = 0.0
        for t in list(nxt):
            w = nxt[t]
            if w <= 1e-8:
                continue
            if t not in ideal_list:
                sell = capped(w)
            elif w > ideal + 1e-8:
                sell = capped(w - ideal)
            else:
                continue
            nxt[t] -= sell
            released += sell
        budget = released + (self.risk_degree - initial_total)
        if budget > 1e-8:
            short = {t: ideal - nxt.get(t, 0.0) for t in ideal_list if nxt.get(t, 0.0) < ideal - 1e-8}
            if short:
                total_short = sum(short.values())
                spend = min(budget, total_short)
                for t, s in short.items():
                    nxt[t] += min(s / total_short * spend, capped(s))
        return {k: v for k, v in nxt.items() if v > 1e-8}
