"""The MLflow pyfunc wrapper of a pickled qlib model (imports mlflow; ``qlib_prefect.model`` stays free of it)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

__all__ = ["QlibPyfuncModel"]


class QlibPyfuncModel(mlflow.pyfunc.PythonModel):
    """Input: the handler's feature columns (one row per (datetime, instrument)); output: the score, as
    ``LGBModel.predict`` computes it (the booster's prediction on the feature matrix)."""

    def load_context(self, context: Any) -> None:
        import pickle

        with open(context.artifacts["params"], "rb") as f:
            self._model = pickle.load(f)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        booster = self._model.model
        x = model_input.to_numpy(dtype="float64") if isinstance(model_input, pd.DataFrame) else model_input
        return pd.Series(booster.predict(x), index=getattr(model_input, "index", None), name="score")
