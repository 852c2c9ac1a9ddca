"""``LGBModel``: qlib's LightGBM model (qlib/contrib/model/gbdt.py) with the same parameters and outputs.

* ``params = {"objective": loss, "verbosity": -1, **kwargs}``; ``loss`` is ``"mse"`` or ``"binary"``.
* ``fit`` trains on ``dataset.prepare("train"/"valid", col_set=["feature", "label"], data_key="learn")`` with
  ``num_boost_round=1000``, early stopping after 50 rounds without improvement on ``valid`` and an evaluation log line
  every 20 rounds; the evaluation history is logged as metrics ``"<metric>.<set>"`` (``l2.train``, ``l2.valid``) with
  ``step`` = iteration, to the recorder passed in or else to the active ``R`` run. Unlike qlib, no run is started
  just to hold these metrics: without a recorder and without an active run they are only kept in ``evals_result_``.
* ``predict(dataset, segment="test")`` returns an unnamed ``Series`` over ``(datetime, instrument)`` computed from
  ``prepare(segment, col_set="feature", data_key="infer")`` with the best iteration.

Example:
    >>> model = LGBModel(loss="mse", learning_rate=0.2, num_leaves=15)  # doctest: +SKIP
    >>> model.fit(dataset); pred = model.predict(dataset)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.model.base import MetricsLogger, ModelFT, active_metrics_logger
from qlib_prefect.utils.threads import run_chunks

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["LGBModel"]

logger = logging.getLogger(__name__)


def log_eval_history(recorder: MetricsLogger, evals_result: dict[str, dict[str, list[float]]]) -> int:
    """Log a LightGBM evaluation history as ``"<metric>.<set>"`` metrics with ``step`` = iteration.

    All metrics of one iteration go in one ``log_metrics`` call; a recorder offering ``log_metrics_batch`` (one
    MLflow batch request for many steps) is used when available. Returns the number of values logged.
    """
    series: dict[str, list[float]] = {}
    for set_name, metrics in evals_result.items():
        for metric, values in metrics.items():
            series[f"{metric}.{set_name}".replace("@", "_")] = list(values)
    if not series:
        return 0
    n_steps = max(len(v) for v in series.values())
    rows = [{k: float(v[i]) for k, v in series.items() if i < len(v)} for i in range(n_steps)]
    batch = getattr(recorder, "log_metrics_batch", None)
    if callable(batch):
        batch([(step, row) for step, row in enumerate(rows)])
    else:
        for step, row in enumerate(rows):
            recorder.log_metrics(step=step, **row)
    return sum(len(r) for r in rows)


def _c_copy(arr: np.ndarray) -> np.ndarray:
    """A C-ordered copy of a 2-D array (LightGBM bins row-major data without another copy), in row blocks on up
    to 4 threads: from a column-ordered frame this is a transposing copy, ~0.7 s for Alpha158's train set alone."""
    if arr.flags.c_contiguous:
        return arr
    out = np.empty(arr.shape, dtype=arr.dtype, order="C")
    run_chunks(arr.shape[0], lambda lo, hi: np.copyto(out[lo:hi], arr[lo:hi]),
               threads=1 if arr.size < 4_000_000 else None, name="copy")
    return out


