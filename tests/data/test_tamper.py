"""Tampered data and caches are noticed: in-place edits that keep size and mtime, corrupted cache middles."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from qlib_prefect.data import provider as prov_mod
from qlib_prefect.data import storage as st
from qlib_prefect.data.cache import _crc
from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.provider import fingerprint_dir, fingerprint_until


def _data(tmp_path):
    dates = pd.bdate_range("2021-01-04", periods=10)
    rows = [{"symbol": c, "date": d, "open": 1.0 + i, "high": 2.0 + i, "low": 0.5, "close": 1.5 + i, "volume": 10.0}
            for c in ("AAA", "BBB") for i, d in enumerate(dates)]
    q = tmp_path / "q"
    import_frame(pd.DataFrame(rows), q, quality=False)
    return q, dates


def _edit_keeping_size_and_mtime(path):
    before = os.stat(path)
    raw = bytearray(path.read_bytes())
    raw[8:12] = np.array([99.0], "<f4").tobytes()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_in_place_edit_with_restored_mtime_changes_the_fingerprints(tmp_path):
    q, dates = _data(tmp_path)
    fp, fu = fingerprint_dir(q), fingerprint_until(q, dates[-1])
    assert fingerprint_dir(q) == fp  # stable
    _edit_keeping_size_and_mtime(st.feature_path(q, "AAA", "close"))
    assert fingerprint_dir(q) != fp
    assert fingerprint_until(q, dates[-1]) != fu


def test_verify_content_mode_rehashes_every_file(tmp_path, monkeypatch):
    """A stamp that matches but a hash that does not (what a stamp collision would give) is trusted by default
    and caught with QLIB_PREFECT_VERIFY_CONTENT=1."""
    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    q, _ = _data(tmp_path)
    good = fingerprint_dir(q)
    root = str(q.resolve())
    manifest = prov_mod._MANIFESTS[root]
    rel = "features/aaa/close.day.bin"
    manifest[rel] = [*manifest[rel][:4], "0" * 32]  # a stale hash under the current stamp
    stale = fingerprint_dir(q)
    assert stale != good
    monkeypatch.setenv("QLIB_PREFECT_VERIFY_CONTENT", "1")
    assert fingerprint_dir(q) == good


def test_handler_cache_crc_covers_the_middle():
    a = np.zeros((3_000_000, 2), dtype=np.float32, order="F")  # 24 MB: far more than the old head/tail MiBs
    c = _crc(a)
    a[1_500_000, 1] = 1.0
    assert _crc(a) != c


def test_corrupted_middle_of_a_cached_handler_is_a_miss(tmp_path, monkeypatch):
    from qlib_prefect.data import cache

    monkeypatch.setenv("QLIB_PREFECT_HOME", str(tmp_path / "home"))
    idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=4000), [f"S{i}" for i in range(100)]],
                                     names=["datetime", "instrument"])
    df = pd.DataFrame(np.random.default_rng(0).random((len(idx), 2)).astype(np.float32), index=idx,
                      columns=["a", "b"])
    folder = tmp_path / "entry"
    folder.mkdir()
    meta = cache._save_frame(folder, "learn", df)
    pd.testing.assert_frame_equal(cache._load_frame(folder, "learn", meta), df)
    p = folder / "learn.values.npy"
    with open(p, "r+b") as fh:
        fh.seek(p.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    try:
        cache._load_frame(folder, "learn", meta)
    except ValueError as e:
        assert "checksum" in str(e)
    else:
        raise AssertionError("a corrupted middle was loaded")
    assert json.dumps(meta)  # metadata stays JSON
