"""qlib's tests/ops/test_elem_operator.py, adapted to the bundled data.

- ``TestElementOperator``: qlib's mock data set (instrument ``0050``, January 2022, ``MOCK_DF``) becomes the
  stored data of ``AAPL`` in January 2016 (``mock_df`` = its stored ``$close``); assertions unchanged.
- ``TestInstElementOperator``: qlib's ``TestOperatorData`` fixture (``NameDFilter`` on one csi300 stock, 2005)
  becomes the same on ``AAPL`` in ``sp500``, 2016. ``abs_values[2]`` is written ``abs_values.iloc[2]``: pandas 3
  removed the positional fallback of ``Series[int]`` on a datetime index (qlib's line raises KeyError there).
- ``TestOperatorDataSetting`` only checks qlib's own fixture; it is kept on ours.
"""

import unittest

import numpy as np
from qlib_test_data import MARKET, STOCK, TestAutoData

from qlib_prefect.config.runtime import C
from qlib_prefect.data import D
from qlib_prefect.data.filter import NameDFilter
from qlib_prefect.data.providers import Cal, DatasetD, DatasetProvider, ExpressionD


class TestMockData(TestAutoData):
    pass


class TestOperatorData(TestAutoData):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        nameDFilter = NameDFilter(name_rule_re=STOCK)
        instruments = D.instruments(MARKET, filter_pipe=[nameDFilter])
        start_time = "2016-01-04"
        end_time = "2016-12-31"
        freq = "day"
        instruments_d = DatasetD.get_instruments_d(instruments, freq)
        cls.instruments_d = instruments_d
        cal = Cal.calendar(start_time, end_time, freq)
        cls.cal = cal
        cls.start_time = cal[0]
        cls.end_time = cal[-1]
        cls.inst = list(instruments_d.keys())[0]  # noqa: RUF015 (qlib's line)
        cls.spans = list(instruments_d.values())[0]  # noqa: RUF015 (qlib's line)


class TestElementOperator(TestMockData):
    def setUp(self) -> None:
        self.instrument = STOCK
        self.start_time = "2016-01-01"
        self.end_time = "2016-02-01"
        self.freq = "day"
        self.mock_df = D.features([self.instrument], ["$close"], self.start_time, self.end_time).rename(
            columns={"$close": "close"}
        )

    def test_Abs(self):
        field = "Abs($close-Ref($close, 1))"
        result = ExpressionD.expression(self.instrument, field, self.start_time, self.end_time, self.freq)
        self.assertGreaterEqual(result.min(), 0)
        result = result.to_numpy()
        prev_close = self.mock_df["close"].shift(1)
        close = self.mock_df["close"]
        change = prev_close - close
        golden = change.abs().to_numpy()
        self.assertIsNone(np.testing.assert_allclose(result, golden))

    def test_Sign(self):
        field = "Sign($close-Ref($close, 1))"
        result = ExpressionD.expression(self.instrument, field, self.start_time, self.end_time, self.freq)
        result = result.to_numpy()
        prev_close = self.mock_df["close"].shift(1)
        close = self.mock_df["close"]
        change = close - prev_close
        change[change > 0] = 1.0
        change[change < 0] = -1.0
        golden = change.to_numpy()
        self.assertIsNone(np.testing.assert_allclose(result, golden))


class TestOperatorDataSetting(TestOperatorData):
    def test_setting(self):
        self.assertEqual(len(self.instruments_d), 1)
        self.assertGreater(len(self.cal), 0)


class TestInstElementOperator(TestOperatorData):
    def setUp(self) -> None:
        freq = "day"
        expressions = [
            "$change",
            "Abs($change)",
        ]
        columns = ["change", "abs"]
        self.data = DatasetProvider.inst_calculator(
            self.inst, self.start_time, self.end_time, freq, expressions, self.spans, C, []
        )
        self.data.columns = columns

    def test_abs(self):
        abs_values = self.data["abs"]
        self.assertGreater(abs_values.iloc[2], 0)


if __name__ == "__main__":
    unittest.main()
