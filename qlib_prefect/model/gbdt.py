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

import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.model.base import MetricsLogger, ModelFT, active_metrics_logger
from qlib_prefect.utils.threads import run_chunks

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = ["PROGRESS_LOGGER", "LGBModel", "TrainingProgress", "training_label"]

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


def _lgb_matrix(arr: np.ndarray) -> np.ndarray:
    """The training matrix as LightGBM takes it without copying: LightGBM (>= 4) reads row-major and column-major
    arrays in place, so the handler cache's column-ordered, memory-mapped block goes to it as is (no second
    in-memory copy of the train set, issue 13); only a non-contiguous array is copied, in row blocks on up to 4
    threads. Binning, and so the model, is the same for either layout (tests/model: bit-identical predictions)."""
    if arr.flags.c_contiguous or arr.flags.f_contiguous:
        return arr
    out = np.empty(arr.shape, dtype=arr.dtype, order="C")
    run_chunks(arr.shape[0], lambda lo, hi: np.copyto(out[lo:hi], arr[lo:hi]),
               threads=1 if arr.size < 4_000_000 else None, name="copy")
    return out


#: logger of the periodic training-progress lines (the CLI sends it into the Prefect task logs)
PROGRESS_LOGGER = "qlib_prefect.progress"
_LABEL: contextvars.ContextVar[str | None] = contextvars.ContextVar("qlib_prefect_training_label", default=None)


@contextlib.contextmanager
def training_label(label: str) -> Iterator[None]:
    """Fits inside the block label their evaluation and progress lines (``[window-3] [20]\ttrain's l2: ...``):
    concurrent rolling windows then tell their lines apart. qlib's lines are unlabelled."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def _log_evaluation(period: int) -> Any:
    """LightGBM's ``log_evaluation`` (same line), prefixed with the :func:`training_label` when one is set."""
    import lightgbm as lgb

    label = _LABEL.get()
    if label is None:
        return lgb.log_evaluation(period=period)

    def callback(env: Any) -> None:
        if period > 0 and env.evaluation_result_list and (env.iteration + 1) % period == 0:
            results = "\t".join(f"{r[0]}'s {r[1]}: {r[2]:g}" for r in env.evaluation_result_list)
            print(f"[{label}] [{env.iteration + 1}]\t{results}", flush=True)

    callback.order = 10  # type: ignore[attr-defined]  # where lightgbm runs its own log_evaluation
    return callback


_LIVE: dict[str, Any] = {"progress": None, "users": 0}  # one rich progress display shared by concurrent fits
_LIVE_LOCK = threading.Lock()


class TrainingProgress:
    """LightGBM callback reporting every boosting iteration (qlib only prints a loss line every 20 rounds).

    On a terminal (``stream.isatty()``) a rich progress bar (iteration, latest evaluation, best iteration,
    elapsed time; concurrent fits share one display); otherwise a plain line on ``stream`` every ``every_s``
    seconds. In both cases the same line goes to the :data:`PROGRESS_LOGGER` logger (the CLI forwards it to the
    Prefect task logs), plus a final line from :meth:`close`.
    """

    order = 25  # after record_evaluation (20), before early_stopping (30) raises on its last iteration

    def __init__(self, *, total: int, label: str = "LightGBM", every_s: float = 10.0, stream: Any = None) -> None:
        self.total = total
        self.label = label
        self.every_s = every_s
        self.stream = stream
        self.iteration = 0
        self.last = ""
        self._t0: float | None = None
        self._next_log = 0.0
        self._task: Any = None

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stderr

    def _is_terminal(self) -> bool:
        try:
            return bool(self._out().isatty())
        except (AttributeError, ValueError):
            return False

    def _emit(self, text: str) -> None:
        logging.getLogger(PROGRESS_LOGGER).info(text)
        if self._task is None:
            print(text, file=self._out(), flush=True)

    def _line(self) -> str:
        dt = time.perf_counter() - (self._t0 or time.perf_counter())
        return f"{self.label}: iteration {self.iteration}/{self.total}{self.last}, {dt:.0f} s"

    def _start(self) -> None:
        self._t0 = time.perf_counter()
        self._next_log = self._t0 + self.every_s
        if not self._is_terminal():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with _LIVE_LOCK:
            if _LIVE["progress"] is None:
                _LIVE["progress"] = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
                    console=Console(file=self._out()), transient=True,
                )
                _LIVE["progress"].start()
            _LIVE["users"] += 1
            self._task = _LIVE["progress"].add_task(self.label, total=self.total, metrics="")

    def __call__(self, env: Any) -> None:
        if self._t0 is None:
            self._start()
        self.iteration = env.iteration + 1
        evals = env.evaluation_result_list or []
        self.last = "".join(f", {data}'s {metric} {value:.6g}" for data, metric, value, *_ in evals)
        if self._task is not None:
            _LIVE["progress"].update(self._task, completed=self.iteration, metrics=self.last.lstrip(", "))
        now = time.perf_counter()
        if self.iteration == 1 or now >= self._next_log:
            self._next_log = now + self.every_s
            self._emit(self._line())

    def close(self, best_iteration: int | None = None) -> None:
        """End the display and report the last iteration (and the best one, after early stopping)."""
        if self._t0 is None:
            return
        if self._task is not None:
            with _LIVE_LOCK:
                _LIVE["progress"].remove_task(self._task)
                _LIVE["users"] -= 1
                if _LIVE["users"] == 0:
                    _LIVE["progress"].stop()
                    _LIVE["progress"] = None
            self._task = None
        best = f", best iteration {best_iteration}" if best_iteration else ""
        dt = time.perf_counter() - self._t0
        self._emit(f"{self.label}: finished after {self.iteration}/{self.total} iterations{best}{self.last}, "
                   f"{dt:.0f} s")
        self._t0 = None


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
            # the frame's (memory-mapped) block as is, then drop the prepared frame before the next segment
            features = _lgb_matrix(x.to_numpy())
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
        rounds = self.num_boost_round if num_boost_round is None else num_boost_round
        callbacks = [
            lgb.early_stopping(
                self.early_stopping_rounds if early_stopping_rounds is None else early_stopping_rounds, verbose=False
            ),
            _log_evaluation(verbose_eval),
            lgb.record_evaluation(evals_result),
        ]
        label = _LABEL.get()
        progress = (TrainingProgress(total=rounds, label=f"LightGBM {label}" if label else "LightGBM")
                    if verbose_eval and verbose_eval > 0 else None)
        if progress is not None:
            callbacks.append(progress)
        booster = None
        try:
            booster = lgb.train(
                self.params,
                ds[0],
                num_boost_round=rounds,
                valid_sets=list(ds),
                valid_names=list(names),
                callbacks=callbacks,
                **kwargs,
            )
        finally:
            if progress is not None:
                progress.close(getattr(booster, "best_iteration", None))
        self.model = booster
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
            callbacks=[_log_evaluation(verbose_eval)],
        )

    def get_feature_importance(self, *args: Any, **kwargs: Any) -> pd.Series:
        """Feature importance (``Booster.feature_importance`` arguments), largest first."""
        if self.model is None:
            raise ValueError("model is not fitted yet!")
        names = self.feature_names_ or self.model.feature_name()
        return pd.Series(self.model.feature_importance(*args, **kwargs), index=names).sort_values(ascending=False)
