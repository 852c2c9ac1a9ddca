"""Canonical JSON / config hashes: equal meaning -> equal hash, different meaning -> different hash."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.config.hashing import canonical_hash, canonical_json, config_hash, describe


def test_key_order_does_not_matter() -> None:
    a = {"model": {"class": "LGBModel", "kwargs": {"learning_rate": 0.2, "num_leaves": 210}}, "x": 1}
    b = {"x": 1, "model": {"kwargs": {"num_leaves": 210, "learning_rate": 0.2}, "class": "LGBModel"}}
    assert canonical_json(a) == canonical_json(b)
    assert config_hash(a) == config_hash(b)


def test_dates_normalised_to_iso() -> None:
    variants = [
        dt.date(2017, 1, 3),
        dt.datetime(2017, 1, 3),
        "2017-01-03",
        "20170103",
        pd.Timestamp("2017-01-03"),
        np.datetime64("2017-01-03"),
    ]
    hashes = {config_hash({"start": v}) for v in variants}
    assert len(hashes) == 1
    assert describe(dt.date(2017, 1, 3)) == "2017-01-03"
    assert describe(pd.Timestamp("2017-01-03 09:30")) == "2017-01-03T09:30:00"
    assert describe(pd.Timestamp("2017-01-03 09:30", tz="America/New_York")) == "2017-01-03T14:30:00"
    assert config_hash({"start": "2017-01-03"}) != config_hash({"start": "2017-01-04"})


def test_numpy_scalars_and_sequences() -> None:
    assert config_hash({"n": np.int64(5), "f": np.float32(0.5), "b": np.bool_(True)}) == config_hash(
        {"n": 5, "f": 0.5, "b": True}
    )
    assert config_hash({"seg": ("2008-01-01", "2014-12-31")}) == config_hash({"seg": ["2008-01-01", "2014-12-31"]})
    assert config_hash({"s": {3, 1, 2}}) == config_hash({"s": {2, 3, 1}})
    assert describe(float("nan")) == "nan"
    # values that differ in meaning differ in hash
    assert config_hash({"n": 5}) != config_hash({"n": 6})
    assert config_hash({"x": [1, 2]}) != config_hash({"x": [2, 1]})
    assert config_hash({"flag": True}) != config_hash({"flag": 1.5})


def test_classes_and_placeholders_are_strings() -> None:
    assert describe(pd.DataFrame) == "pandas.DataFrame"
    assert describe({"signal": "<PRED>"}) == {"signal": "<PRED>"}


def test_data_values_are_refused() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        config_hash({"x": pd.DataFrame({"a": [1]})})
    with pytest.raises(TypeError, match="object"):
        config_hash({"x": object()})


def test_lengths() -> None:
    full = canonical_hash({"a": 1})
    assert len(full) == 64
    assert config_hash({"a": 1}) == full[:16]
    assert config_hash({"a": 1}, length=8) == full[:8]
    with pytest.raises(ValueError, match="length"):
        config_hash({"a": 1}, length=0)


def test_same_as_data_cache_canonical_hash() -> None:
    """The data layer's cache keys and config hashes agree (one implementation can call the other)."""
    from qlib_prefect.data import cache
    samples = [
        {"b": 1, "a": "2020-01-01"},
        {"seg": (dt.date(2008, 1, 1), "2014-12-31"), "n": np.int32(3), "f": 0.1, "nan": float("inf")},
        {"handler": {"class": "Alpha158", "kwargs": {"instruments": "csi300", "start_time": dt.date(2008, 1, 1)}}},
        [pd.Timestamp("2020-01-01 10:00"), {1, 2}, None, True, slice(1, 5)],
    ]
    for s in samples:
        assert cache.canonical_json(s) == canonical_json(s)
        assert cache.canonical_hash(s) == canonical_hash(s)
