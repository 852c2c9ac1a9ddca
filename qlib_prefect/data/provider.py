""":class:`LocalProvider`: the :class:`~qlib_prefect.data.base.Provider` over a qlib-format directory.

Fields are read with one ``read`` per (instrument, field) file straight into a preallocated
(dates x instruments) float32 panel; loaded panels are kept in a small in-memory LRU keyed by
``(field, codes)``. The LRU and the calendar/instrument caches are dropped automatically when the
calendar file changes (an append), or explicitly with :meth:`LocalProvider.refresh`. A feature file holding values
past the calendar is damage (:class:`~qlib_prefect.errors.DataFormatError`), except while an append is under way
or after the calendar this provider read (an append's tail, written before its calendar): those values are not
read, so a reader sees the directory as before the append.

:func:`fingerprint_dir` hashes every calendar, instrument and feature file; per-file hashes are cached
in a manifest keyed by ``(path, size, mtime_ns, ctime_ns, inode)`` (in memory and under
``$QLIB_PREFECT_HOME/fingerprints/``), so calling it again only stats the files. The ctime cannot be set back
by a user (``touch``/``os.utime`` restore only the mtime), so an in-place edit that keeps size and mtime is seen.
``QLIB_PREFECT_VERIFY_CONTENT=1`` (settings ``verify_content``) hashes every file in full on every call.

Example:
    >>> p = LocalProvider("~/.qlib/qlib_data/cn_data")  # doctest: +SKIP
    >>> p.load_field("close", ["SH600000"]).values.shape  # doctest: +SKIP
    (5000, 1)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.data.base import FieldData, Spans
from qlib_prefect.data.storage import (
    append_pending,
    atomic_write_text,
    calendar_path,
    code_to_fname,
    decode_bin,
    list_codes,
    list_fields,
    list_markets,
    read_calendar,
    read_instruments,
)
from qlib_prefect.errors import DataFormatError

__all__ = ["LocalProvider", "fingerprint_dir", "fingerprint_until"]


class LocalProvider:
    """Read-only provider over a qlib data directory (``calendars/``, ``instruments/``, ``features/``).

    Args:
        path: the data directory (qlib's ``provider_uri``); ``~`` is expanded.
        freq: calendar / feature frequency suffix (``day``).
        cache_size: at most this many loaded ``(field, codes)`` panels are kept in memory ...
        cache_bytes: ... and at most this many bytes of them (default 1 GiB; 0 disables the cache).
    """

    def __init__(
        self, path: str | Path, *, freq: str = "day", cache_size: int = 64, cache_bytes: int = 1 << 30
    ) -> None:
        self.path = Path(path).expanduser()
        self.freq = freq
        self.cache_size = int(cache_size)
        self.cache_bytes = int(cache_bytes)
        self._lock = threading.RLock()
        self._cal: dict[bool, pd.DatetimeIndex] = {}
        self._inst: dict[str, Spans] = {}
        self._fields: set[str] | None = None
        self._lru: OrderedDict[tuple[str, tuple[str, ...]], FieldData] = OrderedDict()
        self._stamp: tuple | None = None

    def __repr__(self) -> str:
        return f"LocalProvider({str(self.path)!r})"

    # ------------------------------------------------------------------ cache control
    def refresh(self) -> None:
        """Forget every cached calendar, instrument list and field panel."""
        with self._lock:
            self._cal.clear()
            self._inst.clear()
            self._fields = None
            self._lru.clear()
            self._stamp = None

    def _calendar_stamp(self) -> tuple | None:
        try:
            st = calendar_path(self.path, self.freq).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    def _check_stamp(self) -> None:
        stamp = self._calendar_stamp()
        if stamp != self._stamp:
            self.refresh()
            self._stamp = stamp

    # ------------------------------------------------------------------ Provider protocol
    def calendar(self, future: bool = False) -> pd.DatetimeIndex:
        """All trading dates (``future=True``: ``day_future.txt`` when present)."""
        with self._lock:
            self._check_stamp()
            if future not in self._cal:
                if not self.path.is_dir():
                    raise DataFormatError(f"{self.path}: data directory not found")
                self._cal[future] = read_calendar(self.path, self.freq, future)
            return self._cal[future]

    def markets(self) -> list[str]:
        """Available market names (``instruments/*.txt``)."""
        return list_markets(self.path)

    def instruments(self, market: str = "all") -> Spans:
        """``{code: [(start, end), ...]}`` as written in ``instruments/<market>.txt``."""
        cal = self.calendar()
        with self._lock:
            key = market.lower()
            if key not in self._inst:
                self._inst[key] = read_instruments(self.path, key, cal)
            return {k: list(v) for k, v in self._inst[key].items()}

    def fields(self) -> set[str]:
        """Names of the fields stored for at least one instrument (``{'open', 'close', ...}``)."""
        with self._lock:
            self._check_stamp()
            if self._fields is None:
                self._fields = list_fields(self.path, self.freq)
            return set(self._fields)

    def codes(self) -> list[str]:
        """Instrument codes that have a feature directory (lower-case, as on disk)."""
        return list_codes(self.path)

    def load_field(self, field: str, codes: Sequence[str]) -> FieldData:
        """One field for ``codes`` on the full calendar (NaN outside each file's stored span)."""
        name = str(field).lower().lstrip("$")
        key = (name, tuple(str(c) for c in codes))
        cal = self.calendar()
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                return FieldData(hit.values.copy(), hit.start.copy(), hit.end.copy())
        fd = self._read_field(name, key[1], len(cal))
        if fd.values.nbytes > self.cache_bytes or self.cache_size <= 0:
            return fd
        with self._lock:
            self._lru[key] = fd
            self._lru.move_to_end(key)
            used = sum(v.values.nbytes for v in self._lru.values())
            while len(self._lru) > self.cache_size or used > self.cache_bytes:
                _, old = self._lru.popitem(last=False)
                used -= old.values.nbytes
        return FieldData(fd.values.copy(), fd.start.copy(), fd.end.copy())

    def _read_field(self, name: str, codes: tuple[str, ...], n: int) -> FieldData:
        k = len(codes)
        values = np.full((n, k), np.nan, dtype=np.float32)
        start = np.full(k, n, dtype=np.int64)
        end = np.full(k, -1, dtype=np.int64)
        base = os.path.join(str(self.path), "features")
        fname = f"{name}.{self.freq}.bin"
        clip: bool | None = None
        for j, code in enumerate(codes):
            path = os.path.join(base, code_to_fname(code), fname)
            try:
                with open(path, "rb") as fp:
                    raw = fp.read()
            except FileNotFoundError:
                continue
            s, arr = decode_bin(path, raw, None)
            if s + len(arr) > n:  # past the calendar: an append's tail (under way, or after our calendar) or damage
                if clip is None:
                    clip = append_pending(self.path) or self._calendar_stamp() != self._stamp
                if not clip:
                    decode_bin(path, raw, n)  # raises, naming the file
                arr = arr[: max(n - s, 0)]
            m = len(arr)
            if m == 0:
                continue
            values[s : s + m, j] = arr
            start[j] = s
            end[j] = s + m - 1
        return FieldData(values, start, end)

    def fingerprint(self, until: Any = None) -> str:
        """Short hex digest of all calendar, instrument and feature file contents.

        ``until`` (a date): digest of only what a computation reading dates ``<= until`` sees (the calendar
        prefix, instrument spans clipped to it, each feature file's values up to it); unchanged when data is
        appended after ``until`` (see :func:`fingerprint_until`).
        """
        if until is None:
            return fingerprint_dir(self.path)
        return fingerprint_until(self.path, until, freq=self.freq)


# ---------------------------------------------------------------------------------------------- fingerprint
_MANIFESTS: dict[str, dict[str, list]] = {}
_MLOCK = threading.Lock()


def _manifest_file(root: str) -> Path | None:
    try:
        from qlib_prefect.config.settings import home_dir

        d = home_dir() / "fingerprints"
    except Exception:
        return None
    return d / (hashlib.blake2b(root.encode(), digest_size=8).hexdigest() + ".json")


def _scan(root: str) -> list[tuple[str, os.stat_result]]:
    out: list[tuple[str, os.stat_result]] = []
    for sub in ("calendars", "instruments"):
        d = os.path.join(root, sub)
        if os.path.isdir(d):
            out.extend((f"{sub}/{e.name}", e.stat()) for e in os.scandir(d) if e.is_file() and e.name.endswith(".txt"))
    fd = os.path.join(root, "features")
    if os.path.isdir(fd):
        for e in os.scandir(fd):
            if e.is_dir():
                out.extend(
                    (f"features/{e.name}/{f.name}", f.stat())
                    for f in os.scandir(e.path)
                    if f.is_file() and f.name.endswith(".bin")
                )
    out.sort(key=lambda t: t[0])
    return out


def _verify_content() -> bool:
    from qlib_prefect.config.settings import get_settings

    return get_settings().verify_content


def fingerprint_dir(path: str | Path) -> str:
    """A 16-hex-digit content fingerprint of a qlib data directory.

    Covers ``calendars/*.txt``, ``instruments/*.txt`` and ``features/*/*.bin`` (names and bytes); any
    change (e.g. an appended date) changes it. Per-file hashes are reused while a file's
    ``(size, mtime_ns, ctime_ns, inode)`` is unchanged (never with settings ``verify_content``).
    """
    root = str(Path(path).expanduser().resolve())
    verify = _verify_content()
    if not os.path.isdir(root):
        raise DataFormatError(f"{root}: data directory not found")
    with _MLOCK:
        manifest = _MANIFESTS.get(root)
        mfile = _manifest_file(root)
        if manifest is None:
            manifest = {}
            if mfile is not None and mfile.exists():
                try:
                    manifest = json.loads(mfile.read_text())
                except (OSError, ValueError):
                    manifest = {}
        entries = _scan(root)
        new: dict[str, list] = {}
        changed = False
        total = hashlib.blake2b(digest_size=16)
        for rel, st in entries:
            key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            old = manifest.get(rel)
            if not verify and old is not None and old[:4] == key:
                h = old[4]
            else:
                with open(os.path.join(root, rel), "rb") as fp:
                    h = hashlib.blake2b(fp.read(), digest_size=16).hexdigest()
                changed = True
            new[rel] = [*key, h]
            total.update(rel.encode())
            total.update(b"\0")
            total.update(h.encode())
            total.update(b"\n")
        if len(new) != len(manifest):
            changed = True
        _MANIFESTS[root] = new
        if changed and mfile is not None:
            try:
                atomic_write_text(mfile, json.dumps(new))
            except OSError:
                pass
    return total.hexdigest()[:16]



_PREFIX_HASHES: dict[tuple, str] = {}


def fingerprint_until(path: str | Path, until: Any, *, freq: str = "day") -> str:
    """A 16-hex-digit fingerprint of the part of a qlib data directory dated ``<= until``.

    Covers the normal calendar's dates up to ``until``, every market's instrument spans that start by
    ``until`` (ends clipped to it) and, per feature file starting by ``until``, its name, start index and the
    values up to ``until``. Appending dates (calendar, values, instrument ends) after ``until`` or adding an
    instrument whose data starts after it leaves the digest unchanged; any change at or before ``until``
    changes it. Per-file prefix hashes are reused while a file's ``(size, mtime_ns, ctime_ns, inode)`` is
    unchanged (never with settings ``verify_content``).
    """
    root = str(Path(path).expanduser().resolve())
    if not os.path.isdir(root):
        raise DataFormatError(f"{root}: data directory not found")
    try:
        t = pd.Timestamp(until)
    except (TypeError, ValueError):
        raise DataFormatError(f"fingerprint(until={until!r}): not a date") from None
    cal = read_calendar(root, freq, False)
    verify = _verify_content()
    n = int(cal.searchsorted(t, side="right"))  # number of calendar dates <= until
    total = hashlib.blake2b(digest_size=16)
    total.update(f"until-v1\n{freq}\n".encode())
    total.update("\n".join(d.strftime("%Y-%m-%d %H:%M:%S") for d in cal[:n]).encode())
    total.update(b"\n#instruments\n")
    for market in list_markets(root):
        spans = read_instruments(root, market)
        rows = []
        for code in sorted(spans):
            for a, b in spans[code]:
                a, b = pd.Timestamp(a), pd.Timestamp(b)
                if a <= t:
                    rows.append(f"{code}\t{a:%Y-%m-%d}\t{min(b, t):%Y-%m-%d}")
        total.update(f"{market}\n".encode())
        total.update("\n".join(rows).encode())
        total.update(b"\n")
    total.update(b"#features\n")
    suffix = f".{freq}.bin"
    for rel, st in _scan(root):
        if not (rel.startswith("features/") and rel.endswith(suffix)):
            continue
        ck = (root, rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, n)
        h = None if verify else _PREFIX_HASHES.get(ck)
        if h is None:
            with open(os.path.join(root, rel), "rb") as fp:
                head = fp.read(4)
                if len(head) < 4:
                    h = ""
                else:
                    s = decode_bin(os.path.join(root, rel), head, None)[0]
                    need = n - s  # values of dates s .. n-1
                    h = "" if need <= 0 else hashlib.blake2b(head + fp.read(4 * need), digest_size=16).hexdigest()
            with _MLOCK:
                _PREFIX_HASHES[ck] = h
        if h:
            total.update(f"{rel}\0{h}\n".encode())
    return total.hexdigest()[:16]
