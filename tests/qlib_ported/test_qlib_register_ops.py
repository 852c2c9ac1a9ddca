"""qlib's tests/test_register_ops.py (instrument SH600000 -> AAPL, dates -> 2016; the test body unchanged)."""

import unittest

import numpy as np
from qlib_test_data import TestAutoData

from qlib_prefect.data import D
from qlib_prefect.data.expression.operators import ElemOperator, PairOperator


class Diff(ElemOperator):
    """Feature First Difference"""

    def _load_internal(self, instrument, start_index, end_index, freq):
        series = self.feature.load(instrument, start_index, end_index, freq)
        return series.diff()

    def get_extended_window_size(self):
        lft_etd, rght_etd = self.feature.get_extended_window_size()
        return lft_etd + 1, rght_etd


class Distance(PairOperator):
    """Feature Distance"""

    def _load_internal(self, instrument, start_index, end_index, freq):
        series_left = self.feature_left.load(instrument, start_index, end_index, freq)
        series_right = self.feature_right.load(instrument, start_index, end_index, freq)
        return np.abs(series_left - series_right)


class TestRegiterCustomOps(TestAutoData):
    @classmethod
    def setUpClass(cls) -> None:
        cls._setup_kwargs = {"custom_ops": [Diff, Distance]}
        super().setUpClass()

    def test_regiter_custom_ops(self):
        instruments = ["AAPL"]
        fields = ["Diff($close)", "Distance($close, Ref($close, 1))"]
        print(D.features(instruments, fields, start_time="2016-01-01", end_time="2016-12-31", freq="day"))


if __name__ == "__main__":
    unittest.main()
