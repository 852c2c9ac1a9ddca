"""Canonical config hashing and the on-disk handler cache.

``canonical_hash(obj)`` hashes a config (dicts with sorted keys, tuples as lists, dates normalised to ISO
strings, numpy scalars as Python numbers, processor/loader instances as class + public attributes), so
equal configs written differently get the same key.

The handler cache stores the processed frames of a :class:`~qlib_prefect.data.handler.DataHandlerLP`
(``raw``/``infer``/``learn``) and its fitted processors under ``$QLIB_PREFECT_HOME/handler_cache/<key>/``:
one ``.npy`` value matrix per frame (loaded memory-mapped), index codes, and ``meta.json``. The key is
``canonical_hash`` of the handler spec (class, instruments, dates, loader config, processor configs,
process type), the provider's ``fingerprint()``, the package version and a hash of the ``qlib_prefect.data``
source files. Entries are written to a temporary folder and renamed into place; an entry that fails to load
(missing/truncated file, bad metadata, checksum mismatch) is deleted and rebuilt.

Opt out per handler with ``cache=False`` (or ``setup_data(enable_cache=False)``), or globally with
``QLIB_PREFECT_HANDLER_CACHE=0``.

Example:
    >>> canonical_hash({"b": 1, "a": "2020-01-01"}) == canonical_hash({"a": pd.Timestamp("2020-01-01"), "b": 1})
    True
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import threading
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.config.hashing import canonical_hash, canonical_json, describe

# one implementation of canonical hashing lives in the config layer (below ``data``); re-exported here
from qlib_prefect.utils import tempdirs
from qlib_prefect.utils.owner import remove_stale
from qlib_prefect.utils.owner import token as owner_token

__all__ = [
    "ENV_DISABLE",
    "FrameWriter",
    "cache_enabled",
    "canonical_hash",
    "canonical_json",
    "clear_handler_cache",
    "code_fingerprint",
    "commit_entry",
    "describe",
    "discard_entry_dir",
    "handler_cache_dir",
    "handler_key",
    "load_handler",
    "load_raw_frame",
    "new_entry_dir",
    "raw_cache_dir",
    "raw_key",
    "store_handler",
    "store_handler_async",
    "store_raw_frame",
    "wait_for_pending_writes",
]

logger = logging.getLogger(__name__)

#: environment variable; ``0``/``false``/``off``/``no`` disables the handler cache
ENV_DISABLE = "QLIB_PREFECT_HANDLER_CACHE"
_FORMAT = 3  # 2: values in Fortran order; 3: CRC over the whole value matrix


_CODE_FP: str | None = None


def code_fingerprint() -> str:
    """Hash of the ``qlib_prefect.data`` sources (so code changes never reuse stale cached frames)."""
    global _CODE_FP
    if _CODE_FP is None:
        from qlib_prefect._version import source_hash

        _CODE_FP = source_hash(Path(__file__).resolve().parent)[:16]
    return _CODE_FP


# ------------------------------------------------------------------------------------- handler cache
def cache_enabled(flag: bool | None = None) -> bool:
    """``flag`` if given, else on unless ``QLIB_PREFECT_HANDLER_CACHE`` is 0/false/off/no."""
    if flag is not None:
        return bool(flag)
    from qlib_prefect.config.settings import get_settings

    return get_settings().handler_cache


def handler_cache_dir() -> Path:
    from qlib_prefect.config.settings import home_dir

    d = home_dir() / "handler_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def clear_handler_cache() -> int:
    """Delete every handler cache entry; returns how many were removed."""
    d = handler_cache_dir()
    n = 0
    for p in d.iterdir():
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def handler_key(handler: Any, init_type: str) -> str | None:
    """The cache key of ``handler`` built with ``init_type`` (None if it cannot be cached)."""
    spec = handler.cache_spec(init_type)
    if spec is None:
        return None
    from qlib_prefect._version import __version__
    from qlib_prefect.data.registry import get_provider

    try:
        fp = get_provider().fingerprint()
    except Exception as e:  # no provider / no fingerprint: build without cache
        logger.debug("handler cache off: no provider fingerprint (%s)", e)
        return None
    try:
        return canonical_hash({"spec": spec, "provider": fp, "version": __version__, "code": code_fingerprint(),
                               "format": _FORMAT})
    except TypeError:
        return None


_CRC_BLOCK = 8 << 20


def _crc(arr: np.ndarray) -> int:
    """CRC32 of all of an array's bytes (about 0.2 s per 400 MB with a warm page cache: Alpha158 on 500
    instruments x 5 years); a corrupted byte anywhere is a cache miss. A memory-mapped array is read through its
    file in blocks, so checking it does not make its mapped pages resident in this process (the frames served
    from the map fault in only what is used)."""
    if isinstance(arr, np.memmap) and arr.filename and (arr.flags.c_contiguous or arr.flags.f_contiguous):
        crc, left = 0, int(arr.nbytes)
        buf = memoryview(bytearray(min(_CRC_BLOCK, max(left, 1))))
        with open(arr.filename, "rb") as f:
            f.seek(int(arr.offset))
            while left:
                n = f.readinto(buf[: min(len(buf), left)])
                if not n:
                    raise ValueError(f"{arr.filename}: shorter than its header says")
                crc = zlib.crc32(buf[:n], crc)
                left -= n
        return crc
    flat = np.ascontiguousarray(np.asarray(arr).reshape(-1, order="A")).view(np.uint8)
    return zlib.crc32(flat)


def _save_frame(folder: Path, name: str, df: pd.DataFrame) -> dict:
    if df.shape[1] and df.dtypes.nunique() != 1:
        raise TypeError("mixed dtypes")
    dtype = df.dtypes.iloc[0] if df.shape[1] else np.dtype(np.float32)
    if not isinstance(dtype, np.dtype) or dtype.kind not in "fiub":
        raise TypeError(f"unsupported dtype {dtype}")
    # column by column into a Fortran-order .npy (pandas keeps a frame's columns contiguous, so nothing is copied
    # or transposed), with plain file writes: no writable memory map, whose pages would count in the RSS
    # the checksum is taken of the bytes as they are written (the file's data in order): no read-back
    path = folder / f"{name}.values.npy"
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": True, "shape": tuple(df.shape)}
    crc = 0
    with path.open("wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for j in range(df.shape[1]):
            col = np.ascontiguousarray(df.iloc[:, j].to_numpy(dtype=dtype)).data
            f.write(col)
            crc = zlib.crc32(col, crc)
    return {"shape": list(df.shape), "dtype": str(dtype), "crc": crc, **_index_meta(folder, name, df.index, df.columns)}


def _index_meta(folder: Path, name: str, idx: pd.MultiIndex, cols: pd.Index) -> dict:
    """Write a frame's index codes next to its values; the index/column part of its metadata."""
    if not isinstance(idx, pd.MultiIndex) or idx.nlevels != 2:
        raise TypeError("index must have two levels")
    lv0, lv1 = idx.levels
    if not isinstance(lv0, pd.DatetimeIndex):
        raise TypeError("first index level must be datetime")
    c0 = np.asarray(idx.codes[0], dtype=np.int32)
    c1 = np.asarray(idx.codes[1], dtype=np.int32)
    np.save(folder / f"{name}.dates.npy", lv0.asi8)
    np.save(folder / f"{name}.codes0.npy", c0)
    np.save(folder / f"{name}.codes1.npy", c1)
    return {
        "crc_codes": zlib.crc32(c1.tobytes(), zlib.crc32(c0.tobytes())),
        "date_unit": lv0.unit,
        "level1": [str(v) for v in lv1],
        "level1_dtype": str(lv1.dtype),
        "index_names": list(idx.names),
        "columns": [list(map(str, c)) if isinstance(c, tuple) else str(c) for c in cols],
        "column_names": list(cols.names),
        "column_multi": isinstance(cols, pd.MultiIndex),
    }


