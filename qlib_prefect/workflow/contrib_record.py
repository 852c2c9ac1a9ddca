"""qlib's contributed records (``qlib.contrib.workflow``): ``MultiSegRecord`` and ``SignalMseRecord``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.model.signal_eval import calc_ic
from qlib_prefect.workflow.record_temp import RecordTemp, SignalRecord

__all__ = ["MultiSegRecord", "SignalMseRecord"]

logger = logging.getLogger(__name__)


class MultiSegRecord(RecordTemp):
    """IC / Rank IC of the model's prediction on several segments; ``generate(segments, save)`` saves
    ``results-<key>.pkl`` = ``{"all-IC", "mean-IC", "all-Rank-IC", "mean-Rank-IC"}`` per segment (``save=True``)."""

    def __init__(self, model: Any, dataset: Any, recorder: Any = None) -> None:
        super().__init__(recorder=recorder)
        from qlib_prefect.data.dataset import DatasetH

        if not isinstance(dataset, DatasetH):
            raise ConfigError(f"MultiSegRecord: the dataset must be a DatasetH, got {type(dataset).__name__}")
        self.model = model
        self.dataset = dataset

    def generate(self, segments: Mapping[str, Any], save: bool = False) -> None:
        for key, segment in segments.items():
            pred = self.model.predict(self.dataset, segment)
            if isinstance(pred, pd.Series):
                pred = pred.to_frame("score")
            labels = self.dataset.prepare(segments=segment, col_set="label", data_key="raw")
            ic, ric = calc_ic(pred.iloc[:, 0], labels.iloc[:, 0])
            results = {"all-IC": ic, "mean-IC": ic.mean(), "all-Rank-IC": ric, "mean-Rank-IC": ric.mean()}
            ic100, ric100 = ic * 100, ric * 100
            logger.info("--- Results for %s (%s) ---", key, segment)
            logger.info("IC: %.4f%%", ic100.mean())
            logger.info("ICIR: %.4f%%", ic100.mean() / ic100.std())
            logger.info("Rank IC: %.4f%%", ric100.mean())
            logger.info("Rank ICIR: %.4f%%", ric100.mean() / ric100.std())
            if save:
                self.save(**{f"results-{key}.pkl": results})


class SignalMseRecord(RecordTemp):
    """MSE / RMSE of ``pred.pkl`` against ``label.pkl`` (rows with a label): metrics ``MSE``, ``RMSE`` and
    artifacts ``sig_analysis/mse.pkl``, ``rmse.pkl``."""

    artifact_path = "sig_analysis"
    depend_cls = SignalRecord

    def __init__(self, recorder: Any = None, **kwargs: Any) -> None:
        super().__init__(recorder=recorder, **kwargs)

    def generate(self, **kwargs: Any) -> None:
        self.check()
        pred = self.load("pred.pkl")
        label = self.load("label.pkl")
        p = np.asarray(pred.values, dtype=np.float64)
        lab = np.asarray(label.values, dtype=np.float64)
        mask = ~np.isnan(lab)
        mse = float(np.mean((p[mask] - lab[mask]) ** 2))
        metrics = {"MSE": mse, "RMSE": float(np.sqrt(mse))}
        self.recorder.log_metrics(**metrics)
        self.save(**{"mse.pkl": mse, "rmse.pkl": np.sqrt(mse)})
        logger.info("The evaluation results in SignalMseRecord is %s", metrics)

    def list(self) -> list[str]:
        return ["mse.pkl", "rmse.pkl"]
