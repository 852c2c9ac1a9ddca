"""Handler cache: hits return equal frames, changed data/config miss, broken entries are rebuilt; config hashing."""

from __future__ import annotations

import datetime
import json
import time

import numpy as np
import pandas as pd
import pytest

from qlib_prefect.data import cache as hcache
from qlib_prefect.data import registry
from qlib_prefect.data.base import MemoryProvider
from qlib_prefect.data.dataset import DatasetH
from qlib_prefect.data.handler import Alpha158, DataHandlerLP
from qlib_prefect.data.loader import StaticDataLoader
from qlib_prefect.utils import init_instance_by_config


def make_provider(seed: int = 1, bump: float = 0.0) -> MemoryProvider:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=80)
    codes = ["A", "B", "C", "D"]
    close = pd.DataFrame(10 * np.exp(np.cumsum(rng.normal(0, 0.02, (80, 4)), axis=0)), dates, codes) + bump
    fields = {"open": close * 1.001, "close": close, "high": close * 1.01, "low": close * 0.99,
              "volume": close * 0 + 1000.0}
    return MemoryProvider(fields, markets={"mkt": {c: [(dates[0], dates[-1])] for c in codes}})


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path))
    monkeypatch.delenv(hcache.ENV_DISABLE, raising=False)
    registry.set_provider(make_provider())
    yield tmp_path
    registry.set_provider(None)


CFG = {
    "class": "Alpha158",
    "module_path": "qlib.contrib.data.handler",
    "kwargs": {"instruments": "mkt", "start_time": "2020-02-03", "end_time": "2020-04-10",
               "fit_start_time": "2020-02-03", "fit_end_time": "2020-03-02",
               "infer_processors": [{"class": "ZScoreNorm", "kwargs": {"fields_group": "feature"}}, "Fillna"]},
}


def build(cfg=CFG) -> Alpha158:
    return init_instance_by_config(cfg)


def assert_same(a: DataHandlerLP, b: DataHandlerLP) -> None:
    for dk in ("raw", "infer", "learn"):
        pd.testing.assert_frame_equal(a.fetch(col_set="__raw", data_key=dk), b.fetch(col_set="__raw", data_key=dk))


def entries(home) -> list:
    d = home / "handler_cache"
    return [p for p in d.iterdir() if not p.name.startswith(".")] if d.exists() else []


def test_hit_returns_equal_frames_and_processors(home) -> None:
    first = build()
    assert not first.cache_hit and len(entries(home)) == 1
    second = build()
    assert second.cache_hit
    assert_same(first, second)
    z = second.infer_processors[0]
    assert type(z).__name__ == "ZScoreNorm" and np.array_equal(
        z.mean_train, first.infer_processors[0].mean_train, equal_nan=True
    )
    assert second.fetch(col_set="__raw", data_key="raw").index.names == ["datetime", "instrument"]
    # through DatasetH too
    ds = DatasetH(handler=CFG, segments={"train": ("2020-02-01", "2020-03-02")})
    assert ds.handler.cache_hit
    pd.testing.assert_frame_equal(ds.prepare("train"), first.fetch(slice("2020-02-01", "2020-03-02")))


def test_changed_config_or_data_misses(home) -> None:
    build()
    other = json.loads(json.dumps(CFG))
    other["kwargs"]["end_time"] = "2020-04-09"
    assert not build(other).cache_hit
    registry.set_provider(make_provider(bump=0.5))  # same shapes, different values -> other fingerprint
    h = build()
    assert not h.cache_hit
    assert len(entries(home)) == 3
    # equivalent spelling of the same config hits (dates normalised, key order irrelevant)
    registry.set_provider(make_provider())
    same = json.loads(json.dumps(CFG))
    same["kwargs"] = dict(reversed(list(same["kwargs"].items())))
    same["kwargs"]["start_time"] = datetime.date(2020, 2, 3)
    assert build(same).cache_hit


@pytest.mark.parametrize("damage", ["truncate", "meta", "flip"])
def test_broken_entry_is_rebuilt(home, damage) -> None:
    first = build()
    (entry,) = entries(home)
    if damage == "truncate":
        f = entry / "raw.values.npy"
        f.write_bytes(f.read_bytes()[:-100])
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    else:
        f = entry / "learn.values.npy"
        b = bytearray(f.read_bytes())
        b[-5] ^= 0xFF
        f.write_bytes(bytes(b))
    again = build()
    assert not again.cache_hit
    assert_same(first, again)
    assert build().cache_hit  # rewritten