class FrameWriter:
    """A cache frame written column range by column range (the chunked build's output): a Fortran-order
    ``.npy`` of a known shape filled with plain positional writes (no writable memory map, whose dirty pages
    would count in the RSS), then :meth:`finish` with the index and columns. Columns written in file order
    (0, 1, 2, ...) are checksummed as they are written; otherwise :meth:`finish` reads the file back."""

    def __init__(self, *, folder: Path, name: str, shape: tuple[int, int], dtype: Any = np.float32) -> None:
        self.folder, self.name, self.shape, self.dtype = folder, name, tuple(shape), np.dtype(dtype)
        self.path = folder / f"{name}.values.npy"
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": True, "shape": self.shape}
        with self.path.open("wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            self.offset = f.tell()
            f.truncate(self.offset + self.shape[0] * self.shape[1] * self.dtype.itemsize)
        self._crc: int | None = 0  # running CRC32 while columns arrive in file order, None once one does not
        self._next = 0

    def write_column(self, j: int, values: np.ndarray) -> None:
        """Write one column (``rows`` values) at position ``j``."""
        if values.shape != (self.shape[0],) or not 0 <= j < self.shape[1]:
            raise ValueError(f"{self.name}: column {values.shape} at {j} does not fit {self.shape}")
        data = np.ascontiguousarray(values, dtype=self.dtype).data
        with self.path.open("r+b") as f:
            f.seek(self.offset + j * self.shape[0] * self.dtype.itemsize)
            f.write(data)
        if self._crc is not None and j == self._next:
            self._crc, self._next = zlib.crc32(data, self._crc), j + 1
        else:
            self._crc = None

    def write(self, j0: int, values: np.ndarray) -> None:
        """Write ``values`` (rows x k) as the columns ``j0 .. j0 + k - 1``."""
        if values.shape[0] != self.shape[0] or j0 + values.shape[1] > self.shape[1]:
            raise ValueError(f"{self.name}: block {values.shape} at column {j0} does not fit {self.shape}")
        for j in range(values.shape[1]):
            self.write_column(j0 + j, values[:, j])

    def finish(self, index: pd.MultiIndex, columns: pd.Index) -> dict:
        """The frame's metadata (checksums included), once every column is written."""
        if self._crc is not None and self._next == self.shape[1]:
            crc = self._crc
        else:
            values = np.load(self.path, mmap_mode="r")
            crc = _crc(values)
            del values
        meta = {"shape": list(self.shape), "dtype": str(self.dtype), "crc": crc}
        return {**meta, **_index_meta(self.folder, self.name, index, columns)}


def new_entry_dir(key: str) -> Path:
    """A temporary folder for the handler cache entry ``key`` (commit it with :func:`commit_entry`)."""
    root = handler_cache_dir()
    remove_stale(root)
    tmp = root / f".tmp-{key[:16]}-{owner_token()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    tempdirs.register(tmp)
    return tmp


def commit_entry(key: str, tmp: Path, frames: dict[str, dict], handler: Any) -> None:
    """Write ``handler``'s processors and the metadata into ``tmp`` and rename it to the entry ``key``."""
    final = handler_cache_dir() / key
    try:
        with (tmp / "processors.pkl").open("wb") as f:
            pickle.dump({k: getattr(handler, k) for k in ("infer_processors", "learn_processors", "shared_processors")},
                        f, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {"format": _FORMAT, "key": key, "frames": frames, "handler": type(handler).__qualname__}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if not (final / "meta.json").exists():
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        discard_entry_dir(tmp)


def discard_entry_dir(tmp: Path) -> None:
    """Remove a temporary entry folder (nothing half-written stays behind)."""
    tempdirs.release(tmp)
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)


def _load_frame(folder: Path, name: str, meta: dict, verify: bool = True) -> pd.DataFrame:
    values = np.load(folder / f"{name}.values.npy", mmap_mode="r")
    if list(values.shape) != meta["shape"] or str(values.dtype) != meta["dtype"]:
        raise ValueError(f"{name}: shape/dtype mismatch")
    if verify and _crc(values) != meta["crc"]:
        raise ValueError(f"{name}: checksum mismatch")
    dates = np.load(folder / f"{name}.dates.npy")
    c0 = np.load(folder / f"{name}.codes0.npy")
    c1 = np.load(folder / f"{name}.codes1.npy")
    if len(c0) != values.shape[0] or len(c1) != values.shape[0]:
        raise ValueError(f"{name}: index length mismatch")
    if zlib.crc32(c1.tobytes(), zlib.crc32(c0.tobytes())) != meta["crc_codes"]:
        raise ValueError(f"{name}: index checksum mismatch")
    lv0 = pd.DatetimeIndex(dates.view(f"M8[{meta['date_unit']}]"))
    lv1 = pd.Index(meta["level1"], dtype=meta["level1_dtype"])
    index = pd.MultiIndex(levels=[lv0, lv1], codes=[c0, c1], names=meta["index_names"], verify_integrity=False)
    if meta["column_multi"]:
        columns: pd.Index = pd.MultiIndex.from_tuples([tuple(c) for c in meta["columns"]], names=meta["column_names"])
    else:
        columns = pd.Index(meta["columns"], name=meta["column_names"][0])
    return pd.DataFrame(values, index=index, columns=columns, copy=False)


#: entries larger than this are written by a background thread (the build returns at once)
ASYNC_WRITE_BYTES = 128 << 20
_pending: list[threading.Thread] = []


def wait_for_pending_writes(timeout: float | None = None) -> None:
    """Block until background cache writes have finished (they also finish before the interpreter exits)."""
    for t in list(_pending):
        t.join(timeout)
        if not t.is_alive():
            _pending.remove(t)


def store_handler_async(key: str, handler: Any) -> None:
    """:func:`store_handler`, in a background (non-daemon) thread when the frames are large.

    Frames are never modified in place, so writing them while the caller uses the handler is safe.
    """
    frames = [getattr(handler, a, None) for a in handler.ATTR_MAP.values()]
    nbytes = sum(int(f.memory_usage(index=False, deep=False).sum()) for f in frames if f is not None)
    if nbytes < ASYNC_WRITE_BYTES:
        store_handler(key, handler)
        return
    t = threading.Thread(target=store_handler, args=(key, handler), kwargs={"adopt": True},
                         name=f"handler-cache-{key}", daemon=False)
    t.start()
    _pending.append(t)


def _wait_for_pending_write(key: str) -> None:
    """Wait for this process' background write of ``key``, if one runs: an entry being written is about to be a
    hit, and building the same frames again meanwhile would only cost time and memory."""
    for t in list(_pending):
        if t.name == f"handler-cache-{key}":
            t.join()


def store_handler(key: str, handler: Any, *, adopt: bool = False) -> bool:
    """Write ``handler``'s frames and processors under ``key`` (atomically). Returns success.

    ``adopt``: then swap the handler's in-memory frames for the stored, memory-mapped ones (equal values and
    index; frames are never modified in place), so their anonymous memory is freed and only the pages a later
    step reads come back, from the page cache (what a warm-cache build gets).
    """
    root = handler_cache_dir()
    final = root / key
    remove_stale(root)  # temp folders of killed writers
    tmp = root / f".tmp-{key[:16]}-{owner_token()}-{uuid.uuid4().hex[:8]}"  # the owner: for `qlib-prefect gc`
    written: dict[str, pd.DataFrame] = {}
    try:
        tmp.mkdir(parents=True)
        tempdirs.register(tmp)
        frames: dict[str, dict] = {}
        seen: dict[int, str] = {}
        for dk, attr in handler.ATTR_MAP.items():
            df = getattr(handler, attr, None)
            if df is None:
                continue
            if id(df) in seen:
                frames[dk] = {"alias": seen[id(df)]}
                continue
            frames[dk] = _save_frame(tmp, dk, df)
            seen[id(df)] = dk
            written[dk] = df
        with (tmp / "processors.pkl").open("wb") as f:
            pickle.dump(
                {k: getattr(handler, k) for k in ("infer_processors", "learn_processors", "shared_processors")},
                f,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        meta = {"format": _FORMAT, "key": key, "frames": frames, "handler": type(handler).__qualname__}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if not (final / "meta.json").exists():  # else another process stored the same entry meanwhile
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        if adopt:
            _adopt(final, handler, written)
        return True
    except (TypeError, OSError, pickle.PicklingError) as e:
        logger.info("handler cache: entry %s not stored (%s)", key[:12], e)
        return False
    finally:
        tempdirs.release(tmp)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _adopt(folder: Path, handler: Any, written: dict[str, pd.DataFrame]) -> None:
    """Point ``handler``'s attributes that still hold a frame of ``written`` to the memory-mapped copy in
    ``folder`` (same data key, or its alias); anything unexpected leaves the in-memory frames in place."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        by_id = {id(df): _load_frame(folder, dk, meta["frames"][dk]) for dk, df in written.items()}
        for attr in handler.ATTR_MAP.values():
            new = by_id.get(id(getattr(handler, attr, None)))
            if new is not None:
                setattr(handler, attr, new)
    except Exception as e:  # the in-memory frames stay; only memory is at stake
        logger.info("handler cache: frames of %s kept in memory (%s)", folder.name[:12], e)


def load_handler(key: str, handler: Any, *, verify: bool = True) -> bool:
    """Fill ``handler`` from the cache entry ``key``; False (entry removed if broken) on a miss.

    ``verify=False`` skips the value checksums (for an entry this process has just written)."""
    folder = handler_cache_dir() / key
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        _wait_for_pending_write(key)
    if not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT or meta.get("key") != key:
            raise ValueError("format/key mismatch")
        loaded: dict[str, pd.DataFrame] = {}
        for dk, fm in meta["frames"].items():
            if "alias" not in fm:
                loaded[dk] = _load_frame(folder, dk, fm, verify)
        for dk, fm in meta["frames"].items():
            if "alias" in fm:
                loaded[dk] = loaded[fm["alias"]]
        with (folder / "processors.pkl").open("rb") as f:
            procs = pickle.load(f)
    except Exception as e:  # any broken entry is dropped and rebuilt
        logger.warning("handler cache: ignoring broken entry %s (%s); rebuilding", key[:12], e)
        shutil.rmtree(folder, ignore_errors=True)
        return False
    for dk, attr in handler.ATTR_MAP.items():
        if dk in loaded:
            setattr(handler, attr, loaded[dk])
    for k, v in procs.items():
        setattr(handler, k, v)
    return True


# ------------------------------------------------------------------------------------- raw-frame cache
def raw_cache_dir() -> Path:
    """``$QLIB_PREFECT_HOME/raw_cache``: loader outputs (raw features + label, before processors) shared by the
    windows of a rolling job."""
    from qlib_prefect.config.settings import home_dir

    d = home_dir() / "raw_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def raw_key(spec: dict[str, Any], end: Any, fingerprint: str) -> str:
    """Key of a raw frame: the loader spec, the span end, the data fingerprint, the package version and the data
    layer's source hash (raw features depend on the data layer only, as in the handler cache key)."""
    from qlib_prefect._version import __version__

    return canonical_hash({"raw": spec, "end": end, "fp": fingerprint, "version": __version__,
                           "code": code_fingerprint()})


def load_raw_frame(key: str) -> pd.DataFrame | None:
    """The raw frame stored under ``key`` (memory-mapped values), or None on a miss (a broken entry is removed)."""
    folder = raw_cache_dir() / key
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return _load_frame(folder, "raw", meta)
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt entry: rebuild
        logger.warning("raw cache entry %s unreadable (%s); rebuilding", key[:12], e)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def store_raw_frame(key: str, df: pd.DataFrame) -> bool:
    """Store ``df`` under ``key`` (temp folder renamed into place; a concurrent writer may win). False when the
    frame is not storable in the cache format (mixed dtypes): it is then only kept in memory by the caller."""
    root = raw_cache_dir()
    tmp = root / f".tmp-{key[:12]}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = _save_frame(tmp, "raw", df)
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        try:
            tmp.rename(root / key)
        except OSError:  # a concurrent writer won
            shutil.rmtree(tmp, ignore_errors=True)
        return True
    except TypeError as e:
        logger.info("raw cache: not stored (%s)", e)
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
