"""Model layer: the ``Model`` interface, ``LGBModel`` and signal evaluation (IC, long-short).

Example:
    >>> from qlib_prefect.model import LGBModel, calc_ic  # doctest: +SKIP
"""

from __future__ import annotations

from qlib_prefect.model.base import BaseModel, Model, ModelFT, Serializable
from qlib_prefect.model.gbdt import LGBModel
from qlib_prefect.model.signal_eval import calc_ic, calc_long_short_prec, calc_long_short_return

__all__ = [
    "BaseModel",
    "LGBModel",
    "Model",
    "ModelFT",
    "Serializable",
    "calc_ic",
    "calc_long_short_prec",
    "calc_long_short_return",
]
