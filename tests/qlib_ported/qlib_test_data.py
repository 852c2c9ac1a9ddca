"""The stand-in of ``qlib.tests.TestAutoData`` for the ported qlib tests: ``init()`` on the bundled-data cut in
tests/golden/api/data (6 S&P stocks + SPX, 2016), with the class's ``_setup_kwargs`` (e.g. ``custom_ops``)."""

from __future__ import annotations

import unittest
from pathlib import Path
from typing import Any, ClassVar

import qlib_prefect

DATA = Path(__file__).resolve().parents[1] / "golden" / "api" / "data"
#: qlib's instruments in its tests -> ours
STOCK, BENCH, MARKET = "AAPL", "SPX", "sp500"


class TestAutoData(unittest.TestCase):
    _setup_kwargs: ClassVar[dict[str, Any]] = {}
    provider_uri = str(DATA)

    @classmethod
    def setUpClass(cls) -> None:
        qlib_prefect.init(provider_uri=str(DATA), region="us", **cls._setup_kwargs)

    @classmethod
    def tearDownClass(cls) -> None:
        qlib_prefect.init()  # drop custom operators and the data path
