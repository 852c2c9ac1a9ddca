"""Record templates (qlib/workflow/record_temp.py): what a run stores besides the model.

Same classes, constructor arguments, artifact names/paths and metric names as qlib, so qlib configs
(``record: [{class: SignalRecord, ...}, {class: SigAnaRecord, ...}, {class: PortAnaRecord, ...}]``) work unchanged:

=========================  ======================  =====================================================
record                     artifact_path           artifacts
=========================  ======================  =====================================================
SignalRecord               (root)                  ``pred.pkl`` (DataFrame, column ``score``), ``label.pkl``
SigAnaRecord               ``sig_analysis``        ``ic.pkl``, ``ric.pkl`` [+ ``long_short_r.pkl``, ``long_avg_r.pkl``]
PortAnaRecord              ``portfolio_analysis``  ``report_normal_1day.pkl``, ``positions_normal_1day.pkl``,
                                                   ``indicators_normal_1day.pkl``, ``indicators_normal_1day_obj.pkl``,
                                                   ``port_analysis_1day.pkl``, ``indicator_analysis_1day.pkl``
MultiPassPortAnaRecord     ``portfolio_analysis``  ``multi_pass_port_analysis_1day.pkl``
=========================  ======================  =====================================================

Metrics: ``IC``, ``ICIR``, ``Rank IC``, ``Rank ICIR`` (+ ``Long-Short Ann Return/Sharpe``, ``Long-Avg Ann
Return/Sharpe``); ``1day.excess_return_{without,with}_cost.{mean,std,annualized_return,information_ratio,
max_drawdown}``, ``1day.ffr``, ``1day.pa``, ``1day.pos``; multi-pass: ``{mean,std,mean_std}.<analysis>.<metric>``.

Deliberate differences from qlib 0.9.7 (see docs/records.md):

* ``PortAnaRecord``'s default backtest ``end_time`` is the **last prediction date** (qlib 0.9.7: the trading day
  after it, qlib HEAD: the day before it, both to dodge a calendar-edge IndexError our backtest does not have).
* ``MultiPassPortAnaRecord`` really shuffles the first day's scores (qlib shuffles ``Series.values`` of a
  selection in place: under pandas Copy-on-Write that array is read-only -> ValueError with pandas 3 -- or a
  discarded copy) and draws from ``numpy.random.default_rng(seed)``.
* Results are logged with ``logging`` instead of ``pprint``.

Example:
    >>> with R.start(experiment_name="workflow"):  # doctest: +SKIP
    ...     model.fit(dataset)
    ...     rec = R.get_recorder()
    ...     SignalRecord(model=model, dataset=dataset, recorder=rec).generate()
    ...     SigAnaRecord(recorder=rec, ana_long_short=True).generate()
    ...     PortAnaRecord(recorder=rec, config=port_analysis_config, risk_analysis_freq="day").generate()
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlib_prefect.backtest.freq import Freq
from qlib_prefect.errors import ConfigError, DataError, LoadObjectError
from qlib_prefect.model.signal_eval import calc_ic, calc_long_short_return
from qlib_prefect.utils.placeholder import fill_placeholder

if TYPE_CHECKING:
    from qlib_prefect.workflow.protocol import RecorderProtocol

__all__ = [
    "ACRecordTemp",
    "MultiPassPortAnaRecord",
    "PortAnaRecord",
    "RecordTemp",
    "SigAnaRecord",
    "SignalRecord",
    "parse_freq",
]

logger = logging.getLogger(__name__)


def parse_freq(freq: str) -> str:
    """Normalise a frequency like qlib's ``Freq.parse``: ``"day"``/``"d"`` -> ``"1day"``, ``"week"`` -> ``"1week"``."""
    count, base = Freq.parse(freq)
    return f"{count}{base}"


