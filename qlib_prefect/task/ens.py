"""Grouping and ensembling of collected results (qlib's ``qlib/model/ens/{group,ensemble}.py``).

A :class:`Group` turns ``{key: object}`` into groups and reduces every group with an :class:`Ensemble`:

* :class:`RollingGroup` groups ``{(model, ..., rolling_key): pred}`` into ``{(model, ...): {rolling_key: pred}}``
  and reduces each group with :class:`RollingEnsemble` (concatenate the rolling windows; on overlapping
  ``(datetime, instrument)`` rows the later window wins; sorted index);
* :class:`AverageEnsemble` z-scores every member per ``datetime`` (mean / std with ``ddof=1``) and averages the
  members row-wise;
* :class:`SingleKeyEnsemble` unwraps single-key dicts (recursively) to make results readable.

Example:
    >>> import pandas as pd
    >>> idx = lambda d: pd.MultiIndex.from_product([pd.to_datetime(d), ["A"]], names=["datetime", "instrument"])
    >>> w1 = pd.DataFrame({"score": [1.0, 2.0]}, index=idx(["2020-01-01", "2020-01-02"]))
    >>> w2 = pd.DataFrame({"score": [9.0, 3.0]}, index=idx(["2020-01-02", "2020-01-03"]))
    >>> RollingGroup()({("LGBModel", "w1"): w1, ("LGBModel", "w2"): w2})[("LGBModel",)]["score"].tolist()
    [1.0, 9.0, 3.0]
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import pandas as pd

from qlib_prefect.errors import ConfigError

__all__ = [
    "AverageEnsemble",
    "Ensemble",
    "Group",
    "RollingEnsemble",
    "RollingGroup",
    "SingleKeyEnsemble",
    "flatten_tuple_keys",
]

logger = logging.getLogger(__name__)


def flatten_tuple_keys(d: Mapping[Any, Any], parent_key: Any = None) -> dict[Any, Any]:
    """qlib's ``flatten_dict(d, sep=FLATTEN_TUPLE)``: nested dicts -> one level with ``(parent, key)`` keys.

    >>> flatten_tuple_keys({"a": {"x": 1, "y": {"z": 2}}, "b": 3})
    {('a', 'x'): 1, (('a', 'y'), 'z'): 2, 'b': 3}
    """
    items: dict[Any, Any] = {}
    for k, v in d.items():
        new_key = (parent_key, k) if parent_key else k  # qlib tests truthiness of the parent key
        if isinstance(v, MutableMapping):
            items.update(flatten_tuple_keys(v, new_key))
        else:
            items[new_key] = v
    return items


class Ensemble:
    """Merge ``{name: object}`` into one object (``__call__``)."""

    def __call__(self, ensemble_dict: dict, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Please implement the `__call__` method.")


class SingleKeyEnsemble(Ensemble):
    """``{only_key: value}`` -> ``value``; dicts with 0 or several keys are kept. Recursive by default."""

    def __call__(self, ensemble_dict: Any, recursion: bool = True) -> Any:
        if not isinstance(ensemble_dict, dict):
            return ensemble_dict
        if recursion:
            ensemble_dict = {k: self(v, recursion) for k, v in ensemble_dict.items()}
        if len(ensemble_dict) == 1:
            return next(iter(ensemble_dict.values()))
        return ensemble_dict


def _datetime_level(obj: Any, where: str) -> pd.Index:
    if not isinstance(obj, (pd.DataFrame, pd.Series)):
        raise ConfigError(f"{where}: expected a pandas DataFrame/Series with a 'datetime' index level, "
                          f"got {type(obj).__name__}")
    try:
        return obj.index.get_level_values("datetime")
    except KeyError:
        raise ConfigError(f"{where}: the index has no 'datetime' level (levels: {list(obj.index.names)})") from None


class RollingEnsemble(Ensemble):
    """Concatenate rolling results (DataFrames/Series with a ``datetime`` index level) into one.

    The pieces are ordered by their first ``datetime``; where two pieces share an index entry the **later** piece
    (the one starting later) wins; the result is sorted by index. The dict keys are ignored.
    """

    def __call__(self, ensemble_dict: dict) -> pd.DataFrame | pd.Series:
        logger.info("keys in group: %s", list(ensemble_dict.keys()))
        if not ensemble_dict:
            raise ConfigError("RollingEnsemble: nothing to merge (empty group)")
        firsts = [_datetime_level(v, f"RollingEnsemble[{k!r}]").min() for k, v in ensemble_dict.items()]
        order = sorted(range(len(firsts)), key=lambda i: firsts[i])  # stable, like list.sort
        values = list(ensemble_dict.values())
        artifact = pd.concat([values[i] for i in order])
        artifact = artifact[~artifact.index.duplicated(keep="last")]
        return artifact.sort_index()


class AverageEnsemble(Ensemble):
    """Per-``datetime`` z-score of every member (``(x - mean) / std``, ``ddof=1``), then the row mean.

    Nested dicts are flattened first; members are aligned on their index (outer join), NaN are skipped in the
    means. Returns a ``pd.Series`` sorted by index. The dict keys are ignored.
    """

    def __call__(self, ensemble_dict: dict) -> pd.Series:
        flat = flatten_tuple_keys(ensemble_dict)
        logger.info("keys in group: %s", list(flat.keys()))
        if not flat:
            raise ConfigError("AverageEnsemble: nothing to average (empty dict)")
        for k, v in flat.items():
            _datetime_level(v, f"AverageEnsemble[{k!r}]")
        results = pd.concat(list(flat.values()), axis=1)
        results.columns = pd.RangeIndex(results.shape[1])  # member names may repeat ("score"); only values matter
        grouped = results.groupby(level="datetime", sort=False)
        results = (results - grouped.transform("mean")) / grouped.transform("std")
        return results.mean(axis=1).sort_index()


def _joblib_available() -> bool:
    return importlib.util.find_spec("joblib") is not None


class Group:
    """Group a dict (``group_func``) and reduce every group (``ens``).

    Args:
        group_func: ``f(ungrouped_dict) -> {group_key: {member_key: object}}``.
        ens: an :class:`Ensemble` (any callable) applied to every group.

    ``group({(A, B, C1): x, (A, B, C2): y}) -> {(A, B): {C1: x, C2: y}}``; ``reduce`` then gives ``{(A, B): z}``.
    """

    def __init__(self, *, group_func: Callable[..., dict] | None = None, ens: Callable[..., Any] | None = None) -> None:
        self._group_func = group_func
        self._ens_func = ens

    def group(self, *args: Any, **kwargs: Any) -> dict:
        if callable(getattr(self, "_group_func", None)):
            return self._group_func(*args, **kwargs)  # type: ignore[misc]
        raise NotImplementedError("Please specify valid `group_func`.")

    def reduce(self, *args: Any, **kwargs: Any) -> Any:
        if callable(getattr(self, "_ens_func", None)):
            return self._ens_func(*args, **kwargs)  # type: ignore[misc]
        raise NotImplementedError("Please specify valid `_ens_func`.")

    def __call__(self, ungrouped_dict: dict, n_jobs: int = 1, verbose: int = 0, *args: Any, **kwargs: Any) -> dict:
        """Group, then reduce each group: ``{group_key: reduced}`` in grouping order.

        ``n_jobs != 1`` reduces the groups in parallel with joblib when it is installed (else sequentially,
        with a log line); ``verbose`` is joblib's.
        """
        grouped = self.group(ungrouped_dict, *args, **kwargs)
        keys = list(grouped.keys())
        if n_jobs != 1 and len(keys) > 1:
            if _joblib_available():
                from joblib import Parallel, delayed

                reduced = Parallel(n_jobs=n_jobs, verbose=verbose)(delayed(self.reduce)(grouped[k]) for k in keys)
                return dict(zip(keys, reduced))
            logger.info("joblib is not installed: reducing %d groups sequentially (n_jobs=%s ignored)",
                        len(keys), n_jobs)
        return {k: self.reduce(grouped[k]) for k in keys}


class RollingGroup(Group):
    """Group a rolling dict ``{(A, B, R): obj}`` into ``{(A, B): {R: obj}}`` (the rolling key is the **last**
    tuple element) and merge each group with ``ens`` (default :class:`RollingEnsemble`)."""

    def __init__(self, *, ens: Callable[..., Any] | None = None) -> None:
        super().__init__(ens=RollingEnsemble() if ens is None else ens)

    def group(self, rolling_dict: dict) -> dict:  # type: ignore[override]
        grouped: dict[Any, dict] = {}
        for key, values in rolling_dict.items():
            if isinstance(key, tuple):
                grouped.setdefault(key[:-1], {})[key[-1]] = values
            else:
                raise TypeError(f"Expected `tuple` type, but got a value `{key}`")
        return grouped
