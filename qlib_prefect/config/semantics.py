"""Checks of meaning, after structure: configs qlib accepts with rc 0 and meaningless results (issue 15 item 9).

Each problem is reported with its key path through ``error(parts, message)`` (the
:class:`~qlib_prefect.config.validation.Validator`'s), so all problems of a config are listed at once:

* ``segments``: every segment is ``[start, end]`` with start <= end (a scalar ``train: 2013-02-08`` trained on
  one day in qlib);
* records: ``SigAnaRecord`` / ``PortAnaRecord`` need a ``SignalRecord`` before them (else: no metrics at all);
* PortAnaRecord: ``topk`` >= 1, 0 <= ``n_drop`` <= ``topk``; ``account`` (cash) > 0 (0 ended in a
  ZeroDivisionError, a negative one was accepted); ``exchange_kwargs.deal_price`` is ``close``/``open``/``vwap``
  (with or without ``$``) or an expression with a ``$field`` (``midpoint`` silently meant ``close``); the
  backtest range lies inside the ``test`` segment (outside it there are no predictions and the excess return is
  minus the benchmark);
* ``qlib_init.exp_manager.kwargs.uri``: a known scheme;
* ``LGBModel`` kwargs: LightGBM's numeric parameters (and their aliases) are numbers (``learning_rate: fast``
  ended in ``LightGBMError: Unknown token fast in data file``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

__all__ = ["check_semantics"]

_DEAL_PRICES = frozenset({"close", "open", "vwap", "$close", "$open", "$vwap"})
_URI_SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                          "databricks-uc", "uc"})

Report = Callable[[tuple, str], None]

#: LightGBM parameters that take a number (canonical names; aliases via the alias table)
_LGB_NUMERIC = ("learning_rate", "num_leaves", "max_depth", "num_iterations", "min_data_in_leaf",
                "min_sum_hessian_in_leaf", "bagging_fraction", "bagging_freq", "feature_fraction", "lambda_l1",
                "lambda_l2", "min_gain_to_split", "max_bin", "num_threads", "seed", "early_stopping_round",
                "max_delta_step", "extra_seed", "bagging_seed", "feature_fraction_seed")


def _lgb_numeric_names() -> set[str]:
    from qlib_prefect.config._lightgbm_params import LIGHTGBM_PARAM_ALIASES

    names = set(_LGB_NUMERIC) | {"num_boost_round", "early_stopping_rounds"}
    for n in _LGB_NUMERIC:
        names.update(LIGHTGBM_PARAM_ALIASES.get(n, ()))
    return names


def _check_lgb(model: Any, error: Report) -> None:
    if _cls_name(model) != "LGBModel" or not isinstance(model, Mapping):
        return
    kw = model.get("kwargs")
    if not isinstance(kw, Mapping):
        return
    numeric = _lgb_numeric_names()
    for k, v in kw.items():
        if k in numeric and v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            error(("task", "model", "kwargs", k), f"LightGBM parameter {k!r} takes a number, got {v!r}")


def _cls_name(node: Any) -> str:
    if isinstance(node, Mapping):
        node = node.get("class")
    return str(node).rsplit(".", 1)[-1] if isinstance(node, str) else ""


def _date(v: Any) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _check_segments(dataset: Any, error: Report) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    kwargs = dataset.get("kwargs") if isinstance(dataset, Mapping) else None
    seg = kwargs.get("segments") if isinstance(kwargs, Mapping) else None
    parts = ("task", "dataset", "kwargs", "segments")
    if seg is not None and not isinstance(seg, Mapping):
        error(parts, f"expected a mapping of segment name -> [start, end], got {type(seg).__name__}")
    if not isinstance(seg, Mapping):
        return out
    for name, val in seg.items():
        if not isinstance(val, (list, tuple)) or len(val) != 2:
            error((*parts, name), f"a segment is [start, end], got {val!r}")
            continue
        a, b = _date(val[0]), _date(val[1])
        if a is None or b is None:
            error((*parts, name), f"cannot parse the dates of {list(val)!r}")
        elif a > b:
            error((*parts, name), f"start {val[0]} is after end {val[1]}")
        else:
            out[str(name)] = (a, b)
    return out


def _check_port(cfg: Any, parts: tuple, segments: Mapping[str, tuple], error: Report) -> None:
    if not isinstance(cfg, Mapping):
        return
    strat = cfg.get("strategy")
    kw = strat.get("kwargs") if isinstance(strat, Mapping) else None
    if isinstance(kw, Mapping):
        sp = (*parts, "strategy", "kwargs")
        topk, n_drop = kw.get("topk"), kw.get("n_drop")
        if isinstance(topk, bool) or (topk is not None and not isinstance(topk, int)):
            error((*sp, "topk"), f"must be an integer, got {topk!r}")
        elif isinstance(topk, int) and topk < 1:
            error((*sp, "topk"), f"must be >= 1, got {topk}")
        if isinstance(n_drop, bool) or (n_drop is not None and not isinstance(n_drop, int)):
            error((*sp, "n_drop"), f"must be an integer, got {n_drop!r}")
        elif isinstance(n_drop, int):
            if n_drop < 0:
                error((*sp, "n_drop"), f"must be >= 0, got {n_drop}")
            elif isinstance(topk, int) and not isinstance(topk, bool) and n_drop > topk:
                error((*sp, "n_drop"), f"n_drop={n_drop} is larger than topk={topk}")
    bt = cfg.get("backtest")
    if not isinstance(bt, Mapping):
        return
    bp = (*parts, "backtest")
    account = bt.get("account")
    cash = account.get("cash") if isinstance(account, Mapping) else account
    if account is not None and (isinstance(cash, bool) or not isinstance(cash, (int, float))):
        error((*bp, "account"), f"cash must be a number, got {cash!r}")
    elif cash is not None and cash <= 0:
        error((*bp, "account"), f"cash must be > 0, got {cash}")
    ex = bt.get("exchange_kwargs")
    deal = ex.get("deal_price") if isinstance(ex, Mapping) else None
    if isinstance(deal, str) and deal.strip().lower() not in _DEAL_PRICES and "$" not in deal:
        error((*bp, "exchange_kwargs", "deal_price"),
              f"unknown deal price {deal!r}: use close, open, vwap or an expression of $fields")
    start, end = _date(bt.get("start_time")), _date(bt.get("end_time"))
    if start is not None and end is not None and start > end:
        error((*bp, "start_time"), f"start_time {bt.get('start_time')} is after end_time {bt.get('end_time')}")
    test = segments.get("test")
    if test is not None:
        for key, d in (("start_time", start), ("end_time", end)):
            if d is not None and not (test[0] <= d <= test[1]):
                error((*bp, key), f"{d:%Y-%m-%d} lies outside the test segment {test[0]:%Y-%m-%d}..{test[1]:%Y-%m-%d}"
                      " (there are no predictions there)")


def check_semantics(raw: Mapping[str, Any], error: Report) -> None:
    """Report every meaning problem of a merged config through ``error(key_path, message)``."""
    task = raw.get("task")
    if isinstance(task, Mapping):
        _check_lgb(task.get("model"), error)
        segments = _check_segments(task.get("dataset"), error)
        rec = task.get("record")
        recs = rec if isinstance(rec, list) else ([] if rec is None else [rec])
        seen_signal = False
        for i, r in enumerate(recs):
            parts = ("task", "record", i) if isinstance(rec, list) else ("task", "record")
            name = _cls_name(r)
            if name == "SignalRecord":
                seen_signal = True
            elif name in ("SigAnaRecord", "PortAnaRecord") and not seen_signal:
                error((*parts, "class"), f"{name} needs a SignalRecord before it (it reads SignalRecord's pred.pkl)")
            if name == "PortAnaRecord" and isinstance(r, Mapping):
                # an online config's task is the template of its first window: `online simulate` backtests the
                # signals of the whole simulated span (it sets the backtest dates), not the template's test segment
                span = {} if isinstance(raw.get("online"), Mapping) else segments
                _check_port((r.get("kwargs") or {}).get("config"), (*parts, "kwargs", "config"), span, error)
    qi = raw.get("qlib_init")
    em = qi.get("exp_manager") if isinstance(qi, Mapping) else None
    uri = (em.get("kwargs") or {}).get("uri") if isinstance(em, Mapping) else None
    if isinstance(uri, str) and "://" in uri:
        scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
        if scheme not in _URI_SCHEMES:
            error(("qlib_init", "exp_manager", "kwargs", "uri"),
                  f"unknown tracking URI scheme {scheme!r}: use sqlite:///path/mlflow.db, a database URL or http(s)://")
