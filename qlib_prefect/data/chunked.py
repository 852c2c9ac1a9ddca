"""Out-of-core handler builds: peak memory bounded by a chunk, not by the (dates x instruments x features) panel.

qlib (and the in-memory build of :class:`~qlib_prefect.data.handler.DataHandlerLP`) holds the whole panel, its
processed copies and the expression engine's temporaries at once. The chunked build instead:

1. computes the loader output in **instrument blocks** (every feature uses one instrument's own history, so a
   block's rows equal the same rows of the whole-market computation) and spills each block to a temporary
   column-major file;
2. runs the processors in **column chunks**: each chunk holds every row (all dates x instruments, in the frame's
   ``(datetime, instrument)`` order) of a few feature columns plus the label group, so per-date cross-sectional
   statistics (``CSZScoreNorm``, ``CSRankNorm``, ``CSZFillna``, ``ProcessInf``) and fit-window statistics
   (``ZScoreNorm``, ``RobustZScoreNorm``, ``MinMaxNorm``) are computed on complete columns with the same kernels
   and the same float arithmetic as the in-memory build, and row filters on the label (``DropnaLabel``) drop the
   same rows in every chunk; fitted per-column statistics of the chunks are joined into one fitted processor;
3. streams every chunk's output columns into the handler cache entry (:class:`~qlib_prefect.data.cache.FrameWriter`);
   the handler then serves ``raw``/``infer``/``learn`` from the memory-mapped entry.

Column selectors (``FilterCol``, ``DropCol``) keep in each chunk the chunk's columns of their whole-frame choice; the
frames' columns are found first by running the selectors alone on an empty frame.

The result is bit-identical to the in-memory build (tested). It is used when the cache is on, the processors are
all column-local (the ones named above, ``Fillna``, ``TanhProcess``, ``HashStockFormat``, the column selectors) and
the estimated in-memory peak exceeds ``QLIB_PREFECT_MAX_MEMORY`` (default: half the RAM); otherwise the in-memory
build runs. Block and chunk sizes derive from that cap; a cap below one unit (one instrument's feature panel, or one
column of every row) raises :class:`~qlib_prefect.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError
from qlib_prefect.utils.threads import run_chunks

__all__ = [
    "CHUNK_ENV",
    "build_chunked",
    "chunk_plan",
    "chunk_unit_bytes",
    "chunkable",
    "estimate_inmemory_bytes",
    "loader_unchunkable",
    "resolve_instruments",
]

logger = logging.getLogger(__name__)

CHUNK_ENV = "QLIB_PREFECT_MAX_MEMORY"

#: bytes of working memory per (calendar day x expression) cell of one instrument in the expression engine
#: (float64 panel operands and temporaries: 48, measured on Alpha158), plus the previous block's float32 output
#: while it is spilled (4)
_ENGINE_BYTES_PER_CELL = 52
#: bytes per (row x column) cell of one column chunk in the processors (the chunk, its processed copies, the
#: transposed per-date buffers of the cross-sectional kernels: 40), plus the previous chunk's output frames while
#: they are written (8)
_PROC_BYTES_PER_CELL = 48
#: bytes per (row x column) cell of the in-memory build's peak (engine panels, raw, learn copy; measured 8.4 at
#: 2,000 x 3,000 and 10.6 at 500 x 1,250 on Alpha158)
_INMEM_BYTES_PER_CELL = 12


def _group_names(handler: Any) -> list[str] | None:
    loader = handler.data_loader
    if not getattr(loader, "is_group", False) or "feature" not in loader.fields:
        return None
    return list(loader.fields)


def loader_unchunkable(handler: Any) -> str | None:
    """None when ``handler``'s loader output can be computed in instrument blocks, else the reason."""
    from qlib_prefect.data.loader import QlibDataLoader

    if not isinstance(handler.data_loader, QlibDataLoader):
        return f"loader {type(handler.data_loader).__name__} is not a QlibDataLoader"
    if _group_names(handler) is None:
        return "the loader has no 'feature' column group"
    return None


