"""Content-addressed store of stage results: ``$QLIB_PREFECT_HOME/store/<stage>/<key>/``.

An entry is a directory holding ``artifacts/`` (files under their qlib artifact paths, e.g. ``pred.pkl``,
``sig_analysis/ic.pkl``), ``metrics.json`` (``[[name, value, step], ...]``), ``params.json``, ``tags.json`` and
``meta.json``. It is built in a temporary sibling directory and renamed into place; the marker file
``_COMPLETE`` is written last, so an interrupted or failed stage never leaves an entry a later run could take
for done. Incomplete directories are ignored (and replaced on the next build).

Before ``_COMPLETE`` the build writes ``manifest.json`` (every file's path, size and CRC32). An entry is served
(:meth:`ContentStore.exists` / :meth:`~ContentStore.get`) only while its files match the manifest: a deleted,
truncated or edited file makes the entry a cache miss -- it is deleted and its stage recomputes -- never an
incomplete published run. CRCs are checked once per process while the files' (size, mtime, ctime) stay the
same, on every use with settings ``verify_content``. Temporary folders carry the token of the building
process in their name (:mod:`qlib_prefect.utils.owner`), so ``qlib-prefect gc`` removes only those of dead processes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qlib_prefect.utils import tempdirs
from qlib_prefect.utils.owner import remove_stale
from qlib_prefect.utils.owner import token as owner_token

__all__ = ["COMPLETE_MARKER", "MANIFEST", "ContentStore", "StoreEntry", "file_crc"]

COMPLETE_MARKER = "_COMPLETE"
MANIFEST = "manifest.json"
ARTIFACTS = "artifacts"
log = logging.getLogger(__name__)
_verified: dict[str, tuple] = {}  # entry path -> stat stamp of its files when their CRCs last matched
_verified_lock = threading.Lock()


def file_crc(path: Path) -> int:
    """CRC32 of a file's bytes (read in 8 MiB blocks)."""
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def _entry_files(folder: Path) -> list[Path]:
    skip = {COMPLETE_MARKER, MANIFEST}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skip)


