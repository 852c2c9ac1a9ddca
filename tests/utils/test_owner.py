"""Ownership of temporary folders: a live writer's folder is never taken for a killed one's."""

from __future__ import annotations

import subprocess
import sys

from qlib_prefect.orchestration._store import ContentStore
from qlib_prefect.utils.owner import OWNER_FILE, remove_stale, stale_children, token


def _dead_token() -> str:
    return subprocess.run([sys.executable, "-c", "from qlib_prefect.utils.owner import token; print(token())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_marker_caught_mid_write_does_not_make_a_live_folder_stale(tmp_path) -> None:
    live = tmp_path / f".tmp-{'a' * 16}-{token()}-00000000"
    live.mkdir()
    (live / OWNER_FILE).write_text("")  # its writer has truncated the marker and not written the token yet
    fresh = tmp_path / ".tmp-noowner"
    fresh.mkdir()
    (fresh / OWNER_FILE).write_text("")
    dead = tmp_path / ".tmp-dead"
    dead.mkdir()
    (dead / OWNER_FILE).write_text(_dead_token())
    assert stale_children(tmp_path) == [dead]  # the ownerless fresh folder waits for the one-hour rule
    assert remove_stale(tmp_path) == [dead] and live.exists() and fresh.exists()


def test_a_store_build_folder_names_its_owner(tmp_path) -> None:
    store = ContentStore(root=tmp_path)
    with store.build("train", "k" * 32) as tmp:
        assert token() in tmp.name and not (tmp / OWNER_FILE).exists()  # no marker to be caught mid-write
        assert remove_stale(tmp.parent) == [] and tmp.exists()  # a concurrent sweep keeps it
    assert store.exists("train", "k" * 32)
