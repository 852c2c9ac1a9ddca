"""qlib's tests/backtest/test_file_strategy.py on the bundled-data cut: SH600519 (a high price, so that 1000
shares exceed the account) -> AMZN; qlib's six order dates (the first trading days of January) -> the trading
days 2016-01-05..12, the backtest window -> 2016-01-01..20; the order file goes to a temporary folder instead of
the test's own folder. Assertions unchanged."""

import tempfile
import unittest
from pathlib import Path

import numpy as np
import pandas as pd
from qlib_test_data import TestAutoData

from qlib_prefect.backtest import backtest
from qlib_prefect.data import D

DIRNAME = Path(tempfile.mkdtemp(prefix="qlib-file-strategy-"))


class FileStrTest(TestAutoData):
    # Assumption to ensure the correctness of the test
    # - No price adjustment in these several trading days.
    TEST_INST = "AMZN"

    EXAMPLE_FILE = DIRNAME / "order_example.csv"

    def _gen_orders(self, dealt_num_for_1000) -> pd.DataFrame:
        headers = [
            "datetime",
            "instrument",
            "amount",
            "direction",
        ]
        orders = [
            # test cash limit for buying
            ["20160105", self.TEST_INST, "1000", "buy"],
            # test min_cost for buying
            ["20160106", self.TEST_INST, "1", "buy"],
            # test held stock limit for selling
            ["20160107", self.TEST_INST, "1000", "sell"],
            # test cash limit for buying
            ["20160108", self.TEST_INST, "1000", "buy"],
            # test min_cost for selling
            ["20160111", self.TEST_INST, "1", "sell"],
            # test selling all stocks
            ["20160112", self.TEST_INST, str(dealt_num_for_1000), "sell"],
        ]
        return pd.DataFrame(orders, columns=headers).set_index(["datetime", "instrument"])

    def test_file_str(self):
        # 0) basic settings
        account_money = 150000

        # 1) get information
        df = D.features([self.TEST_INST], ["$close", "$factor"], start_time="20160105", end_time="20160105")
        price = df["$close"].item()
        factor = df["$factor"].item()
        price_unit = price / factor * 100
        dealt_num_for_1000 = (account_money // price_unit) * (100 / factor)
        print(price, factor, price_unit, dealt_num_for_1000)

        # 2) generate orders
        orders = self._gen_orders(dealt_num_for_1000)
        orders.to_csv(self.EXAMPLE_FILE)
        print(orders)

        # 3) run the strategy
        strategy_config = {
            "class": "FileOrderStrategy",
            "module_path": "qlib.contrib.strategy.rule_strategy",
            "kwargs": {"file": self.EXAMPLE_FILE},
        }

        freq = "day"
        start_time = "2016-01-01"
        end_time = "2016-01-20"
        codes = [self.TEST_INST]

        backtest_config = {
            "start_time": start_time,
            "end_time": end_time,
            "account": account_money,
            "benchmark": None,  # benchmark is not required here for trading
            "exchange_kwargs": {
                "freq": freq,
                "limit_threshold": 0.095,
                "deal_price": "close",
                "open_cost": 0.0005,
                "close_cost": 0.0015,
                "min_cost": 500,
                "codes": codes,
                "trade_unit": 100,
            },
            # "pos_type": "InfPosition"  # Position with infinitive position
        }
        executor_config = {
            "class": "SimulatorExecutor",
            "module_path": "qlib.backtest.executor",
            "kwargs": {
                "time_per_step": freq,
                "generate_portfolio_metrics": False,
                "verbose": True,
                "indicator_config": {
                    "show_indicator": False,
                },
            },
        }
        report_dict, indicator_dict = backtest(  # noqa: RUF059 (qlib's line)
            executor=executor_config,
            strategy=strategy_config,
            **backtest_config,
        )

        # ffr valid
        ffr_dict = indicator_dict["1day"][0]["ffr"].to_dict()
        ffr_dict = {str(date).split()[0]: ffr_dict[date] for date in ffr_dict}
        assert np.isclose(ffr_dict["2016-01-05"], dealt_num_for_1000 / 1000)
        assert np.isclose(ffr_dict["2016-01-06"], 0)
        assert np.isclose(ffr_dict["2016-01-07"], dealt_num_for_1000 / 1000)
        assert np.isclose(ffr_dict["2016-01-08"], dealt_num_for_1000 / 1000)
        assert np.isclose(ffr_dict["2016-01-11"], 0)
        assert np.isclose(ffr_dict["2016-01-12"], 1)

        self.EXAMPLE_FILE.unlink()


if __name__ == "__main__":
    unittest.main()