def _deepcopy_basic_type(obj: Any) -> Any:
    """Copy dicts/lists/tuples recursively, share every other object (qlib's ``deepcopy_basic_type``)."""
    if isinstance(obj, tuple):
        return tuple(_deepcopy_basic_type(i) for i in obj)
    if isinstance(obj, list):
        return [_deepcopy_basic_type(i) for i in obj]
    if isinstance(obj, dict):
        return {k: _deepcopy_basic_type(v) for k, v in obj.items()}
    return obj


@contextlib.contextmanager
def _class_casting(obj: Any, cls: type) -> Iterator[None]:
    """Temporarily view ``obj`` as an instance of ``cls`` (qlib's down-casting trick for ``depend_cls``)."""
    orig = obj.__class__
    obj.__class__ = cls
    try:
        yield
    finally:
        obj.__class__ = orig


class RecordTemp:
    """Base record: where a record's artifacts live (``artifact_path``) and whose outputs it needs (``depend_cls``)."""

    artifact_path: str | None = None
    depend_cls: type[RecordTemp] | None = None

    def __init__(self, recorder: RecorderProtocol | None = None) -> None:
        self._recorder = recorder

    @classmethod
    def get_path(cls, path: str | None = None) -> str:
        """``artifact_path/path`` (either part may be absent)."""
        return "/".join(p for p in (cls.artifact_path, path) if p is not None)

    @property
    def recorder(self) -> RecorderProtocol:
        if self._recorder is None:
            raise ValueError("This RecordTemp did not set recorder yet.")
        return self._recorder

    def save(self, **kwargs: Any) -> None:
        """``recorder.save_objects`` under this record's artifact path."""
        self.recorder.save_objects(artifact_path=self.get_path() or None, **kwargs)

    def generate(self, **kwargs: Any) -> Any:
        raise NotImplementedError("Please implement the `generate` method.")

    def load(self, name: str, parents: bool = True) -> Any:
        """Load ``name`` from this record's path, else (``parents``) from the ``depend_cls`` chain's paths."""
        try:
            return self.recorder.load_object(self.get_path(name))
        except LoadObjectError:
            if parents and self.depend_cls is not None:
                with _class_casting(self, self.depend_cls):
                    return self.load(name, parents=True)
            raise

    def list(self) -> list[str]:
        """Artifact names this record produces, relative to its artifact path."""
        return []

    def check(self, include_self: bool = False, parents: bool = True) -> None:
        """Raise ``FileNotFoundError`` if this record's (``include_self``) or its parents' artifacts are missing."""
        if include_self:
            listed: dict[str, set[str]] = {}
            for item in self.list():
                full = self.get_path(item)
                dirn = full.rpartition("/")[0]
                if dirn not in listed:
                    listed[dirn] = set(self.recorder.list_artifacts(dirn or None))
                if full not in listed[dirn]:
                    raise FileNotFoundError(f"artifact {full!r} is missing from recorder {self._recorder_id()}")
        if parents and self.depend_cls is not None:
            with _class_casting(self, self.depend_cls):
                self.check(include_self=True)

    def _recorder_id(self) -> str:
        return str(getattr(self._recorder, "id", self._recorder))


