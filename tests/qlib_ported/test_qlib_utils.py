"""qlib's tests/misc/test_utils.py: ``DataUtils.test_guess_horizon`` unchanged (``TimeUtils`` tests the
high-frequency minute calendar, out of scope)."""

import unittest
from unittest.case import TestCase

from qlib_prefect import init
from qlib_prefect.data.helpers import guess_horizon


class DataUtils(TestCase):
    @classmethod
    def setUpClass(cls):
        init()

    def test_guess_horizon(self):
        label = ["Ref($close, -2) / Ref($close, -1) - 1"]
        result = guess_horizon(label)
        assert result == 2

        label = ["Ref($close, -5) / Ref($close, -1) - 1"]
        result = guess_horizon(label)
        assert result == 5

        label = ["Ref($close, -1) / Ref($close, -1) - 1"]
        result = guess_horizon(label)
        assert result == 1


if __name__ == "__main__":
    unittest.main()