class LGBModel(ModelFT):
    """LightGBM regressor/classifier trained on a ``DatasetH`` (qlib's ``LGBModel``)."""

    def __init__(
        self, *, loss: str = "mse", early_stopping_rounds: int = 50, num_boost_round: int = 1000, **kwargs: Any
    ) -> None:
        if loss not in {"mse", "binary"}:
            raise ConfigError(f"LGBModel: loss must be 'mse' or 'binary', got {loss!r}")
        self.params: dict[str, Any] = {"objective": loss, "verbosity": -1}
        self.params.update(kwargs)
        self.early_stopping_rounds = early_stopping_rounds
        self.num_boost_round = num_boost_round
        self.model: lgb.Booster | None = None
        self.evals_result_: dict[str, dict[str, list[float]]] = {}
        self.feature_names_: list[str] = []

    # ------------------------------------------------------------------ data
    def _prepare_data(
        self, dataset: Any, reweighter: Any = None, *, construct: bool = False
    ) -> list[tuple[lgb.Dataset, str]]:
        """LightGBM datasets for ``train`` (and ``valid``). ``construct``: bin ``train`` at once with the model's
        parameters (as ``lgb.train`` would) and drop its raw copy before ``valid`` is prepared (lower peak
        memory; the binned dataset is the same)."""
        import lightgbm as lgb  # lazy: importing it (and scikit-learn through it) takes ~0.7 s

        segments = getattr(dataset, "segments", None)
        if segments is None or "train" not in segments:
            raise ConfigError("LGBModel.fit: the dataset has no 'train' segment")
        out = []
        for key in ("train", "valid"):
            if key not in segments:
                continue
            df = dataset.prepare(key, col_set=["feature", "label"], data_key="learn")
            if df.empty:
                raise DataError(f"LGBModel.fit: segment {key!r} {segments[key]!r} is empty; check the dataset config")
            x, y = df["feature"], df["label"]
            if y.shape[1] != 1:
                raise DataError(
                    f"LGBModel.fit: LightGBM needs exactly one label column, segment {key!r} has {list(y.columns)}"
                )
            weight = None
            if reweighter is not None:
                if not hasattr(reweighter, "reweight"):
                    raise ConfigError(f"LGBModel.fit: unsupported reweighter {type(reweighter).__name__}")
                weight = reweighter.reweight(df)
            if key == "train":
                self.feature_names_ = [str(c) for c in x.columns]
            # one C-ordered copy that LightGBM keeps as is (it would copy a frame's transposed block view again,
            # with a warning), then drop the prepared frame before the next segment
            features = _c_copy(x.to_numpy())
            label = np.ascontiguousarray(np.squeeze(y.to_numpy(), axis=1))  # a column of a memory-mapped frame
            del df, x, y
            if key == "train" and construct:
                ds = lgb.Dataset(features, label=label, weight=weight, params=dict(self.params), free_raw_data=True)
                ds.construct()
                del features
            else:
                ref = out[0][0] if out and construct else None
                ds = lgb.Dataset(features, label=label, weight=weight, reference=ref, free_raw_data=False)
            out.append((ds, key))
        return out

    # ------------------------------------------------------------------ training
    def fit(
        self,
        dataset: Any,
        num_boost_round: int | None = None,
        early_stopping_rounds: int | None = None,
        verbose_eval: int = 20,
        evals_result: dict | None = None,
        reweighter: Any = None,
        recorder: MetricsLogger | None = None,
        **kwargs: Any,
    ) -> LGBModel:
        """Train; ``recorder`` (default: the active R run, if any; see
        :func:`~qlib_prefect.model.base.active_metrics_logger`) receives the per-iteration metrics."""
        import lightgbm as lgb

        evals_result = {} if evals_result is None else evals_result
        ds_l = self._prepare_data(dataset, reweighter, construct=True)
        ds, names = zip(*ds_l)
        callbacks = [
            lgb.early_stopping(
                self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds, verbose=False
            ),
            lgb.log_evaluation(period=verbose_eval),
            lgb.record_evaluation(evals_result),
        ]
        self.model = lgb.train(
            self.params,
            ds[0],
            num_boost_round=self.num_boost_round if num_boost_round is None else num_boost_round,
            valid_sets=list(ds),
            valid_names=list(names),
            callbacks=callbacks,
            **kwargs,
        )
        self.evals_result_ = {k: {m: list(v) for m, v in d.items()} for k, d in evals_result.items()}
        rec = recorder if recorder is not None else active_metrics_logger()
        if rec is not None:
            log_eval_history(rec, {k: evals_result[k] for k in names if k in evals_result})
        return self

    def predict(self, dataset: Any, segment: str | slice = "test") -> pd.Series:
        """Scores of ``segment`` as an unnamed Series indexed like the prepared features."""
        if self.model is None:
            raise ValueError("model is not fitted yet!")
        x = dataset.prepare(segment, col_set="feature", data_key="infer")
        if self.model.num_feature() != x.shape[1]:
            raise DataError(
                f"LGBModel.predict: the model was trained on {self.model.num_feature()} features, "
                f"segment {segment!r} has {x.shape[1]}"
            )
        return pd.Series(self.model.predict(x.to_numpy()), index=x.index)

    def finetune(
        self, dataset: Any, num_boost_round: int = 10, verbose_eval: int = 20, reweighter: Any = None
    ) -> None:
        """Train ``num_boost_round`` more trees on the train segment, starting from the fitted booster."""
        if self.model is None:
            raise ValueError("model is not fitted yet!")
        import lightgbm as lgb

        dtrain, _ = self._prepare_data(dataset, reweighter)[0]
        self.model = lgb.train(
            self.params,
            dtrain,
            num_boost_round=num_boost_round,
            init_model=self.model,
            valid_sets=[dtrain],
            valid_names=["train"],
            callbacks=[lgb.log_evaluation(period=verbose_eval)],
        )

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance (``Booster.feature_importance`` arguments), largest first."""
        if self.model is None:
            raise ValueError("model is not fitted yet!")
        names = self.feature_names_ or self.model.feature_name()
        return pd.Series(self.model.feature_importance(*args, **kwargs), index=names).sort_values(ascending=False)