class SignalRecord(RecordTemp):
    """Predict the test segment and save ``pred.pkl`` (+ the raw test label as ``label.pkl``)."""

    def __init__(self, model: Any = None, dataset: Any = None, recorder: RecorderProtocol | None = None) -> None:
        super().__init__(recorder=recorder)
        self.model = model
        self.dataset = dataset

    @staticmethod
    def generate_label(dataset: Any) -> pd.DataFrame | None:
        """The raw (unprocessed) label of the test segment, or None if the raw data was dropped.

        ``DatasetH.prepare`` is called even for subclasses (qlib down-casts, so a ``TSDatasetH`` gives a frame).
        """
        from qlib_prefect.data.dataset import DatasetH

        prepare = (lambda **kw: DatasetH.prepare(dataset, **kw)) if isinstance(dataset, DatasetH) else dataset.prepare
        params: dict[str, Any] = {"segments": "test", "col_set": "label", "data_key": "raw"}
        try:
            return prepare(**params)
        except TypeError:
            del params["data_key"]
            return prepare(**params)
        except (AttributeError, DataError) as e:  # e.g. a handler built with drop_raw=True
            logger.warning("raw label not available, label.pkl will hold None: %s", e)
            return None

    def generate(self, **kwargs: Any) -> None:
        if self.model is None or self.dataset is None:
            raise ConfigError("SignalRecord needs model= and dataset= to generate pred.pkl")
        pred = self.model.predict(self.dataset)
        if isinstance(pred, pd.Series):
            pred = pred.to_frame("score")
        self.save(**{"pred.pkl": pred})
        logger.info(
            "Signal record 'pred.pkl' has been saved as the artifact of the Experiment %s",
            getattr(self.recorder, "experiment_id", "?"),
        )
        logger.info("The following are prediction results of the %s model.\n%s", type(self.model).__name__,
                    pred.head(5))
        if _is_dataset_h(self.dataset):
            self.save(**{"label.pkl": self.generate_label(self.dataset)})

    def list(self) -> list[str]:
        return ["pred.pkl", "label.pkl"]


def _is_dataset_h(dataset: Any) -> bool:
    from qlib_prefect.data.dataset import DatasetH

    return isinstance(dataset, DatasetH)


