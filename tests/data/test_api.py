"""qlib's ``D`` API over the golden qlib-format directory (figures checked against the real qlib)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import D, registry
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.errors import ConfigError, ExpressionError

GOLD = Path(__file__).resolve().parents[1] / "golden" / "expressions"
META = json.loads((GOLD / "meta.json").read_text())


@pytest.fixture(autouse=True)
def _golden_provider():
    registry.set_provider(LocalProvider(GOLD / "data"))
    yield
    registry.set_provider(None)


def test_calendar_slice_like_qlib() -> None:
    cal = D.calendar(start_time="2020-02-01", end_time="2020-03-01")
    assert [str(pd.Timestamp(d).date()) for d in cal] == META["calendar_slice"]
    assert isinstance(cal, np.ndarray) and f"ndarray:{cal.dtype}" == META["calendar_type"]
    assert len(D.calendar()) == 180


def test_instruments_config_and_list_instruments() -> None:
    assert D.instruments("sub") == {"market": "sub", "filter_pipe": []}
    got = D.list_instruments(D.instruments("sub"), start_time="2020-03-01", end_time="2020-08-01")
    want = {k: [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in v] for k, v in META["list_instruments_sub"].items()}
    assert got == want
    assert D.list_instruments(D.instruments("all"), as_list=True) == sorted(
        ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]
    )
    flt = {"filter_type": "NameDFilter", "name_rule_re": "^[AB]"}
    assert D.list_instruments(D.instruments("all", filter_pipe=[flt]), as_list=True) == ["AAA", "BBB"]
    with pytest.raises(ConfigError, match="ExpressionDFilter"):
        D.list_instruments(D.instruments("all", filter_pipe=[{"filter_type": "ExpressionDFilter"}]))


def test_features_layout_matches_qlib_golden() -> None:
    info = META["files"]["operators_sub"]
    fields = info["fields"][:12]
    df = D.features(D.instruments("sub"), fields)
    gold = pd.read_parquet(GOLD / "operators_sub.parquet").iloc[:, :12]
    assert df.index.names == ["instrument", "datetime"]
    assert list(df.columns) == fields
    assert df.index.equals(gold.index)
    np.testing.assert_allclose(df.to_numpy(), gold.to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_features_list_of_codes_keeps_all_stored_rows_and_spaces_ignored() -> None:
    df = D.features(["GGG", "AAA"], ["Mean($close, 5)", "Mean($close,5)"], "2020-07-01", "2020-12-31")
    assert list(df.index.get_level_values("instrument").unique()) == ["AAA", "GGG"]
    assert len(df.loc["GGG"]) == 12
    assert df.iloc[:, 0].equals(df.iloc[:, 1].rename(df.columns[0]))


def test_features_bad_expression_is_named() -> None:
    with pytest.raises(ExpressionError, match="Mean\\(\\$nosuch,5\\)"):  # D strips spaces, like qlib
        D.features(["AAA"], ["Mean($nosuch, 5)"])
