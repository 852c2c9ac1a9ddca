"""The chunked (out-of-core) handler build equals the in-memory build exactly, and a too-small cap is a clear error.

A small ``QLIB_PREFECT_MAX_MEMORY`` forces several instrument blocks and column chunks on small synthetic data with
NaN runs (suspensions), late listings, delistings and a label at the data's end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qlib_prefect
from qlib_prefect.data import cache as hcache
from qlib_prefect.data.cache import _crc
from qlib_prefect.data.handler import Alpha158
from qlib_prefect.data.synthetic import write_synthetic_market
from qlib_prefect.errors import ConfigError, QlibPrefectError

FIT = {"fit_start_time": "2005-03-01", "fit_end_time": "2005-09-30"}
FULL_PROCS = {
    "infer_processors": [
        {"class": "ProcessInf"},
        {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
        {"class": "Fillna", "kwargs": {"fields_group": "feature"}},
    ],
    "learn_processors": [{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}],
}
ZSCORE_PROCS = {
    "infer_processors": [{"class": "ZScoreNorm", "kwargs": {"fields_group": "feature"}},
                         {"class": "CSZFillna", "kwargs": {"fields_group": "feature"}}],
    "learn_processors": [{"class": "DropnaLabel"}, {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
}


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_market(tmp_path_factory.mktemp("synth") / "mkt", n_stocks=37, n_days=300, seed=7,
                                  late_share=0.3, delist_share=0.2, nan_runs=3)


@pytest.fixture
def env(market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QLIB_PREFECT_HANDLER_CACHE", raising=False)
    monkeypatch.delenv("QLIB_PREFECT_MAX_MEMORY", raising=False)
    qlib_prefect.init(provider_uri=str(market), region="cn")
    return market


def _build(monkeypatch: pytest.MonkeyPatch, cap: str | None, cache: bool, **kw: object) -> Alpha158:
    if cap is None:
        monkeypatch.delenv("QLIB_PREFECT_MAX_MEMORY", raising=False)
    else:
        monkeypatch.setenv("QLIB_PREFECT_MAX_MEMORY", cap)
    h = Alpha158(instruments="csi300", start_time="2005-03-01", end_time=None, cache=cache, **FIT, **kw)
    hcache.wait_for_pending_writes()
    return h


@pytest.mark.parametrize("procs", [{}, FULL_PROCS, ZSCORE_PROCS], ids=["default", "robust_rank", "zscore_csz"])
def test_chunked_equals_in_memory(env: Path, monkeypatch: pytest.MonkeyPatch, procs: dict) -> None:
    ref = _build(monkeypatch, None, cache=False, **procs)
    chunked = _build(monkeypatch, "8M", cache=True, **procs)  # several instrument blocks and column chunks
    assert not chunked.cache_hit
    entries = [p for p in hcache.handler_cache_dir().iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1, "the chunked build streams into one cache entry (no leftover temp folders)"
    # the checksums taken while the columns were streamed equal those of the files as read back
    meta = json.loads((entries[0] / "meta.json").read_text())
    for name, fm in meta["frames"].items():
        if "alias" not in fm:
            assert fm["crc"] == _crc(np.load(entries[0] / f"{name}.values.npy", mmap_mode="r")), name
    for dk in ("raw", "infer", "learn"):
        a, b = ref.fetch(data_key=dk), chunked.fetch(data_key=dk)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    learn = chunked.fetch(data_key="learn")
    assert isinstance(np.asarray(learn.iloc[:, 0].to_numpy()).base, (np.memmap, np.ndarray))
    # the label at the data's end: the last two dates have no label, so DropnaLabel keeps them out of learn only
    last = ref.fetch(data_key="raw").index.get_level_values("datetime").max()
    assert last in chunked.fetch(data_key="infer").index.get_level_values("datetime")
    assert last not in learn.index.get_level_values("datetime")
    # late listings and delistings are in the data
    raw = ref.fetch(data_key="raw")
    first = raw.groupby(level="instrument").apply(lambda d: d.index.get_level_values(0).min())
    lastd = raw.groupby(level="instrument").apply(lambda d: d.index.get_level_values(0).max())
    assert first.nunique() > 1 and lastd.nunique() > 1
    assert raw.iloc[:, 0].isna().sum() > 0  # KMID on suspension days
    # the fitted processors (joined from the column chunks) equal the in-memory ones
    for p, q in zip(ref.get_all_processors(), chunked.get_all_processors()):
        assert type(p) is type(q)
        for k, v in vars(p).items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(v, getattr(q, k), err_msg=f"{type(p).__name__}.{k}")
            elif isinstance(v, pd.Index):
                assert v.equals(getattr(q, k))
    # a second build loads the entry (same frames)
    again = _build(monkeypatch, "8M", cache=True, **procs)
    assert again.cache_hit
    pd.testing.assert_frame_equal(ref.fetch(data_key="learn"), again.fetch(data_key="learn"), check_exact=True)


def test_chunked_dataset_segments(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``DatasetH.prepare`` of a chunked handler serves the same segments (read from the memory map)."""
    from qlib_prefect.data.dataset import DatasetH

    seg = {"train": ("2005-03-01", "2005-09-30"), "valid": ("2005-10-01", "2005-12-30"), "test": ("2006-01-02", None)}
    ref = DatasetH(handler=_build(monkeypatch, None, cache=False), segments=seg)
    ours = DatasetH(handler=_build(monkeypatch, "8M", cache=True), segments=seg)
    for s in seg:
        pd.testing.assert_frame_equal(ref.prepare(s, data_key="learn"), ours.prepare(s, data_key="learn"),
                                      check_exact=True)