class ACRecordTemp(RecordTemp):
    """Auto-checking record: skips when its dependencies are missing (or, with ``skip_existing``, when done)."""

    def __init__(self, recorder: RecorderProtocol | None = None, skip_existing: bool = False) -> None:
        self.skip_existing = skip_existing
        super().__init__(recorder=recorder)

    def generate(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        if self.skip_existing:
            try:
                self.check(include_self=True, parents=False)
            except FileNotFoundError:
                pass
            else:
                logger.info("The results has previously generated, Generation skipped.")
                return None
        try:
            self.check()
        except FileNotFoundError:
            logger.warning("The dependent data does not exists. Generation skipped.")
            return None
        artifacts = self._generate(*args, **kwargs)
        if isinstance(artifacts, dict):
            self.save(**artifacts)
        return artifacts

    def _generate(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise NotImplementedError("Please implement the `_generate` method")


class SigAnaRecord(ACRecordTemp):
    """IC / Rank IC (and optionally long-short) analysis of ``pred.pkl`` against ``label.pkl``."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(
        self,
        recorder: RecorderProtocol | None = None,
        ana_long_short: bool = False,
        ann_scaler: int = 252,
        label_col: int = 0,
        skip_existing: bool = False,
    ) -> None:
        super().__init__(recorder=recorder, skip_existing=skip_existing)
        self.ana_long_short = ana_long_short
        self.ann_scaler = ann_scaler
        self.label_col = label_col

    def _generate(self, label: pd.DataFrame | None = None, **kwargs: Any) -> dict[str, Any] | None:
        pred = self.load("pred.pkl")
        if label is None:
            label = self.load("label.pkl")
        if label is None or not isinstance(label, pd.DataFrame) or label.empty:
            logger.warning("Empty label.")
            return None
        p, lab = pred.iloc[:, 0], label.iloc[:, self.label_col]
        ic, ric = calc_ic(p, lab)
        metrics = {
            "IC": ic.mean(),
            "ICIR": ic.mean() / ic.std(),
            "Rank IC": ric.mean(),
            "Rank ICIR": ric.mean() / ric.std(),
        }
        objects: dict[str, Any] = {"ic.pkl": ic, "ric.pkl": ric}
        if self.ana_long_short:
            long_short_r, long_avg_r = calc_long_short_return(p, lab)
            metrics.update(
                {
                    "Long-Short Ann Return": long_short_r.mean() * self.ann_scaler,
                    "Long-Short Ann Sharpe": long_short_r.mean() / long_short_r.std() * self.ann_scaler**0.5,
                    "Long-Avg Ann Return": long_avg_r.mean() * self.ann_scaler,
                    "Long-Avg Ann Sharpe": long_avg_r.mean() / long_avg_r.std() * self.ann_scaler**0.5,
                }
            )
            objects.update({"long_short_r.pkl": long_short_r, "long_avg_r.pkl": long_avg_r})
        self.recorder.log_metrics(**{k: float(v) for k, v in metrics.items()})
        logger.info("Signal analysis: %s", metrics)
        return objects

    def list(self) -> list[str]:
        paths = ["ic.pkl", "ric.pkl"]
        if self.ana_long_short:
            paths.extend(["long_short_r.pkl", "long_avg_r.pkl"])
        return paths


_DEFAULT_PORT_CONFIG: dict[str, Any] = {
    "strategy": {
        "class": "TopkDropoutStrategy",
        "module_path": "qlib.contrib.strategy",
        "kwargs": {"signal": "<PRED>", "topk": 50, "n_drop": 5},
    },
    "backtest": {
        "start_time": None,
        "end_time": None,
        "account": 100000000,
        "benchmark": "SH000300",
        "exchange_kwargs": {
            "limit_threshold": 0.095,
            "deal_price": "close",
            "open_cost": 0.0005,
            "close_cost": 0.0015,
            "min_cost": 5,
        },
    },
}


class PortAnaRecord(ACRecordTemp):
    """Backtest ``pred.pkl`` and save the report, positions, indicators and risk/indicator analyses."""

    artifact_path = "portfolio_analysis"
    depend_cls = SignalRecord

    def __init__(
        self,
        recorder: RecorderProtocol | None = None,
        config: dict[str, Any] | None = None,
        risk_analysis_freq: list[str] | str | None = None,
        indicator_analysis_freq: list[str] | str | None = None,
        indicator_analysis_method: str | None = None,
        skip_existing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(recorder=recorder, skip_existing=skip_existing, **kwargs)
        config = _deepcopy_basic_type(_DEFAULT_PORT_CONFIG if config is None else config)
        for key in ("strategy", "backtest"):
            if key not in config:
                raise ConfigError(f"PortAnaRecord: config needs a {key!r} section (got keys {sorted(config)})")
        self.strategy_config = config["strategy"]
        self.executor_config = config.get(
            "executor",
            {
                "class": "SimulatorExecutor",
                "module_path": "qlib.backtest.executor",
                "kwargs": {"time_per_step": "day", "generate_portfolio_metrics": True},
            },
        )
        self.backtest_config = config["backtest"]
        self.all_freq = self._get_report_freq(self.executor_config)
        if not self.all_freq:
            raise ConfigError("PortAnaRecord: no executor has generate_portfolio_metrics=True; nothing to analyse")
        if risk_analysis_freq is None:
            risk_analysis_freq = [self.all_freq[0]]
        if indicator_analysis_freq is None:
            indicator_analysis_freq = [self.all_freq[0]]
        if isinstance(risk_analysis_freq, str):
            risk_analysis_freq = [risk_analysis_freq]
        if isinstance(indicator_analysis_freq, str):
            indicator_analysis_freq = [indicator_analysis_freq]
        self.risk_analysis_freq = [parse_freq(f) for f in risk_analysis_freq]
        self.indicator_analysis_freq = [parse_freq(f) for f in indicator_analysis_freq]
        self.indicator_analysis_method = indicator_analysis_method

    def _get_report_freq(self, executor_config: Any) -> list[str]:
        if not isinstance(executor_config, dict):  # an executor instance: ask it
            freq = getattr(executor_config, "time_per_step", None)
            gen = getattr(executor_config, "generate_portfolio_metrics", False)
            return [parse_freq(freq)] if gen and freq else []
        kwargs = executor_config.get("kwargs", {})
        out = []
        if kwargs.get("generate_portfolio_metrics", False):
            out.append(parse_freq(kwargs["time_per_step"]))
        if "inner_executor" in kwargs:
            out.extend(self._get_report_freq(kwargs["inner_executor"]))
        return out

    def _run_backtest(self, pred: pd.DataFrame) -> tuple[dict, dict]:
        from qlib_prefect.backtest.engine import backtest

        for k in ("executor_config", "strategy_config"):
            setattr(self, k, fill_placeholder(getattr(self, k), {"<PRED>": pred}))
        dt_values = pred.index.get_level_values("datetime")
        if self.backtest_config.get("start_time") is None:
            self.backtest_config["start_time"] = dt_values.min()
        if self.backtest_config.get("end_time") is None:
            # deliberate: the last prediction date (qlib 0.9.7 used the next trading day, HEAD the previous one)
            self.backtest_config["end_time"] = dt_values.max()
            logger.info("PortAnaRecord: backtest end_time defaults to the last prediction date %s", dt_values.max())
        return backtest(executor=self.executor_config, strategy=self.strategy_config, **self.backtest_config)

    def _generate(self, **kwargs: Any) -> dict[str, Any]:
        from qlib_prefect.backtest.analysis import indicator_analysis, risk_analysis

        pred = self.load("pred.pkl")
        portfolio_metric_dict, indicator_dict = self._run_backtest(pred)
        artifacts: dict[str, Any] = {}
        for freq, (report_normal, positions_normal) in portfolio_metric_dict.items():
            artifacts[f"report_normal_{freq}.pkl"] = report_normal
            artifacts[f"positions_normal_{freq}.pkl"] = positions_normal
        for freq, (indicators_df, indicator_obj) in indicator_dict.items():
            artifacts[f"indicators_normal_{freq}.pkl"] = indicators_df
            artifacts[f"indicators_normal_{freq}_obj.pkl"] = indicator_obj

        for freq in self.risk_analysis_freq:
            if freq not in portfolio_metric_dict:
                warnings.warn(
                    f"the freq {freq} report is not found, please set the corresponding env with "
                    "`generate_portfolio_metrics=True`",
                    stacklevel=2,
                )
                continue
            report, _ = portfolio_metric_dict[freq]
            analysis = {
                "excess_return_without_cost": risk_analysis(report["return"] - report["bench"], freq=freq),
                "excess_return_with_cost": risk_analysis(
                    report["return"] - report["bench"] - report["cost"], freq=freq
                ),
            }
            analysis_df = pd.concat(analysis)
            self.recorder.log_metrics(
                **{f"{freq}.{name}.{metric}": float(v) for (name, metric), v in analysis_df["risk"].items()}
            )
            artifacts[f"port_analysis_{freq}.pkl"] = analysis_df
            logger.info(
                "Portfolio analysis (%s)\nbenchmark:\n%s\nexcess return without cost:\n%s\n"
                "excess return with cost:\n%s",
                freq, risk_analysis(report["bench"], freq=freq), analysis["excess_return_without_cost"],
                analysis["excess_return_with_cost"],
            )

        for freq in self.indicator_analysis_freq:
            if freq not in indicator_dict:
                warnings.warn(f"the freq {freq} indicator is not found", stacklevel=2)
                continue
            indicators_df = indicator_dict[freq][0]
            if self.indicator_analysis_method is None:
                analysis_df = indicator_analysis(indicators_df)
            else:
                analysis_df = indicator_analysis(indicators_df, method=self.indicator_analysis_method)
            self.recorder.log_metrics(**{f"{freq}.{k}": float(v) for k, v in analysis_df["value"].items()})
            artifacts[f"indicator_analysis_{freq}.pkl"] = analysis_df
            logger.info("Indicator analysis (%s):\n%s", freq, analysis_df)
        return artifacts

    def list(self) -> list[str]:
        paths = []
        for freq in self.all_freq:
            paths.extend([f"report_normal_{freq}.pkl", f"positions_normal_{freq}.pkl"])
        for freq in self.risk_analysis_freq:
            if freq in self.all_freq:
                paths.append(f"port_analysis_{freq}.pkl")
            else:
                warnings.warn(f"risk_analysis freq {freq} is not found", stacklevel=2)
        for freq in self.indicator_analysis_freq:
            if freq in self.all_freq:
                paths.append(f"indicator_analysis_{freq}.pkl")
            else:
                warnings.warn(f"indicator_analysis freq {freq} is not found", stacklevel=2)
        return paths


class MultiPassPortAnaRecord(PortAnaRecord):
    """Run the backtest ``pass_num`` times (first day's scores shuffled each pass) and summarise the spread.

    ``seed`` seeds the ``numpy.random.Generator`` used for the shuffles (None -> fresh OS entropy).
    """

    depend_cls = SignalRecord

    def __init__(
        self, recorder: RecorderProtocol | None = None, pass_num: int = 10, shuffle_init_score: bool = True,
        seed: int | None = 0,
        **kwargs: Any,
    ) -> None:
        self.pass_num = pass_num
        self.shuffle_init_score = shuffle_init_score
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        super().__init__(recorder, **kwargs)
        self.original_strategy = _deepcopy_basic_type(self.strategy_config)
        if not isinstance(self.original_strategy, dict):
            raise ConfigError("MultiPassPortAnaRecord requires the strategy config to be a dict")
        if "signal" not in self.original_strategy.get("kwargs", {}):
            raise ConfigError("MultiPassPortAnaRecord requires the strategy config to have kwargs.signal")

    def random_init(self) -> pd.DataFrame:
        """Reload ``pred.pkl``, permute the scores of the first backtest date, use it as the strategy signal."""
        pred_df = self.load("pred.pkl")
        dates = pred_df.index.get_level_values("datetime")
        start = self.backtest_config.get("start_time")
        first = dates.min() if start is None else dates[dates >= pd.Timestamp(start)].min()
        col = "score" if "score" in pred_df.columns else pred_df.columns[0]
        rows = np.flatnonzero(dates == first)
        values = pred_df[col].to_numpy(copy=True)
        values[rows] = values[self._rng.permutation(rows)]
        pred_df = pred_df.copy()
        pred_df[col] = values  # a real column assignment: in-place writes to .values are lost under Copy-on-Write
        self.strategy_config = _deepcopy_basic_type(self.original_strategy)
        self.strategy_config["kwargs"]["signal"] = pred_df
        return pred_df

    def _generate(self, **kwargs: Any) -> dict[str, Any]:
        per_freq: dict[str, list[pd.DataFrame]] = {f: [] for f in self.risk_analysis_freq}
        for i in range(self.pass_num):
            if self.shuffle_init_score:
                self.random_init()
            single = super()._generate(**kwargs)
            for freq in self.risk_analysis_freq:
                df = single[f"port_analysis_{freq}.pkl"].copy()
                df["run_id"] = i
                per_freq[freq].append(df)
        result: dict[str, Any] = {}
        for freq, frames in per_freq.items():
            combined = pd.concat(frames)
            grouped = combined.groupby(level=[0, 1])["risk"]
            summary = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std()})
            summary["mean_std"] = summary["mean"] / summary["std"]
            summary = summary.loc[(slice(None), ["annualized_return", "information_ratio"]), :]
            result[f"multi_pass_port_analysis_{freq}.pkl"] = summary
            logger.info("Multi-pass portfolio analysis (%s):\n%s", freq, summary)
            metrics = {
                f"{stat}.{name}.{metric}": float(summary.loc[(name, metric), stat])
                for stat in ("mean", "std", "mean_std")
                for name, metric in summary.index
            }
            self.recorder.log_metrics(**metrics)
        return result

    def list(self) -> list[str]:
        paths = []
        for freq in self.risk_analysis_freq:
            if freq in self.all_freq:
                paths.append(f"multi_pass_port_analysis_{freq}.pkl")
            else:
                warnings.warn(f"risk_analysis freq {freq} is not found", stacklevel=2)
        return paths