def chunkable(handler: Any) -> str | None:
    """None when ``handler`` can be built in chunks, else the reason it cannot."""
    from qlib_prefect.data import processor as P

    why = loader_unchunkable(handler)
    if why is not None:
        return why
    local = (P.CSZScoreNorm, P.CSRankNorm, P.CSZFillna, P.ProcessInf, P.Fillna, P.TanhProcess, P.HashStockFormat,
             P.ZScoreNorm, P.RobustZScoreNorm, P.MinMaxNorm, *_selectors())
    for proc in handler.get_all_processors():
        t = type(proc)
        if t in (P.DropnaProcessor, P.DropnaLabel, P.DropnaFeature):
            fg = proc.fields_group
            groups = fg if isinstance(fg, (list, tuple)) else [fg]
            if any(g is None or g == "feature" for g in groups):
                return f"{t.__name__}(fields_group={fg!r}) drops rows by feature values"
        elif t not in local:
            return f"processor {t.__name__} is not known to be column-local"
    return None


def _selectors() -> tuple[type, ...]:
    from qlib_prefect.data import processor as P

    return (P.FilterCol, P.DropCol)


def _frame_columns(handler: Any, columns: pd.Index) -> dict[str, pd.Index]:
    """Each frame's columns (``raw``, ``infer``, ``learn``): the column selectors alone (the other chunkable
    processors keep the columns) run on an empty frame, composed as ``process_data`` composes the processor
    lists (``learn`` after ``shared`` for ``independent``, after ``infer`` for ``append``)."""
    sel = _selectors()
    empty = pd.DataFrame(np.empty((0, len(columns)), dtype=np.float32), columns=columns)

    def run(df: pd.DataFrame, procs: list) -> pd.DataFrame:
        for p in procs:
            if isinstance(p, sel):
                df = p.transform(df)
        return df

    shared = run(empty, handler.shared_processors)
    infer = run(shared, handler.infer_processors)
    learn = run(shared if handler.process_type == handler.PTYPE_I else infer, handler.learn_processors)
    return {"raw": columns, "infer": infer.columns, "learn": learn.columns}


def _keeps_a_feature(out_cols: dict[str, pd.Index], chunk: pd.Index) -> bool:
    """Whether every processed frame keeps at least one of the feature columns ``chunk``."""
    return all(chunk.isin(out_cols[dk]).any() for dk in ("infer", "learn"))


def resolve_instruments(handler: Any, *, filtered: bool = True) -> Any:
    """The handler's instruments as the loader resolves them: a market name with a filter pipe becomes its
    ``{code: spans}`` (``filtered=False``: the whole market, an upper bound without evaluating the filters), a
    market name its membership spans."""
    from qlib_prefect.data.registry import get_provider

    inst = handler.instruments if handler.instruments is not None else "all"
    loader = handler.data_loader
    provider = get_provider()
    if isinstance(inst, str):
        if loader.filter_pipe and filtered:
            from qlib_prefect.data.filter import apply_filter_pipe

            return dict(apply_filter_pipe(provider.instruments(inst), list(loader.filter_pipe), provider=provider))
        return dict(provider.instruments(inst))
    return inst


def _span_days(handler: Any) -> tuple[int, int]:
    """(query days of one instrument in the engine, calendar days of the handler span)."""
    from qlib_prefect.data.registry import get_provider

    cal = pd.DatetimeIndex(get_provider().calendar())
    si = 0 if handler.start_time is None else int(cal.searchsorted(pd.Timestamp(handler.start_time), "left"))
    ei = len(cal) if handler.end_time is None else int(cal.searchsorted(pd.Timestamp(handler.end_time), "right"))
    return len(cal), max(ei - si, 0)


def _n_columns(handler: Any) -> tuple[int, int]:
    fields = handler.data_loader.fields
    nf = len(fields["feature"][0])
    return nf, sum(len(v[0]) for v in fields.values())


