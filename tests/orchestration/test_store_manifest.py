"""Content-store entries carry a manifest; a damaged entry is a cache miss, never served."""

from __future__ import annotations

import os

import pytest

from qlib_prefect.orchestration import _store
from qlib_prefect.orchestration._store import ContentStore


@pytest.fixture
def store(tmp_path):
    s = ContentStore(root=tmp_path / "store")
    with s.build("record", "k" * 32) as tmp:
        (tmp / "artifacts" / "pred.pkl").write_bytes(b"p" * 1000)
        (tmp / "artifacts" / "sig").mkdir()
        (tmp / "artifacts" / "sig" / "ic.pkl").write_bytes(b"i" * 100)
        (tmp / "metrics.json").write_text("[]")
    _store._verified.clear()
    return s


def test_intact_entry_is_served(store):
    assert store.exists("record", "k" * 32)
    assert store.get("record", "k" * 32).artifact_files() == ["pred.pkl", "sig/ic.pkl"]
    assert not list(store.root.rglob(".owner"))


@pytest.mark.parametrize("damage", ["delete", "truncate", "edit_same_size", "extra_file"])
def test_damaged_entry_is_a_miss_and_removed(store, damage):
    path = store.path("record", "k" * 32)
    pred = path / "artifacts" / "pred.pkl"
    if damage == "delete":
        pred.unlink()
    elif damage == "truncate":
        pred.write_bytes(b"p" * 10)
    elif damage == "edit_same_size":
        st = pred.stat()
        pred.write_bytes(b"q" + b"p" * 999)
        os.utime(pred, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        (path / "artifacts" / "stray.pkl").write_bytes(b"x")
    assert (path / "_COMPLETE").exists()
    assert not store.exists("record", "k" * 32)
    assert store.get("record", "k" * 32) is None
    assert not path.exists()  # deleted: the stage recomputes and writes a fresh entry


def test_verified_memo_still_catches_edits_in_one_process(store):
    assert store.exists("record", "k" * 32)  # CRCs checked and remembered
    pred = store.path("record", "k" * 32) / "artifacts" / "pred.pkl"
    st = pred.stat()
    pred.write_bytes(b"q" + b"p" * 999)
    os.utime(pred, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime; the ctime moved
    assert not store.exists("record", "k" * 32)


def test_entry_without_manifest_is_a_miss(store):
    (store.path("record", "k" * 32) / "manifest.json").unlink()
    assert not store.exists("record", "k" * 32)
