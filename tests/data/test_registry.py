"""The process-wide data provider belongs to the data layer: built from ``C`` and rebuilt after each ``init()``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.config import runtime
from qlib_prefect.data import D, registry
from qlib_prefect.data.base import MemoryProvider, Provider
from qlib_prefect.data.provider import LocalProvider

GOLD = Path(__file__).resolve().parents[1] / "golden" / "expressions" / "data"


@pytest.fixture(autouse=True)
def _reset():
    yield
    registry.set_provider(None)
    runtime.reset()


def test_provider_follows_init_and_set_provider() -> None:
    runtime.reset()
    mem = MemoryProvider({"close": pd.DataFrame({"A": [1.0, 2.0]}, index=pd.bdate_range("2020-01-01", periods=2))})
    registry.set_provider(mem)
    assert registry.get_provider() is mem and runtime.is_initialized()  # installed directly counts as initialised
    assert len(D.calendar()) == 2  # D reads the installed provider
    qlib_prefect.init(provider_uri=str(GOLD), region="us")  # a new init() replaces it with the configured directory
    p = registry.get_provider()
    assert isinstance(p, LocalProvider) and isinstance(p, Provider) and registry.get_provider() is p
    assert len(D.calendar()) == 180
    runtime.configure(provider_uri=str(GOLD / "nonexistent"))
    assert registry.get_provider() is not p  # rebuilt for the new URI (lazily: nothing is read yet)
    registry.set_provider(None)
    runtime.configure(provider_uri=str(GOLD))
    assert len(registry.get_provider().calendar()) == 180