def estimate_inmemory_bytes(handler: Any, instruments: Any) -> int:
    """A rough upper bound of the in-memory build's peak working memory."""
    _, days = _span_days(handler)
    _, ncol = _n_columns(handler)
    return len(instruments) * days * ncol * _INMEM_BYTES_PER_CELL


def _units(handler: Any, instruments: Any) -> tuple[int, int, int, int, int]:
    qdays, days = _span_days(handler)
    nf, ncol = _n_columns(handler)
    rows = max(len(instruments) * days, 1)
    return qdays * ncol * _ENGINE_BYTES_PER_CELL, rows * _PROC_BYTES_PER_CELL, ncol - nf, qdays, rows


def chunk_unit_bytes(handler: Any, instruments: Any) -> int:
    """The smallest working memory of a chunked build: one instrument's feature panel, or one feature column
    plus the label over every row, whichever is larger."""
    per_inst, per_col, nlabel, _, _ = _units(handler, instruments)
    return max(per_inst, per_col * (1 + nlabel))


def chunk_plan(handler: Any, instruments: Any, cap: int) -> tuple[int, int]:
    """(instruments per block, feature columns per chunk) within ``cap`` bytes; ConfigError when one unit does
    not fit."""
    per_inst, per_col, nlabel, qdays, rows = _units(handler, instruments)
    nf, _ = _n_columns(handler)
    need = chunk_unit_bytes(handler, instruments)
    if cap < need:
        raise ConfigError(
            f"{CHUNK_ENV}={cap} bytes is smaller than one chunk of this handler build ({need} bytes: one "
            f"instrument's features over {qdays} days = {per_inst} bytes, one feature column plus the label over "
            f"{rows} rows = {per_col * (1 + nlabel)} bytes); raise {CHUNK_ENV} (e.g. {CHUNK_ENV}=2G)"
        )
    block = max(1, min(len(instruments), cap // per_inst))
    cols = max(1, min(nf, cap // per_col - nlabel))
    return int(block), int(cols)


def _blocks(instruments: Any, size: int) -> list[Any]:
    if isinstance(instruments, dict):
        codes = sorted(instruments, key=str)
        return [{c: instruments[c] for c in codes[i : i + size]} for i in range(0, len(codes), size)]
    codes = sorted({str(c) for c in instruments})
    return [codes[i : i + size] for i in range(0, len(codes), size)]


class _Spill:
    """One instrument block's loader output on disk (column-major float32) plus its index."""

    def __init__(self, folder: Path, i: int, df: pd.DataFrame) -> None:
        self.path = folder / f"block{i}.f32"
        self.rows = len(df)
        with self.path.open("wb") as f:
            for j in range(df.shape[1]):
                f.write(np.ascontiguousarray(df.iloc[:, j].to_numpy(dtype=np.float32)).data)
        # the index as level values + per-row codes (no per-row instrument strings)
        idx = df.index
        self.date_levels = pd.DatetimeIndex(idx.levels[0]).asi8
        self.inst_levels = np.asarray(idx.levels[1].astype(str), dtype=str)
        self.date_codes = np.asarray(idx.codes[0])
        self.inst_codes = np.asarray(idx.codes[1])

    def read(self, j0: int, j1: int) -> np.ndarray:
        """Columns ``j0:j1`` as a (rows, j1 - j0) Fortran-order array."""
        n = self.rows * (j1 - j0)
        arr = np.fromfile(self.path, dtype=np.float32, count=n, offset=j0 * self.rows * 4)
        return arr.reshape((self.rows, j1 - j0), order="F")


def _merge_fitted(chunks: list[list[Any]], columns: pd.Index) -> list[Any]:
    """One list of processors from the per-chunk fitted copies: per-column arrays of fit-window processors are
    joined in ``columns`` order (a label column fitted in every chunk is taken from the first)."""
    from qlib_prefect.data.processor import _FitWindow

    out = []
    for k, first in enumerate(chunks[0]):
        if not isinstance(first, _FitWindow) or not hasattr(first, "cols"):
            out.append(first)
            continue
        # a chunk whose columns a selector dropped fitted none: take the attributes' shapes from one that did
        first = next((procs[k] for procs in chunks if len(procs[k].cols)), first)
        per_col: dict[Any, dict[str, Any]] = {}
        attrs = [a for a, v in vars(first).items() if isinstance(v, np.ndarray) and v.shape[:1] == (len(first.cols),)]
        for procs in chunks:
            p = procs[k]
            for i, c in enumerate(p.cols):
                per_col.setdefault(c, {a: getattr(p, a)[i] for a in attrs})
        cols = [c for c in columns if c in per_col]
        merged = copy.copy(first)
        merged.cols = pd.Index(cols, tupleize_cols=True) if not isinstance(first.cols, pd.MultiIndex) else \
            pd.MultiIndex.from_tuples(cols, names=first.cols.names)
        for a in attrs:
            merged.__dict__[a] = np.asarray([per_col[c][a] for c in cols], dtype=getattr(first, a).dtype)
        out.append(merged)
    return out


def build_chunked(handler: Any, key: str, init_type: str, cap: int, instruments: Any | None = None) -> bool:
    """Build ``handler``'s frames in chunks into the cache entry ``key`` and load them memory-mapped.

    Returns False (nothing stored) when the loader output is empty. Raises like the in-memory build on bad data.
    """
    from qlib_prefect.tweaks.heap import heap_reuse

    with heap_reuse():  # every chunk allocates the same sizes again: reuse the heap instead of faulting in pages
        return _build_chunked(handler, key, init_type, cap, instruments)


def _build_chunked(handler: Any, key: str, init_type: str, cap: int, instruments: Any | None) -> bool:
    from qlib_prefect.data import cache as hcache

    t0 = time.perf_counter()
    instruments = resolve_instruments(handler) if instruments is None else instruments
    block, ncols = chunk_plan(handler, instruments, cap)
    groups = _group_names(handler)
    loader = handler.data_loader
    spill_dir = hcache.new_entry_dir(f"spill-{key[:10]}")  # a temp folder naming its owner: swept if we are killed
    entry = None
    spill_pool = write_pool = None
    try:
        # pass 1: the loader output, block by block of instruments
        # (a block is spilled by a background writer while the next one computes: one block in flight, in order)
        spills: list[_Spill] = []
        columns: pd.Index | None = None
        spill_pool = ThreadPoolExecutor(1, thread_name_prefix="qlib-prefect-chunk-spill")
        spilling: Future | None = None
        for i, part in enumerate(_blocks(instruments, block)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "filter_pipe not used with a list": resolved above
                df = loader.load(part, handler.start_time, handler.end_time)
            if not df.index.is_monotonic_increasing:
                df = df.sort_index()
            if columns is None:
                columns = df.columns
            elif not df.columns.equals(columns):
                raise ConfigError("chunked build: instrument blocks returned different columns")
            if len(df):
                if spilling is not None:
                    spills.append(spilling.result())
                spilling = spill_pool.submit(_Spill, spill_dir, i, df)
            del df
        if spilling is not None:
            spills.append(spilling.result())
        t1 = time.perf_counter()
        logger.info("chunked build: %d instrument blocks computed in %.1fs", len(spills), t1 - t0)
        if columns is None or not spills:
            return False
        # the whole frame's (datetime, instrument) order: instruments of one block never interleave with another's
        # global levels = the union of the blocks' levels; each block's row codes mapped onto them
        lv0 = np.unique(np.concatenate([s.date_levels for s in spills]))
        lv1 = np.unique(np.concatenate([s.inst_levels for s in spills]))
        date_codes = np.concatenate(
            [np.searchsorted(lv0, s.date_levels).astype(np.int32)[s.date_codes] for s in spills])
        inst_codes = np.concatenate(
            [np.searchsorted(lv1, s.inst_levels).astype(np.int32)[s.inst_codes] for s in spills])
        order = np.lexsort((inst_codes, date_codes))  # row i of the frame is row order[i] of the spilled blocks
        index = pd.MultiIndex(
            levels=[pd.DatetimeIndex(lv0.view("M8[ns]")), pd.Index(lv1, dtype=object)],
            codes=[date_codes[order], inst_codes[order]], names=["datetime", "instrument"], verify_integrity=False,
        )
        del date_codes, inst_codes
        lev0 = columns.get_level_values(0)
        feat = np.flatnonzero(lev0 == "feature")
        other = np.flatnonzero(lev0 != "feature")
        if not len(feat) or not np.array_equal(feat, np.arange(feat[0], feat[-1] + 1)):
            raise ConfigError("chunked build: the feature columns are not one contiguous group")
        nrows = len(index)
        out_cols = _frame_columns(handler, columns)
        # a chunk whose own features a selector drops entirely would leave a frame without its feature group:
        # such a chunk carries one kept feature of each frame along (column-local processors: its values in the
        # chunk equal those of its own chunk; it is not written twice)
        carriers = sorted({int(columns.get_loc(kept[0])) for kept in
                           (out_cols[dk][out_cols[dk].get_level_values(0) == "feature"] for dk in ("infer", "learn"))
                           if len(kept)})

        def gather(cols: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
            """Columns ``cols`` of the frame in its row order, then the already gathered ``extra`` columns,
            in one Fortran-order array (no concatenated copy)."""
            k = len(cols) + (0 if extra is None else extra.shape[1])
            out = np.empty((nrows, k), dtype=np.float32, order="F")

            def part(lo: int, hi: int) -> None:  # file reads and np.take release the GIL: columns on threads
                src = np.empty(nrows, dtype=np.float32)
                for i in range(lo, hi):
                    j, a = int(cols[i]), 0
                    for s in spills:
                        src[a : a + s.rows] = s.read(j, j + 1)[:, 0]
                        a += s.rows
                    np.take(src, order, out=out[:, i])

            run_chunks(len(cols), part, name="chunk-gather")
            if extra is not None:
                out[:, len(cols) :] = extra
            return out

        other_vals = gather(other) if len(other) else None
        # pass 2: processors on column chunks, streamed into the entry
        entry = hcache.new_entry_dir(key)
        writers: dict[str, Any] = {}
        layout: dict[str, Any] = {}
        fitted: list[dict[str, list[Any]]] = []
        late: dict[str, list[tuple[int, np.ndarray]]] = {}
        write_pool = ThreadPoolExecutor(1, thread_name_prefix="qlib-prefect-chunk-write")
        pending: Future | None = None
        proc_names = ("shared_processors", "infer_processors", "learn_processors")
        orig = {n: getattr(handler, n) for n in proc_names}
        for c0 in range(int(feat[0]), int(feat[-1]) + 1, ncols):
            c1 = min(c0 + ncols, int(feat[-1]) + 1)
            own = np.arange(c0, c1)
            extra = [] if _keeps_a_feature(out_cols, columns[own]) else [j for j in carriers if not c0 <= j < c1]
            sel = np.r_[own, extra, other].astype(np.int64)
            vals = gather(np.r_[own, extra].astype(np.int64), other_vals)
            frame_cols = columns[sel]
            raw = _frame(vals, index, frame_cols, groups)
            del vals
            procs = {n: copy.deepcopy(orig[n]) for n in proc_names}
            for n in proc_names:
                setattr(handler, n, procs[n])
            handler._data = raw
            if init_type == handler.IT_FIT_IND:
                handler.fit()
                handler.process_data()
            else:
                handler.process_data(with_fit=True)
            out = {dk: getattr(handler, attr, None) for dk, attr in handler.ATTR_MAP.items()}
            if handler.drop_raw:
                out["raw"] = None
            fitted.append(procs)
            if not layout:  # the first chunk fixes the frames, their aliases and row sets
                seen: dict[int, str] = {}
                for dk, df in out.items():
                    if df is None:
                        continue
                    if id(df) in seen:
                        layout[dk] = seen[id(df)]
                        continue
                    seen[id(df)] = dk
                    layout[dk] = df.index
                    writers[dk] = hcache.FrameWriter(folder=entry, name=dk, shape=(len(df), len(out_cols[dk])))
            jobs: list[tuple[Any, int, np.ndarray]] = []
            for dk, w in writers.items():
                df = out[dk]
                if len(df) != w.shape[0]:
                    raise ConfigError(f"chunked build: the {dk} frame's rows differ between column chunks")
                pos = out_cols[dk].get_indexer(df.columns)
                if (pos < 0).any() or len(np.unique(pos)) != len(pos):
                    raise ConfigError(f"chunked build: a processor changed the {dk} frame's columns")
                is_feat = df.columns.get_level_values(0) == "feature"
                mine = is_feat & df.columns.isin(columns[own])
                # column views of the frame's blocks: no consolidated copy
                jobs += [(w, int(pos[k]), df.iloc[:, k].to_numpy(dtype=np.float32)) for k in np.flatnonzero(mine)]
                if c0 == int(feat[0]):  # the other groups (label) once, written after the features: file order
                    late[dk] = [(int(pos[k]), df.iloc[:, k].to_numpy(dtype=np.float32).copy())
                                for k in np.flatnonzero(~is_feat)]
            # the chunk's columns are written while the next chunk is gathered and processed (one chunk in flight,
            # in order: the checksums are taken as written)
            if pending is not None:
                pending.result()
            pending = write_pool.submit(_write_columns, jobs)
            del raw, out, jobs
            for attr in handler.ATTR_MAP.values():
                handler.__dict__.pop(attr, None)
        if pending is not None:
            pending.result()
        for dk, cols_ in late.items():
            for j, v in cols_:
                writers[dk].write_column(j, v)
        del late
        for n in proc_names:
            setattr(handler, n, _merge_fitted([f[n] for f in fitted], columns) if fitted else orig[n])
        frames: dict[str, dict] = {}
        for dk, lay in layout.items():
            if isinstance(lay, str):
                frames[dk] = {"alias": lay}
            else:
                frames[dk] = writers[dk].finish(lay, out_cols[dk])
        hcache.commit_entry(key, entry, frames, handler)
        entry = None
        t2 = time.perf_counter()
        if not hcache.load_handler(key, handler, verify=False):  # written just now; checksums are in the meta
            raise ConfigError("chunked build: the stored entry could not be loaded back")
        logger.info("%s: chunked build (%d instruments per block, %d columns per chunk, cap %d bytes): features "
                    "in %.3fs, processed in %.3fs", type(handler).__name__, block, ncols, cap, t1 - t0, t2 - t1)
        return True
    finally:
        for pool in (spill_pool, write_pool):
            if pool is not None:
                pool.shutdown(wait=True)  # no write may still run into a folder discarded below
        if entry is not None:
            hcache.discard_entry_dir(entry)
        hcache.discard_entry_dir(spill_dir)


def _write_columns(jobs: list[tuple[Any, int, np.ndarray]]) -> None:
    for writer, j, values in jobs:
        writer.write_column(j, values)


def _frame(vals: np.ndarray, index: pd.MultiIndex, cols: pd.Index, groups: list[str] | None) -> pd.DataFrame:
    """The chunk as the loader builds frames: one float32 block per column group (concat of the groups)."""
    lev0 = cols.get_level_values(0)
    parts = {}
    for g in groups or []:
        m = np.flatnonzero(lev0 == g)
        if len(m):
            sub = vals[:, m[0] : m[-1] + 1] if np.array_equal(m, np.arange(m[0], m[-1] + 1)) else vals[:, m]
            parts[g] = pd.DataFrame(sub, index=index, columns=cols[m].get_level_values(1), copy=False)
    return pd.concat(parts, axis=1, join="outer")

