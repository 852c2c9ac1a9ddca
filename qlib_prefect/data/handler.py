"""Data handlers (qlib's ``qlib.data.dataset.handler`` and ``qlib.contrib.data.handler``).

``DataHandler`` loads one raw frame through a data loader; ``DataHandlerLP`` derives the ``infer`` and
``learn`` frames with processors; ``Alpha158``/``Alpha360`` wire qlib's feature sets and default processors.
Frames are indexed ``(datetime, instrument)`` (sorted), columns ``(group, name)``, float32.

Processed handlers are cached on disk (see :mod:`qlib_prefect.data.cache`): building the same handler on
the same data again loads the frames instead of recomputing them. Opt out with ``cache=False`` or
``QLIB_PREFECT_HANDLER_CACHE=0``. A cached build whose in-memory peak would exceed ``QLIB_PREFECT_MAX_MEMORY``
runs out of core (:mod:`qlib_prefect.data.chunked`, same frames); qlib always builds in memory.

Example:
    >>> import numpy as np, pandas as pd
    >>> idx = pd.MultiIndex.from_product([pd.bdate_range("2020-01-01", periods=3), ["A", "B"]],
    ...                                  names=["datetime", "instrument"])
    >>> df = pd.DataFrame({("feature", "x"): np.arange(6, dtype="float32"),
    ...                    ("label", "y"): np.ones(6, dtype="float32")}, index=idx)
    >>> h = DataHandlerLP.from_df(df)
    >>> h.fetch(("2020-01-02", "2020-01-03"), col_set="feature").shape
    (4, 1)
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pandas as pd

from qlib_prefect.data.loader import DataLoader, StaticDataLoader
from qlib_prefect.data.processor import Processor, accepts_fit_window
from qlib_prefect.data.selection import (
    CS_ALL,
    CS_RAW,
    fetch_df_by_col,
    fetch_df_by_index,
    get_level_index,
    is_scalar_key,
)
from qlib_prefect.errors import ConfigError, DataError
from qlib_prefect.utils.serial import Serializable

__all__ = [
    "Alpha158",
    "Alpha158vwap",
    "Alpha360",
    "Alpha360vwap",
    "DataHandler",
    "DataHandlerLP",
    "Serializable",
    "check_transform_proc",
    "fetch_df_by_col",
    "fetch_df_by_index",
    "get_level_index",
    "load_raw_bounded",
]

logger = logging.getLogger(__name__)

_LOADER_MODULE = "qlib_prefect.data.loader"
_PROC_MODULE = "qlib_prefect.data.processor"


# ------------------------------------------------------------------------------------------ pickling rules
# ---------------------------------------------------------------------------------------------- handlers
class DataHandler(Serializable):
    """A handler over one raw frame loaded by a data loader.

    Args:
        instruments: market name (``"csi300"``), list of codes, or None (all).
        start_time, end_time: date range of the data.
        data_loader: loader instance or config (``{"class": "QlibDataLoader", "kwargs": {...}}``).
        init_data: load the data in the constructor.
        fetch_orig: return views instead of copies where possible (always true here).
    """

    CS_ALL, CS_RAW = CS_ALL, CS_RAW  # qlib's class attributes (values from data.selection)
    DK_R = "raw"
    DK_I = "infer"
    DK_L = "learn"

    _data: pd.DataFrame

    def __init__(
        self,
        *,
        instruments: Any = None,
        start_time: Any = None,
        end_time: Any = None,
        data_loader: Any = None,
        init_data: bool = True,
        fetch_orig: bool = True,
    ) -> None:
        if data_loader is None:
            raise ConfigError(f"{type(self).__name__}: a data_loader is required")
        self._loader_config = data_loader
        from qlib_prefect.utils import init_instance_by_config

        self.data_loader = init_instance_by_config(
            data_loader, _LOADER_MODULE, accept_types=DataLoader, _where=f"{type(self).__name__}.data_loader"
        )
        self.instruments = instruments
        self.start_time = start_time
        self.end_time = end_time
        self.fetch_orig = fetch_orig
        if init_data:
            self.setup_data()

    def config(self, **kwargs: Any) -> None:
        """Change ``instruments`` / ``start_time`` / ``end_time`` before a new ``setup_data``."""
        for k in ("instruments", "start_time", "end_time"):
            if k in kwargs:
                setattr(self, k, kwargs.pop(k))
        super().config(**kwargs)

    @property
    def loader_config(self) -> Any:
        """The data loader as configured (its config dict or instance): what the handler cache keys on."""
        return self._loader_config

    def load_raw(self) -> pd.DataFrame:
        """The loader's output over this handler's span (features + label, before processors), date-sorted."""
        df = self.data_loader.load(self.instruments, self.start_time, self.end_time)
        if not df.index.is_monotonic_increasing:
            df = df.sort_index()
        return df

    def setup_from_raw(self, raw: pd.DataFrame) -> None:
        """Set the handler up from a given loader output (e.g. a slice of a frame shared by rolling windows)
        instead of loading it: what ``setup_data`` does after loading."""
        self._data = raw

    def setup_data(self, enable_cache: bool | None = None) -> None:
        """(Re)load the raw data."""
        self._data = self.load_raw()

    def fetch(
        self,
        selector: Any = slice(None, None),
        level: str | int = "datetime",
        col_set: str | list[str] = CS_ALL,
        data_key: str = DK_I,
        squeeze: bool = False,
        proc_func: Callable | None = None,
    ) -> pd.DataFrame:
        """Select rows (``selector`` on ``level``, inclusive) and columns (``col_set``) of the data."""
        return self._fetch_data(self._data, selector, level, col_set, squeeze, proc_func)

    def _fetch_data(
        self,
        data: pd.DataFrame,
        selector: Any = slice(None, None),
        level: str | int = "datetime",
        col_set: str | list[str] = CS_ALL,
        squeeze: bool = False,
        proc_func: Callable | None = None,
    ) -> pd.DataFrame:
        if isinstance(selector, (tuple, list)) and level is not None:
            try:
                selector = slice(*selector)
            except (TypeError, ValueError):
                logger.info("cannot convert the selector %r to a slice; used as is", selector)
        if proc_func is not None:
            df = proc_func(fetch_df_by_index(data, selector, level, fetch_orig=self.fetch_orig).copy())
            df = fetch_df_by_col(df, col_set)
        else:
            df = fetch_df_by_col(data, col_set)
            df = fetch_df_by_index(df, selector, level, fetch_orig=self.fetch_orig)
        if squeeze:
            df = df.squeeze()
            if is_scalar_key(selector) and isinstance(df.index, pd.MultiIndex):
                df = df.reset_index(level=level, drop=True)
        return df

    def get_cols(self, col_set: str | list[str] = CS_ALL) -> list:
        return fetch_df_by_col(self._data.head(0), col_set).columns.to_list()

    def get_range_selector(self, cur_date: Any, periods: int) -> slice:
        dates = self._data.index.unique(level="datetime")
        cur = dates.get_loc(pd.Timestamp(cur_date))
        pre = cur - periods + 1
        if pre < 0:
            warnings.warn("`periods` is too large. the first date will be returned.", stacklevel=2)
            pre = 0
        return slice(dates[pre], cur_date)

    def get_range_iterator(
        self, periods: int, min_periods: int | None = None, **kwargs: Any
    ) -> Iterator[tuple[pd.Timestamp, pd.DataFrame]]:
        dates = self._data.index.unique(level="datetime")
        min_periods = periods if min_periods is None else min_periods
        for cur in dates[min_periods:]:
            yield cur, self.fetch(self.get_range_selector(cur, periods), **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(instruments={self.instruments!r}, start_time={self.start_time!r}, "
            f"end_time={self.end_time!r})"
        )


class DataHandlerLP(DataHandler):
    """A handler with learnable processors producing ``raw``, ``infer`` and ``learn`` frames.

    ``append`` (default): ``infer = infer_procs(shared_procs(raw))``, ``learn = learn_procs(infer)``;
    ``independent``: ``learn = learn_procs(shared_procs(raw))``. Processors in ``shared``/``infer`` lists
    must be usable for inference (``DropnaLabel`` is not). Without infer processors ``infer`` *is* ``raw``.

    Args:
        infer_processors, learn_processors, shared_processors: processor instances or configs
            (``{"class": "ZScoreNorm", "kwargs": {...}}``, ``"DropnaLabel"``).
        process_type: ``"append"`` or ``"independent"``.
        drop_raw: discard the raw frame after processing.
        cache: use the on-disk handler cache (None: on unless ``QLIB_PREFECT_HANDLER_CACHE=0``).
        **kwargs: :class:`DataHandler` arguments.
    """

    ATTR_MAP = {DataHandler.DK_R: "_data", DataHandler.DK_I: "_infer", DataHandler.DK_L: "_learn"}
    #: how this process got its frames (from the handler cache / built out of core): not part of a stored handler,
    #: so two handlers of one config pickle alike however each was built (ours; qlib has neither flag)
    exclude_attr: ClassVar[list[str]] = ["cache_hit", "chunked_build"]
    cache_hit: bool = False
    chunked_build: bool = False
    PTYPE_I = "independent"
    PTYPE_A = "append"
    IT_FIT_SEQ = "fit_seq"
    IT_FIT_IND = "fit_ind"
    IT_LS = "load_state"

    _infer: pd.DataFrame
    _learn: pd.DataFrame

    def __init__(
        self,
        *,
        instruments: Any = None,
        start_time: Any = None,
        end_time: Any = None,
        data_loader: Any = None,
        infer_processors: list | None = None,
        learn_processors: list | None = None,
        shared_processors: list | None = None,
        process_type: str = PTYPE_A,
        drop_raw: bool = False,
        cache: bool | None = None,
        **kwargs: Any,
    ) -> None:
        from qlib_prefect.utils import init_instance_by_config

        if process_type not in (self.PTYPE_A, self.PTYPE_I):
            raise ConfigError(f"{type(self).__name__}.process_type: {process_type!r}; use 'append' or 'independent'")
        self._proc_configs = {
            "infer_processors": list(infer_processors or []),
            "learn_processors": list(learn_processors or []),
            "shared_processors": list(shared_processors or []),
        }
        self.infer_processors: list[Processor] = []
        self.learn_processors: list[Processor] = []
        self.shared_processors: list[Processor] = []
        for pname, confs in self._proc_configs.items():
            for i, proc in enumerate(confs):
                obj = init_instance_by_config(
                    proc, _PROC_MODULE, accept_types=Processor, _where=f"{type(self).__name__}.{pname}[{i}]"
                )
                if not callable(obj):
                    raise ConfigError(f"{type(self).__name__}.{pname}[{i}]: {obj!r} is not a processor")
                getattr(self, pname).append(obj)
        self.process_type = process_type
        self.drop_raw = drop_raw
        self.cache = cache
        self.cache_hit = False
        super().__init__(instruments=instruments, start_time=start_time, end_time=end_time, data_loader=data_loader,
                         **kwargs)

    def get_all_processors(self) -> list[Processor]:
        return self.shared_processors + self.infer_processors + self.learn_processors

    def fit(self) -> None:
        """Fit every processor on the raw data (``fit_ind``)."""
        for proc in self.get_all_processors():
            proc.fit(self._data)

    def fit_process_data(self) -> None:
        self.process_data(with_fit=True)

    def setup_from_raw(self, raw: pd.DataFrame) -> None:
        """Set up from a given loader output: the processors are fitted on it and run (``IT_FIT_SEQ``)."""
        super().setup_from_raw(raw)
        self.fit_process_data()

    @staticmethod
    def _run_proc_l(df: pd.DataFrame, procs: list, with_fit: bool, check_for_infer: bool) -> pd.DataFrame:
        for proc in procs:
            if check_for_infer and hasattr(proc, "is_for_infer") and not proc.is_for_infer():
                raise ConfigError(
                    f"{type(proc).__name__} cannot be used in infer/shared processors (not usable for inference)"
                )
            if with_fit and hasattr(proc, "fit"):
                proc.fit(df)
            df = proc.transform(df) if isinstance(proc, Processor) else proc(df)  # transform: input untouched
        return df

    @staticmethod
    def _is_proc_readonly(procs: list) -> bool:
        return all(isinstance(p, Processor) or getattr(p, "readonly", lambda: False)() for p in procs)

    def process_data(self, with_fit: bool = False) -> None:
        """Run the processors: ``shared`` then ``infer``; ``learn`` after ``infer`` (append) or ``shared``."""
        shared = self._data
        if not self._is_proc_readonly(self.shared_processors):
            shared = shared.copy()
        shared = self._run_proc_l(shared, self.shared_processors, with_fit, check_for_infer=True)
        infer = shared
        if not self._is_proc_readonly(self.infer_processors):
            infer = infer.copy()
        infer = self._run_proc_l(infer, self.infer_processors, with_fit, check_for_infer=True)
        self._infer = infer
        learn = shared if self.process_type == self.PTYPE_I else infer
        if not self._is_proc_readonly(self.learn_processors):
            learn = learn.copy()
        self._learn = self._run_proc_l(learn, self.learn_processors, with_fit, check_for_infer=False)
        if self.drop_raw:
            del self._data

    def config(self, processor_kwargs: dict | None = None, **kwargs: Any) -> None:
        super().config(**kwargs)
        if processor_kwargs is not None:
            for p in self.get_all_processors():
                p.config(**processor_kwargs)

    # -- cache
    def cache_spec(self, init_type: str = IT_FIT_SEQ) -> dict | None:
        """What the processed frames depend on (None if not cacheable, e.g. in-memory loaders)."""
        if isinstance(self.data_loader, StaticDataLoader) or init_type == self.IT_LS:
            return None
        if not hasattr(self, "_loader_config") or not hasattr(self, "_proc_configs"):
            return None
        from qlib_prefect.data.cache import describe

        try:
            return {
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "instruments": self.instruments,
                "start_time": self.start_time,
                "end_time": self.end_time,
                "data_loader": describe(self._loader_config),
                **{k: [describe(p) for p in v] for k, v in self._proc_configs.items()},
                "process_type": self.process_type,
                "drop_raw": self.drop_raw,
                "init_type": init_type,
            }
        except TypeError:
            return None

    def setup_data(self, init_type: str = IT_FIT_SEQ, enable_cache: bool | None = None, **kwargs: Any) -> None:
        """Load the raw data and fit/process it (``fit_seq``, ``fit_ind`` or ``load_state``).

        The result comes from the handler cache when an identical build was stored before.
        """
        if init_type not in (self.IT_FIT_SEQ, self.IT_FIT_IND, self.IT_LS):
            raise ConfigError(f"{type(self).__name__}.setup_data: unknown init_type {init_type!r}")
        from qlib_prefect.data import cache as hcache

        flag = getattr(self, "cache", None) if enable_cache is None else enable_cache
        key = None
        if hcache.cache_enabled(flag):
            key = hcache.handler_key(self, init_type)
            if key is not None and hcache.load_handler(key, self):
                self.cache_hit = True
                return
        self.cache_hit = False
        if self._build_chunked(key, init_type):
            return
        from qlib_prefect.tweaks.heap import heap_reuse

        t0 = time.perf_counter()
        super().setup_data()  # the expression engine returns its freed panel memory to the kernel when done
        t1 = time.perf_counter()
        with heap_reuse():  # processors copy whole frames: no hugepage compaction stalls while they fault in
            if init_type == self.IT_FIT_IND:
                self.fit()
                self.process_data()
            elif init_type == self.IT_LS:
                self.process_data()
            else:
                self.fit_process_data()
        logger.info(
            "%s: data loaded in %.3fs, processed (%s) in %.3fs", type(self).__name__, t1 - t0, init_type,
            time.perf_counter() - t1,
        )
        if key is not None:
            hcache.store_handler_async(key, self)

    def _build_chunked(self, key: str | None, init_type: str) -> bool:
        """Build out of core into the cache entry ``key`` (:mod:`qlib_prefect.data.chunked`) when the in-memory
        build's estimated peak exceeds ``QLIB_PREFECT_MAX_MEMORY`` and the processors allow it (``key`` None: the
        cache is off, which the out-of-core build needs). When the peak exceeds the cap but the build cannot run
        out of core, a warning says why before the in-memory build starts. qlib always builds in memory."""
        from qlib_prefect.config.settings import get_settings
        from qlib_prefect.data import chunked

        why = chunked.chunkable(self)
        if why is None and key is None:
            why = "it streams into a handler cache entry and this build has none (cache=False, " \
                  "QLIB_PREFECT_HANDLER_CACHE=0, or a handler the cache does not keep)"
        if chunked.loader_unchunkable(self) is not None:  # no estimate without the loader's feature fields
            logger.debug("%s: in-memory build (%s)", type(self).__name__, why)
            return False
        cap = get_settings().max_memory_bytes
        need = chunked.estimate_inmemory_bytes(self, chunked.resolve_instruments(self, filtered=False))
        if need <= cap:
            return False
        instruments = chunked.resolve_instruments(self)
        need = chunked.estimate_inmemory_bytes(self, instruments)
        if need <= cap:
            return False
        if why is not None:
            logger.warning("%s: estimated in-memory peak %.1f GB > QLIB_PREFECT_MAX_MEMORY %.1f GB, but the build "
                           "cannot run out of core: %s; building in memory", type(self).__name__, need / 2**30,
                           cap / 2**30, why)
            return False
        logger.info("%s: estimated in-memory peak %.1f GB > QLIB_PREFECT_MAX_MEMORY %.1f GB: chunked build",
                    type(self).__name__, need / 2**30, cap / 2**30)
        self.chunked_build = chunked.build_chunked(self, key, init_type, cap, instruments)
        return self.chunked_build

    def _get_df_by_key(self, data_key: str = DataHandler.DK_I) -> pd.DataFrame:
        if data_key not in self.ATTR_MAP:
            raise ConfigError(f"data_key must be one of {sorted(self.ATTR_MAP)}, got {data_key!r}")
        if data_key == self.DK_R and self.drop_raw:
            raise DataError("the raw data was dropped (drop_raw=True); set drop_raw=False to fetch data_key='raw'")
        return getattr(self, self.ATTR_MAP[data_key])

    def fetch(
        self,
        selector: Any = slice(None, None),
        level: str | int = "datetime",
        col_set: str | list[str] = DataHandler.CS_ALL,
        data_key: str = DataHandler.DK_I,
        squeeze: bool = False,
        proc_func: Callable | None = None,
    ) -> pd.DataFrame:
        """Like :meth:`DataHandler.fetch`, from the frame named by ``data_key`` (raw, infer, learn)."""
        return self._fetch_data(self._get_df_by_key(data_key), selector, level, col_set, squeeze, proc_func)

    def get_cols(self, col_set: str | list[str] = DataHandler.CS_ALL, data_key: str = DataHandler.DK_I) -> list:
        return fetch_df_by_col(self._get_df_by_key(data_key).head(0), col_set).columns.to_list()

    @classmethod
    def cast(cls, handler: DataHandlerLP) -> DataHandlerLP:
        """A plain ``DataHandlerLP`` holding only the processed frames of ``handler``."""
        new = object.__new__(DataHandlerLP)
        new.from_cast = True
        for key in [*DataHandlerLP.ATTR_MAP.values(), "instruments", "start_time", "end_time", "fetch_orig",
                    "drop_raw"]:
            setattr(new, key, getattr(handler, key, None))
        return new

    @classmethod
    def from_df(cls, df: pd.DataFrame) -> DataHandlerLP:
        """A processor-less handler over ``df``."""
        return cls(data_loader=StaticDataLoader(df))


def load_raw_bounded(handler: DataHandler) -> tuple[pd.DataFrame, bool]:
    """``(handler.load_raw(), False)`` while the loader output fits ``QLIB_PREFECT_MAX_MEMORY``; above it the same
    frame built out of core by a processor-less twin handler (same loader, instruments and span) into the handler
    cache and served memory-mapped: ``(frame, True)`` (the frame is then already cached on disk, by the twin's key).

    For callers that share one loader output (rolling windows slice it per window).
    """
    from qlib_prefect.config.settings import get_settings
    from qlib_prefect.data import chunked

    cap = get_settings().max_memory_bytes
    if (chunked.loader_unchunkable(handler) is not None
            or chunked.estimate_inmemory_bytes(handler, chunked.resolve_instruments(handler, filtered=False)) <= cap):
        return handler.load_raw(), False
    twin = DataHandlerLP(instruments=handler.instruments, start_time=handler.start_time, end_time=handler.end_time,
                         data_loader=handler.loader_config, cache=True, init_data=False)
    twin.setup_data()
    return twin._data, bool(getattr(twin, "chunked_build", False) or twin.cache_hit)


# --------------------------------------------------------------------------------------- Alpha handlers
def check_transform_proc(proc_l: list | None, fit_start_time: Any, fit_end_time: Any) -> list:
    """Inject ``fit_start_time``/``fit_end_time`` into processor configs whose class takes them."""
    from qlib_prefect.utils import get_callable_kwargs

    new_l: list = []
    for i, p in enumerate(proc_l or []):
        if isinstance(p, Processor) or (callable(p) and not isinstance(p, (dict, str, type))):
            new_l.append(p)
            continue
        klass, pkwargs = get_callable_kwargs(p, _PROC_MODULE, where=f"processors[{i}]")
        if accepts_fit_window(klass):
            if fit_start_time is None or fit_end_time is None:
                raise ConfigError(
                    f"processors[{i}] ({klass.__name__}) needs fit_start_time and fit_end_time on the handler"
                )
            pkwargs.update({"fit_start_time": fit_start_time, "fit_end_time": fit_end_time})
        conf: dict[str, Any] = {"class": klass.__name__, "kwargs": pkwargs}
        if isinstance(p, dict) and "module_path" in p:
            conf["module_path"] = p["module_path"]
        elif not isinstance(p, dict) and klass.__module__ != _PROC_MODULE:
            conf["module_path"] = klass.__module__
        new_l.append(conf)
    return new_l


_DEFAULT_LEARN_PROCESSORS: list[dict] = [
    {"class": "DropnaLabel"},
    {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}},
]
_DEFAULT_INFER_PROCESSORS: list[dict] = [
    {"class": "ProcessInf", "kwargs": {}},
    {"class": "ZScoreNorm", "kwargs": {}},
    {"class": "Fillna", "kwargs": {}},
]


def _label_config(label: Any, default: tuple[list[str], list[str]]) -> Any:
    return default if label is None else label


def _alpha_loader(feature: Any, label: Any, filter_pipe: Any, freq: str, inst_processors: Any) -> dict[str, Any]:
    """The ``QlibDataLoader`` config of the Alpha158/Alpha360 handlers (feature + label groups)."""
    return {
        "class": "QlibDataLoader",
        "kwargs": {
            "config": {"feature": feature, "label": label},
            "filter_pipe": filter_pipe,
            "freq": freq,
            "inst_processors": inst_processors,
        },
    }


class Alpha360(DataHandlerLP):
    """Alpha360 features (60 days of normalised prices and volume) + ``LABEL0``.

    Defaults: infer ``[ProcessInf, ZScoreNorm(fit window), Fillna]``, learn ``[DropnaLabel, CSZScoreNorm(label)]``.
    ``label=(exprs, names)`` overrides the label.
    """

    def __init__(
        self,
        *,
        instruments: Any = "csi500",
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        infer_processors: list | None = None,
        learn_processors: list | None = None,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        filter_pipe: list | None = None,
        inst_processors: Any = None,
        label: Any = None,
        **kwargs: Any,
    ) -> None:
        from qlib_prefect.data.loader import Alpha360DL

        infer_processors = _DEFAULT_INFER_PROCESSORS if infer_processors is None else infer_processors
        learn_processors = _DEFAULT_LEARN_PROCESSORS if learn_processors is None else learn_processors
        infer_processors = check_transform_proc(infer_processors, fit_start_time, fit_end_time)
        learn_processors = check_transform_proc(learn_processors, fit_start_time, fit_end_time)
        data_loader = _alpha_loader(Alpha360DL.get_feature_config(), _label_config(label, self.get_label_config()),
                                    filter_pipe, freq, inst_processors)
        super().__init__(
            instruments=instruments,
            start_time=start_time,
            end_time=end_time,
            data_loader=data_loader,
            learn_processors=learn_processors,
            infer_processors=infer_processors,
            **kwargs,
        )

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return ["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]


class Alpha360vwap(Alpha360):
    def get_label_config(self) -> tuple[list[str], list[str]]:
        return ["Ref($vwap, -2)/Ref($vwap, -1) - 1"], ["LABEL0"]


class Alpha158(DataHandlerLP):
    """The 158 Alpha158 features + ``LABEL0`` (qlib's defaults: no infer processors,
    learn ``[DropnaLabel, CSZScoreNorm(label)]``). ``label=(exprs, names)`` overrides the label."""

    def __init__(
        self,
        *,
        instruments: Any = "csi500",
        start_time: Any = None,
        end_time: Any = None,
        freq: str = "day",
        infer_processors: list | None = None,
        learn_processors: list | None = None,
        fit_start_time: Any = None,
        fit_end_time: Any = None,
        process_type: str = DataHandlerLP.PTYPE_A,
        filter_pipe: list | None = None,
        inst_processors: Any = None,
        label: Any = None,
        **kwargs: Any,
    ) -> None:
        infer_processors = [] if infer_processors is None else infer_processors
        learn_processors = _DEFAULT_LEARN_PROCESSORS if learn_processors is None else learn_processors
        infer_processors = check_transform_proc(infer_processors, fit_start_time, fit_end_time)
        learn_processors = check_transform_proc(learn_processors, fit_start_time, fit_end_time)
        data_loader = _alpha_loader(self.get_feature_config(), _label_config(label, self.get_label_config()),
                                    filter_pipe, freq, inst_processors)
        super().__init__(
            instruments=instruments,
            start_time=start_time,
            end_time=end_time,
            data_loader=data_loader,
            infer_processors=infer_processors,
            learn_processors=learn_processors,
            process_type=process_type,
            **kwargs,
        )

    def get_feature_config(self) -> tuple[list[str], list[str]]:
        from qlib_prefect.data.loader import Alpha158DL

        conf = {
            "kbar": {},
            "price": {"windows": [0], "feature": ["OPEN", "HIGH", "LOW", "VWAP"]},
            "rolling": {},
        }
        return Alpha158DL.get_feature_config(conf)

    def get_label_config(self) -> tuple[list[str], list[str]]:
        return ["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]


class Alpha158vwap(Alpha158):
    def get_label_config(self) -> tuple[list[str], list[str]]:
        return ["Ref($vwap, -2)/Ref($vwap, -1) - 1"], ["LABEL0"]