class StoreEntry:
    """Read access to one complete entry (or a directory being built)."""

    def __init__(self, *, path: Path, stage: str, key: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.key = key

    def __repr__(self) -> str:
        return f"StoreEntry({self.stage}/{self.key[:12]} at {self.path})"

    @property
    def artifact_dir(self) -> Path:
        return self.path / ARTIFACTS

    def _json(self, name: str, default: Any) -> Any:
        p = self.path / name
        if not p.exists():
            return default
        return json.loads(p.read_text(encoding="utf-8"))

    def metrics(self) -> list[list[Any]]:
        """``[[name, value, step], ...]`` in logging order."""
        return self._json("metrics.json", [])

    def params(self) -> dict[str, str]:
        return self._json("params.json", {})

    def tags(self) -> dict[str, str]:
        return self._json("tags.json", {})

    def meta(self) -> dict[str, Any]:
        return self._json("meta.json", {})

    def artifact_files(self) -> list[str]:
        """All artifact paths (``/``-separated, relative to the artifact root), sorted."""
        root = self.artifact_dir
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class ContentStore:
    """Stage results keyed by ``(stage, key)`` under ``root`` (default ``$QLIB_PREFECT_HOME/store``).

    Example:
        >>> store = ContentStore(root="/tmp/qp-store")  # doctest: +SKIP
        >>> with store.build("train", key) as tmp:  # doctest: +SKIP
        ...     (tmp / "artifacts").mkdir(); ...
        >>> store.get("train", key).artifact_files()  # doctest: +SKIP
    """

    def __init__(self, *, root: str | Path | None = None) -> None:
        if root is None:
            from qlib_prefect.config.settings import home_dir

            root = home_dir() / "store"
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"ContentStore({self.root})"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def exists(self, stage: str, key: str) -> bool:
        """True only for a complete entry whose files match its manifest (a damaged entry is deleted)."""
        path = self.path(stage, key)
        if not (path / COMPLETE_MARKER).is_file():
            return False
        problem = _manifest_problem(path)
        if problem is None:
            return True
        log.warning("content store: entry %s/%s is damaged (%s); it is recomputed", stage, key[:16], problem)
        self.delete(stage, key)
        return False

    def get(self, stage: str, key: str) -> StoreEntry | None:
        return StoreEntry(path=self.path(stage, key), stage=stage, key=key) if self.exists(stage, key) else None

    def require(self, stage: str, key: str) -> StoreEntry:
        entry = self.get(stage, key)
        if entry is None:
            from qlib_prefect.errors import RecorderError

            raise RecorderError(
                f"content store: no complete entry for stage {stage!r} key {key[:16]} under {self.root}; "
                "re-run the workflow (with --refresh if Prefect still reports it as cached)"
            )
        return entry

    @contextmanager
    def build(self, stage: str, key: str, meta: dict[str, Any] | None = None, *,
              overwrite: bool = False) -> Iterator[Path]:
        """Yield a fresh temporary directory; on success it becomes the entry ``(stage, key)`` atomically.

        An existing complete entry is kept (a concurrent builder won) unless ``overwrite`` (``--refresh``).
        On an exception the temporary directory is removed and the exception propagates (nothing is stored).
        """
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(final.parent)  # temp folders of killed builders
        # the owner's token in the name: a concurrent sweep (stale_children) never takes it for a killed builder's
        tmp = final.parent / f".tmp-{key[:16]}-{owner_token()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        tempdirs.register(tmp)
        (tmp / ARTIFACTS).mkdir()
        try:
            yield tmp
            info = {"stage": stage, "key": key, "created": time.time(), **(meta or {})}
            (tmp / "meta.json").write_text(json.dumps(info, default=str, indent=1), encoding="utf-8")
            files = {p.relative_to(tmp).as_posix(): [p.stat().st_size, file_crc(p)] for p in _entry_files(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(files, indent=0), encoding="utf-8")
            (tmp / COMPLETE_MARKER).write_text(key, encoding="utf-8")  # last file written
            if final.exists():  # an incomplete leftover or a concurrent builder's complete entry
                if (final / COMPLETE_MARKER).is_file() and not overwrite:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return
                old = final.parent / f".old-{key[:16]}-{uuid.uuid4().hex[:8]}"
                os.replace(final, old)
                shutil.rmtree(old, ignore_errors=True)
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / COMPLETE_MARKER).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            tempdirs.release(tmp)

    def delete(self, stage: str, key: str) -> None:
        """Remove an entry (marker first, so a concurrent reader never sees half an entry as complete)."""
        p = self.path(stage, key)
        try:
            (p / COMPLETE_MARKER).unlink()
        except FileNotFoundError:
            pass
        shutil.rmtree(p, ignore_errors=True)


def _manifest_problem(path: Path) -> str | None:
    """Why the entry at ``path`` does not match its manifest, or ``None`` when it does."""
    from qlib_prefect.config.settings import get_settings

    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no manifest (written by an older version)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    files = {p.relative_to(path).as_posix(): p for p in _entry_files(path)}
    if set(files) != set(manifest):
        missing, extra = sorted(set(manifest) - set(files)), sorted(set(files) - set(manifest))
        return f"missing files {missing[:5]}" if missing else f"unexpected files {extra[:5]}"
    stamp = []
    for rel, p in sorted(files.items()):
        st = p.stat()
        if st.st_size != manifest[rel][0]:
            return f"{rel}: size {st.st_size} != {manifest[rel][0]}"
        stamp.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    key = str(path)
    stamp_t = tuple(stamp)
    if not get_settings().verify_content:
        with _verified_lock:
            if _verified.get(key) == stamp_t:
                return None
    for rel, p in files.items():
        if file_crc(p) != manifest[rel][1]:
            return f"{rel}: checksum mismatch"
    with _verified_lock:
        _verified[key] = stamp_t
    return None