def test_cap_below_one_chunk_is_a_clear_error(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="QLIB_PREFECT_MAX_MEMORY") as ei:
        _build(monkeypatch, "20K", cache=True)
    assert isinstance(ei.value, QlibPrefectError) and "one chunk" in str(ei.value)
    leftovers = [p for p in hcache.handler_cache_dir().iterdir()]
    assert leftovers == [], "nothing half-written"


def test_a_failed_write_leaves_nothing_behind(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write failing in the background writer (here: the disk is full at the 7th column) fails the build with
    that error; no entry, temp folder or spill file is left that a later build could mistake for done."""
    calls = {"n": 0}
    real = hcache.FrameWriter.write_column

    def full(self, j, values):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        return real(self, j, values)

    monkeypatch.setattr(hcache.FrameWriter, "write_column", full)
    with pytest.raises(OSError, match="No space left"):
        _build(monkeypatch, "8M", cache=True)
    assert calls["n"] >= 7
    assert list(hcache.handler_cache_dir().iterdir()) == [], "nothing half-written"
    monkeypatch.setattr(hcache.FrameWriter, "write_column", real)
    again = _build(monkeypatch, "8M", cache=True)  # the next build starts from nothing and completes
    assert not again.cache_hit and len(again.fetch(data_key="learn"))


def test_a_failed_spill_leaves_nothing_behind(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for the background spill of an instrument block (disk full at the third block)."""
    from qlib_prefect.data import chunked

    real = chunked._Spill.__init__

    def full(self, folder, i, df):
        if i == 2:
            raise OSError(28, "No space left on device")
        real(self, folder, i, df)

    monkeypatch.setattr(chunked._Spill, "__init__", full)
    with pytest.raises(OSError, match="No space left"):
        _build(monkeypatch, "8M", cache=True)
    assert list(hcache.handler_cache_dir().iterdir()) == [], "nothing half-written"


def test_over_the_cap_but_not_chunkable_warns_why(env: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A build over the cap that cannot run out of core (a row filter by feature values; or no cache entry to
    stream into) says so, with the reason, and builds in memory; under the cap nothing is said."""
    import logging

    drop = {"learn_processors": [{"class": "DropnaProcessor", "kwargs": {"fields_group": "feature"}}]}
    with caplog.at_level(logging.WARNING, logger="qlib_prefect.data.handler"):
        h = _build(monkeypatch, "8M", cache=True, **drop)
        assert not getattr(h, "chunked_build", False) and len(h.fetch(data_key="learn"))
        h = _build(monkeypatch, "8M", cache=False)
        assert len(h.fetch(data_key="learn"))
        _build(monkeypatch, None, cache=False)  # under the default cap
    msgs = [r.getMessage() for r in caplog.records if "cannot run out of core" in r.getMessage()]
    assert len(msgs) == 2, msgs
    assert "QLIB_PREFECT_MAX_MEMORY" in msgs[0] and "drops rows by feature values" in msgs[0]
    assert "handler cache entry" in msgs[1]


def test_bad_cap_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from qlib_prefect.config.settings import get_settings

    monkeypatch.setenv("QLIB_PREFECT_MAX_MEMORY", "lots")
    with pytest.raises(ConfigError, match="QLIB_PREFECT_MAX_MEMORY"):
        get_settings()
    monkeypatch.setenv("QLIB_PREFECT_MAX_MEMORY", "1.5G")
    assert get_settings().max_memory_bytes == int(1.5 * 2**30)
    monkeypatch.delenv("QLIB_PREFECT_MAX_MEMORY")
    assert get_settings().max_memory_bytes > 0


def test_small_build_stays_in_memory(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the cap (the default: half the RAM) the in-memory build runs; its cache entry is the usual one."""
    h = _build(monkeypatch, None, cache=True)
    assert not h.cache_hit and len(h.fetch(data_key="learn"))


GOLD = Path(__file__).resolve().parents[1] / "golden" / "handlers"


def _golden_cases() -> list[str]:
    import json

    return list(json.loads((GOLD / "configs.json").read_text())["cases"])


@pytest.mark.parametrize("case", _golden_cases())
def test_chunked_equals_in_memory_on_golden_cases(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every golden parity case (the in-memory build equals qlib 0.9.7 there, test_handler_parity.py) gives the
    same frames through the chunked build when its processors allow it."""
    import json

    from qlib_prefect.data import chunked
    from qlib_prefect.utils import init_instance_by_config

    meta = json.loads((GOLD / "configs.json").read_text())
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QLIB_PREFECT_MAX_MEMORY", raising=False)
    qlib_prefect.init(provider_uri=str(GOLD / meta.get("case_provider_uri", {}).get(case, meta["provider_uri"])),
                      region=meta["region"])
    conf = meta["cases"][case]
    monkeypatch.setenv("QLIB_PREFECT_HANDLER_CACHE", "0")
    ref = init_instance_by_config(json.loads(json.dumps(conf)))
    h = ref.handler
    if chunked.chunkable(h) is not None:
        pytest.skip(f"{case}: in-memory only ({chunked.chunkable(h)})")
    inst = chunked.resolve_instruments(h)
    unit = chunked.chunk_unit_bytes(h, inst)
    # tiny data: one chunk unit (an instrument's whole-calendar panel) exceeds the in-memory estimate, so the
    # estimate is inflated to take the chunked path; the cap is one unit: the smallest blocks and chunks
    monkeypatch.setattr(chunked, "_INMEM_BYTES_PER_CELL", 10**6)
    monkeypatch.setenv("QLIB_PREFECT_MAX_MEMORY", str(unit))
    monkeypatch.delenv("QLIB_PREFECT_HANDLER_CACHE")
    ours = init_instance_by_config(json.loads(json.dumps(conf)))
    assert not ours.handler.cache_hit
    assert (hcache.handler_cache_dir() / hcache.handler_key(ours.handler, "fit_seq")).is_dir(), "chunked entry"
    for view in ("raw", "infer", "learn"):
        if view == "raw" and h.drop_raw:
            continue
        for seg in ("train", "valid", "test"):
            pd.testing.assert_frame_equal(ref.prepare(seg, data_key=view), ours.prepare(seg, data_key=view),
                                          check_exact=True)


def test_raw_cache_serves_window_slices_from_the_memory_map(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rolling windows share one loader output (orchestration/_rolling.py ``_build_raw``): it is stored in the raw
    cache and served memory-mapped, so a window's date slice is a view of the map (no copy of the panel per
    window); each window's handler then processes only its slice."""
    h = _build(monkeypatch, None, cache=False)
    raw = h.fetch(data_key="raw")
    key = hcache.raw_key({"t": "x"}, None, "fp")
    assert hcache.store_raw_frame(key, raw)
    mapped = hcache.load_raw_frame(key)
    pd.testing.assert_frame_equal(raw, mapped, check_exact=True)
    col = mapped.iloc[:, 0].to_numpy()
    base = col
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    dates = mapped.index.get_level_values("datetime")
    i0, i1 = dates.searchsorted(pd.Timestamp("2005-06-01")), dates.searchsorted(pd.Timestamp("2005-09-30"), "right")
    window = mapped.iloc[i0:i1]
    assert np.shares_memory(window.iloc[:, 0].to_numpy(), col)


def test_shared_raw_frame_out_of_core(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_raw_bounded`` (the rolling flow's one loader output for all windows): the handler's ``load_raw()``
    under the cap; above it the same frame built out of core and served from the memory map."""
    from qlib_prefect.data.handler import load_raw_bounded

    h = Alpha158(instruments="csi300", start_time="2005-03-01", end_time="2005-12-30", init_data=False, **FIT)
    ref = h.load_raw()
    small, on_disk = load_raw_bounded(h)
    assert not on_disk
    pd.testing.assert_frame_equal(ref, small, check_exact=True)
    monkeypatch.setenv("QLIB_PREFECT_MAX_MEMORY", "8M")
    big, on_disk = load_raw_bounded(h)
    assert on_disk
    pd.testing.assert_frame_equal(ref, big, check_exact=True)
    base = big.iloc[:, 0].to_numpy()
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    again, on_disk = load_raw_bounded(h)  # the next run: a handler cache hit
    assert on_disk
    pd.testing.assert_frame_equal(ref, again, check_exact=True)
