"""qlib's expression engine on whole (dates x instruments) panels.

``parse`` turns a qlib expression string into a node tree, :class:`Evaluator` evaluates it for many
instruments at once (float32 panels, memoised sub-expressions) and :func:`compute_features` builds
the ``(datetime, instrument)`` feature frame qlib's data loader would return.
"""

from qlib_prefect.data.expression.engine import STANDARD_FIELDS, Evaluator, compute_features
from qlib_prefect.data.expression.ops import OPERATORS, Panel
from qlib_prefect.data.expression.parser import Const, Expression, Feature, Op, parse

__all__ = [
    "OPERATORS",
    "STANDARD_FIELDS",
    "Const",
    "Evaluator",
    "Expression",
    "Feature",
    "Op",
    "Panel",
    "compute_features",
    "parse",
]
