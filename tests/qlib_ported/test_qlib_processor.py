# Copyright (c) Microsoft Corporation.
# Licensed under the MIT License.

"""qlib's tests/data_mid_layer_tests/test_processor.py: SH600519 -> AAPL, csi300 -> sp500, the fit window
2021-05-31..06-11 -> the last ten days of 2016; in ``test_CSZScoreNorm`` the per-date slice ``x[10:12]`` of 300
stocks becomes ``x[1:3]`` of our 6 and ``[50:60]`` becomes ``[10:20]`` (rows 2:4 are still the second date's
pair). ``test_CSZFillna`` needs a row whose four price fields are all NaN, which the bundled data lacks: not ported.
The two ``.tail(10)`` frames are cast to float64: pandas 3 refuses the test's own helper writing float64
values into float32 columns. Assertions unchanged; the processors are called as qlib calls them
(``proc.__call__(df)`` changes ``df``)."""

import unittest

import numpy as np
import pandas as pd
from qlib_test_data import TestAutoData

from qlib_prefect.data import D
from qlib_prefect.data.processor import CSZScoreNorm, MinMaxNorm, ZScoreNorm


class TestProcessor(TestAutoData):
    TEST_INST = "AAPL"

    def setUp(self):
        # qlib's reference formulas run in pandas without bottleneck (qlib's venv has none); with bottleneck,
        # pandas' float32 std differs in the last bit and the exact == checks would compare two pandas paths
        self._bn = pd.get_option("compute.use_bottleneck")
        pd.set_option("compute.use_bottleneck", False)

    def tearDown(self):
        pd.set_option("compute.use_bottleneck", self._bn)

    def test_MinMaxNorm(self):
        def normalize(df):
            min_val = np.nanmin(df.values, axis=0)
            max_val = np.nanmax(df.values, axis=0)
            ignore = min_val == max_val
            for _i, _con in enumerate(ignore):
                if _con:
                    max_val[_i] = 1
                    min_val[_i] = 0
            df.loc(axis=1)[df.columns] = (df.values - min_val) / (max_val - min_val)
            return df

        origin_df = D.features([self.TEST_INST], ["$high", "$open", "$low", "$close"]).tail(10).astype("float64")
        origin_df["test"] = 0
        df = origin_df.copy()
        mmn = MinMaxNorm(fields_group=None, fit_start_time="2016-12-16", fit_end_time="2016-12-30")
        mmn.fit(df)
        mmn.__call__(df)
        origin_df = normalize(origin_df)
        assert (df == origin_df).all().all()

    def test_ZScoreNorm(self):
        def normalize(df):
            mean_train = np.nanmean(df.values, axis=0)
            std_train = np.nanstd(df.values, axis=0)
            ignore = std_train == 0
            for _i, _con in enumerate(ignore):
                if _con:
                    std_train[_i] = 1
                    mean_train[_i] = 0
            df.loc(axis=1)[df.columns] = (df.values - mean_train) / std_train
            return df

        origin_df = D.features([self.TEST_INST], ["$high", "$open", "$low", "$close"]).tail(10).astype("float64")
        origin_df["test"] = 0
        df = origin_df.copy()
        zsn = ZScoreNorm(fields_group=None, fit_start_time="2016-12-16", fit_end_time="2016-12-30")
        zsn.fit(df)
        zsn.__call__(df)
        origin_df = normalize(origin_df)
        assert (df == origin_df).all().all()

    def test_CSZScoreNorm(self):
        origin_df = D.features(D.instruments(market="sp500"), fields=["$high", "$open", "$low", "$close"])
        origin_df = origin_df.groupby("datetime", group_keys=False).apply(lambda x: x[1:3])[10:20]
        df = origin_df.copy()
        CSZScoreNorm(fields_group=None).__call__(df)
        # If we use the formula directly on the original data, we cannot get the correct result,
        # because the original data is processed by `groupby`, so we use the method of slicing,
        # taking the 2nd group of data from the original data, to calculate and compare.
        assert (df[2:4] == ((origin_df[2:4] - origin_df[2:4].mean()).div(origin_df[2:4].std()))).all().all()


if __name__ == "__main__":
    unittest.main()
