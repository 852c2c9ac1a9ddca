"""qlib's tests/data_mid_layer_tests/test_handler.py (sh600519 -> aapl, 2019-01 -> 2016-01; qlib's
``restricted_pickle_load`` -> ``pickle.load``; assertions unchanged). Runs in a temporary directory."""

import os
import pickle
import unittest

from qlib_test_data import TestAutoData

from qlib_prefect.data import D
from qlib_prefect.data.handler import DataHandlerLP

restricted_pickle_load = pickle.load


class HandlerTests(TestAutoData):
    def to_str(self, obj):
        return "".join(str(obj).split())

    def setUp(self):
        import tempfile

        self.tmp = tempfile.mkdtemp()

    def test_handler_df(self):
        df = D.features(["aapl"], start_time="20160101", end_time="20160201", fields=["$close"])
        dh = DataHandlerLP.from_df(df)
        print(dh.fetch())
        self.assertTrue(dh._data.equals(df))
        self.assertTrue(dh._infer is dh._data)
        self.assertTrue(dh._learn is dh._data)
        self.assertTrue(dh.data_loader._data is dh._data)
        fname = os.path.join(self.tmp, "_handler_test.pkl")
        dh.to_pickle(fname, dump_all=True)

        with open(fname, "rb") as f:
            dh_d = restricted_pickle_load(f)

        self.assertTrue(dh_d._data.equals(df))
        self.assertTrue(dh_d._infer is dh_d._data)
        self.assertTrue(dh_d._learn is dh_d._data)
        # Data loader will no longer be useful
        self.assertTrue("_data" not in dh_d.data_loader.__dict__.keys())
        os.remove(fname)


if __name__ == "__main__":
    unittest.main()
