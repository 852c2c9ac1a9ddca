"""Data layer: qlib-format storage, the expression engine and qlib's ``D`` API."""

from qlib_prefect.data.api import D
from qlib_prefect.data.expression import Evaluator, compute_features, parse

__all__ = ["D", "Evaluator", "compute_features", "parse"]