def test_opt_out_and_uncacheable(home, monkeypatch) -> None:
    cfg = json.loads(json.dumps(CFG))
    cfg["kwargs"]["cache"] = False
    build(cfg)
    assert entries(home) == []
    monkeypatch.setenv(hcache.ENV_DISABLE, "0")
    build()
    assert entries(home) == []
    monkeypatch.setenv(hcache.ENV_DISABLE, "1")
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=3), ["A"]], names=["datetime", "instrument"])
    df = pd.DataFrame({("feature", "x"): np.ones(3, "float32")}, index=idx)
    DataHandlerLP(data_loader=StaticDataLoader(df))  # in-memory data: never cached
    assert entries(home) == []
    assert hcache.clear_handler_cache() == 0


def test_canonical_hash() -> None:
    a = {"b": [1, 2], "a": {"start": "2020-01-01", "x": 1.5}}
    b = {"a": {"x": 1.5, "start": pd.Timestamp("2020-01-01")}, "b": (1, 2)}
    assert hcache.canonical_hash(a) == hcache.canonical_hash(b)
    assert hcache.canonical_hash(a) != hcache.canonical_hash({**a, "b": [2, 1]})
    assert len(hcache.canonical_hash(a)) == 64
    with pytest.raises(TypeError):
        hcache.canonical_hash({"df": pd.DataFrame({"x": [1]})})


def test_large_entries_are_written_in_background(home, monkeypatch) -> None:
    monkeypatch.setattr(hcache, "ASYNC_WRITE_BYTES", 0)
    first = build()
    hcache.wait_for_pending_writes(timeout=60)
    assert len(entries(home)) == 1
    second = build()
    assert second.cache_hit
    assert_same(first, second)


def test_a_build_waits_for_the_same_entry_being_written(home, monkeypatch) -> None:
    """The same build again while this process still writes its entry is a hit, not a second build."""
    monkeypatch.setattr(hcache, "ASYNC_WRITE_BYTES", 0)
    save = hcache._save_frame

    def slow_save(*a, **k):
        time.sleep(0.5)  # a slow disk: the writer is still busy when the second build looks for the entry
        return save(*a, **k)

    monkeypatch.setattr(hcache, "_save_frame", slow_save)
    first = build()
    second = build()
    assert second.cache_hit
    assert_same(first, second)
    assert len(entries(home)) == 1


def _mapped(df: pd.DataFrame) -> bool:
    """Whether the frame's values live in a memory-mapped file (walks the ndarray base chain)."""
    import mmap

    arr = df._mgr.blocks[0].values
    while arr is not None:
        if isinstance(arr, (np.memmap, mmap.mmap)):
            return True
        arr = getattr(arr, "base", None)
    return False


def test_large_build_adopts_the_stored_memory_mapped_frames(home, monkeypatch) -> None:
    """Frames written in the background are swapped for their memory-mapped copies (their anonymous memory is
    freed): same values and index, raw/infer aliasing kept, and a later hit reads the same entry."""
    cfg = json.loads(json.dumps(CFG))
    del cfg["kwargs"]["infer_processors"]  # Alpha158's default: infer is the raw frame itself
    small = build(cfg)  # below the threshold: written synchronously, frames stay in memory
    assert not small.cache_hit and not any(_mapped(getattr(small, a)) for a in small.ATTR_MAP.values())
    hcache.clear_handler_cache()
    monkeypatch.setattr(hcache, "ASYNC_WRITE_BYTES", 0)  # every entry goes through the background writer
    built = build(cfg)
    assert not built.cache_hit
    before = {dk: built.fetch(col_set="__raw", data_key=dk).copy() for dk in ("raw", "infer", "learn")}
    hcache.wait_for_pending_writes()
    for dk, attr in built.ATTR_MAP.items():
        assert _mapped(getattr(built, attr)), dk
        pd.testing.assert_frame_equal(built.fetch(col_set="__raw", data_key=dk), before[dk])
    assert built._data is built._infer
    assert_same(built, build(cfg))
