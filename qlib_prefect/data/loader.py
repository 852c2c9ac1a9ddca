"""Data loaders: raw (feature, label) frames for a handler (qlib's ``qlib.data.dataset.loader`` and
``qlib.contrib.data.loader``).

A loader's ``load(instruments, start_time, end_time)`` returns a frame indexed ``(datetime, instrument)``
(sorted) with 2-level columns ``(group, name)``, e.g. ``("feature", "KMID")`` and ``("label", "LABEL0")``,
float32 values.

Example:
    >>> fields, names = Alpha158DL.get_feature_config()
    >>> len(names), names[:3], names[-1]
    (158, ['KMID', 'KLEN', 'KMID2'], 'VSUMD60')
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlib_prefect.errors import ConfigError, DataError

__all__ = [
    "Alpha158DL",
    "Alpha360DL",
    "DLWParser",
    "DataLoader",
    "QlibDataLoader",
    "StaticDataLoader",
    "load_dataset",
]

INDEX_NAMES = ("datetime", "instrument")


class DataLoader:
    """Loads the raw data of a handler."""

    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:
        raise NotImplementedError


def _parse_fields_info(fields_info: Any, where: str) -> tuple[list[str], list[str]]:
    if not isinstance(fields_info, (list, tuple)):
        kind = type(fields_info).__name__
        raise ConfigError(f"{where}: expected a list of expressions or (exprs, names), got {kind}")
    if len(fields_info) == 0:
        raise ConfigError(f"{where}: the size of fields must be greater than 0")
    if isinstance(fields_info[0], str):
        exprs = names = list(fields_info)
    elif isinstance(fields_info[0], (list, tuple)):
        if len(fields_info) != 2:
            raise ConfigError(f"{where}: expected (exprs, names)")
        exprs, names = list(fields_info[0]), list(fields_info[1])
    else:
        raise ConfigError(f"{where}: unsupported fields description {fields_info[0]!r}")
    if len(exprs) != len(names):
        raise ConfigError(f"{where}: {len(exprs)} expressions but {len(names)} names")
    return exprs, names


class DLWParser(DataLoader):
    """Loader with a parsed ``config``: ``{group: fields_info}`` or one ``fields_info``.

    ``fields_info`` is ``["expr", ...]`` (names = expressions) or ``(["expr", ...], ["name", ...])``.
    """

    def __init__(self, config: Any) -> None:
        self.is_group = isinstance(config, Mapping)
        if self.is_group:
            self.fields = {g: _parse_fields_info(fi, f"data_loader.config.{g}") for g, fi in config.items()}
        else:
            self.fields = _parse_fields_info(config, "data_loader.config")

    def load_group_df(
        self,
        instruments: Any,
        exprs: list[str],
        names: list[str],
        start_time: Any = None,
        end_time: Any = None,
        gp_name: str | None = None,
    ) -> pd.DataFrame:
        raise NotImplementedError

    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:
        if not self.is_group:
            exprs, names = self.fields
            return self.load_group_df(instruments, exprs, names, start_time, end_time)
        frames = {
            g: self.load_group_df(instruments, exprs, names, start_time, end_time, g)
            for g, (exprs, names) in self.fields.items()
        }
        return concat_groups(frames)


def concat_groups(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Join group frames on columns into one ``(group, name)`` frame (outer join on rows, sorted).

    Groups sharing one index (the usual case) are put side by side without copying their values.
    """
    items = list(frames.items())
    if not items:
        raise DataError("no column group to load")
    items = [(g, f if (f.dtypes == np.float32).all() else f.astype(np.float32)) for g, f in items]
    df = pd.concat(dict(items), axis=1, join="outer")  # equal indexes: no reindexing, no copy
    if not df.index.is_monotonic_increasing:
        df = df.sort_index()
    return df


class QlibDataLoader(DLWParser):
    """Evaluate qlib expressions per group through the expression engine.

    Args:
        config: ``{"feature": (exprs, names), "label": (exprs, names)}`` or one fields description.
        filter_pipe: qlib instrument filters (``NameDFilter``/``ExpressionDFilter`` configs) for a market name.
        swap_level: return ``(datetime, instrument)`` (True, qlib's default) or ``(instrument, datetime)``.
        freq: data frequency (``"day"``), or ``{group: freq}``.
        inst_processors: per-instrument filters (e.g. ``TimeRangeFlt`` configs), a list or ``{group: list}``.
    """

    def __init__(
        self,
        config: Any,
        filter_pipe: list | None = None,
        swap_level: bool = True,
        freq: str | dict = "day",
        inst_processors: list | dict | None = None,
    ) -> None:
        self.filter_pipe = filter_pipe
        self.swap_level = swap_level
        self.freq = freq
        self.inst_processors = inst_processors if inst_processors is not None else {}
        if not isinstance(self.inst_processors, (dict, list)):
            raise ConfigError(f"data_loader.inst_processors must be a dict or a list, got {inst_processors!r}")
        super().__init__(config)
        if self.is_group and isinstance(freq, dict):
            for g in config:
                if g not in freq:
                    raise ConfigError(f"data_loader.freq={freq!r} misses group {g!r}")

    def load_group_df(
        self,
        instruments: Any,
        exprs: list[str],
        names: list[str],
        start_time: Any = None,
        end_time: Any = None,
        gp_name: str | None = None,
    ) -> pd.DataFrame:
        from qlib_prefect.data.expression import compute_features
        from qlib_prefect.data.registry import get_provider

        if instruments is None:
            warnings.warn("`instruments` is not set, will load all stocks", stacklevel=3)
            instruments = "all"
        if isinstance(instruments, str) and self.filter_pipe:
            instruments = {"market": instruments, "filter_pipe": list(self.filter_pipe)}
        elif self.filter_pipe:
            warnings.warn("`filter_pipe` is not None, but it will not be used with `instruments` as list", stacklevel=3)
        freq = self.freq[gp_name] if isinstance(self.freq, dict) else self.freq
        df = compute_features(get_provider(), instruments, list(exprs), list(names), start_time, end_time, freq=freq)
        df.columns = list(names)
        if df.index.names != list(INDEX_NAMES) and set(df.index.names) == set(INDEX_NAMES):
            df = df.swaplevel().sort_index()
        ip = self.inst_processors
        procs = ip if isinstance(ip, list) else ip.get(gp_name, [])
        for p in procs or []:
            if p:
                df = _init_inst_processor(p)(df)
        if not self.swap_level:
            df = df.swaplevel().sort_index()
        return df


def _init_inst_processor(p: Any) -> Any:
    from qlib_prefect.utils import init_instance_by_config

    return init_instance_by_config(p, "qlib_prefect.data.processor", _where="data_loader.inst_processors")


def load_dataset(path_or_obj: Any, index_col: Sequence[int] = (0, 1)) -> pd.DataFrame:
    """A frame from a DataFrame, or a ``.pkl``/``.parquet``/``.csv``/``.h5`` file (qlib's ``load_dataset``)."""
    if isinstance(path_or_obj, pd.DataFrame):
        return path_or_obj
    path = Path(str(path_or_obj)).expanduser()
    if not path.exists():
        raise DataError(f"dataset file not found: {path}")
    ext = path.suffix.lower()
    try:
        if ext in (".pkl", ".pickle"):
            with path.open("rb") as f:
                return pickle.load(f)
        if ext == ".parquet":
            return pd.read_parquet(path, engine="pyarrow")
        if ext == ".csv":
            return pd.read_csv(path, index_col=list(index_col), parse_dates=[0])
        if ext == ".h5":
            return pd.read_hdf(path)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read dataset file {path}: {e}") from e
    raise DataError(f"unsupported dataset file type {ext!r}: {path}")


class StaticDataLoader(DataLoader):
    """Serve a given frame: ``{group: frame_or_path}``, a ``.parquet``/pickle path, or a DataFrame.

    Args:
        config: the data.
        join: how the groups of a dict config are aligned on rows (``pd.concat`` join).
    """

    def __init__(self, config: Any, join: str = "outer") -> None:
        self._config = config
        self.join = join
        self._data: pd.DataFrame | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_data"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._data = None

    def _maybe_load_raw_data(self) -> pd.DataFrame:
        if self._data is not None:
            return self._data
        cfg = self._config
        if isinstance(cfg, Mapping):
            df = pd.concat({g: load_dataset(p) for g, p in cfg.items()}, axis=1, join=self.join)
            df = df.sort_index()
        elif isinstance(cfg, (str, Path)):
            df = load_dataset(cfg)
        elif isinstance(cfg, pd.DataFrame):
            df = cfg
        else:
            raise ConfigError(f"StaticDataLoader.config: unsupported type {type(cfg).__name__}")
        self._data = df
        return df

    def load(self, instruments: Any = None, start_time: Any = None, end_time: Any = None) -> pd.DataFrame:
        df = self._maybe_load_raw_data()
        if instruments is not None:
            codes = [instruments] if isinstance(instruments, str) else list(instruments)
            ilev = df.index.names.index("instrument") if "instrument" in df.index.names else 1
            df = df[np.asarray(df.index.get_level_values(ilev).isin(codes))]
        if start_time is None and end_time is None:
            return df
        from qlib_prefect.data.selection import fetch_df_by_index

        return fetch_df_by_index(df, slice(start_time, end_time), level="datetime")


# ------------------------------------------------------------------------------------------- Alpha loaders
_ALPHA158_DEFAULT: dict[str, Any] = {
    "kbar": {},
    "price": {"windows": [0], "feature": ["OPEN", "HIGH", "LOW", "VWAP"]},
    "rolling": {},
}


class _AlphaDL(QlibDataLoader):
    """A loader whose ``feature`` group is the class' ``get_feature_config()`` (``config`` may add groups, e.g. a
    label, or replace ``feature``)."""

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        _config: dict[str, Any] = {"feature": self.get_feature_config()}
        if config is not None:
            _config.update(config)
        super().__init__(config=_config, **kwargs)


class Alpha360DL(_AlphaDL):
    """Loader of the Alpha360 features (``config`` may add groups, e.g. a label)."""

    @staticmethod
    def get_feature_config() -> tuple[list[str], list[str]]:
        """360 expressions: 60 days of close, open, high, low, vwap (/ today's close) and volume."""
        fields: list[str] = []
        names: list[str] = []
        for f in ("close", "open", "high", "low", "vwap"):
            fields += [f"Ref(${f}, {i})/$close" for i in range(59, 0, -1)] + [f"${f}/$close"]
            names += [f"{f.upper()}{i}" for i in range(59, 0, -1)] + [f"{f.upper()}0"]
        fields += [f"Ref($volume, {i})/($volume+1e-12)" for i in range(59, 0, -1)] + ["$volume/($volume+1e-12)"]
        names += [f"VOLUME{i}" for i in range(59, 0, -1)] + ["VOLUME0"]
        return fields, names


# rolling operators of Alpha158 in qlib's order: key -> (name prefix, expression template with {d})
_ROLLING: list[tuple[str, str, str]] = [
    ("ROC", "ROC", "Ref($close, {d})/$close"),
    ("MA", "MA", "Mean($close, {d})/$close"),
    ("STD", "STD", "Std($close, {d})/$close"),
    ("BETA", "BETA", "Slope($close, {d})/$close"),
    ("RSQR", "RSQR", "Rsquare($close, {d})"),
    ("RESI", "RESI", "Resi($close, {d})/$close"),
    ("MAX", "MAX", "Max($high, {d})/$close"),
    ("LOW", "MIN", "Min($low, {d})/$close"),  # qlib's include/exclude key is "LOW"
    ("QTLU", "QTLU", "Quantile($close, {d}, 0.8)/$close"),
    ("QTLD", "QTLD", "Quantile($close, {d}, 0.2)/$close"),
    ("RANK", "RANK", "Rank($close, {d})"),
    ("RSV", "RSV", "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)"),
    ("IMAX", "IMAX", "IdxMax($high, {d})/{d}"),
    ("IMIN", "IMIN", "IdxMin($low, {d})/{d}"),
    ("IMXD", "IMXD", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}"),
    ("CORR", "CORR", "Corr($close, Log($volume+1), {d})"),
    ("CORD", "CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})"),
    ("CNTP", "CNTP", "Mean($close>Ref($close, 1), {d})"),
    ("CNTN", "CNTN", "Mean($close<Ref($close, 1), {d})"),
    ("CNTD", "CNTD", "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})"),
    ("SUMP", "SUMP", "Sum(Greater($close-Ref($close, 1), 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"),
    ("SUMN", "SUMN", "Sum(Greater(Ref($close, 1)-$close, 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)"),
    (
        "SUMD",
        "SUMD",
        "(Sum(Greater($close-Ref($close, 1), 0), {d})-Sum(Greater(Ref($close, 1)-$close, 0), {d}))"
        "/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)",
    ),
    ("VMA", "VMA", "Mean($volume, {d})/($volume+1e-12)"),
    ("VSTD", "VSTD", "Std($volume, {d})/($volume+1e-12)"),
    (
        "WVMA",
        "WVMA",
        "Std(Abs($close/Ref($close, 1)-1)*$volume, {d})/(Mean(Abs($close/Ref($close, 1)-1)*$volume, {d})+1e-12)",
    ),
    (
        "VSUMP",
        "VSUMP",
        "Sum(Greater($volume-Ref($volume, 1), 0), {d})/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
    ),
    (
        "VSUMN",
        "VSUMN",
        "Sum(Greater(Ref($volume, 1)-$volume, 0), {d})/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
    ),
    (
        "VSUMD",
        "VSUMD",
        "(Sum(Greater($volume-Ref($volume, 1), 0), {d})-Sum(Greater(Ref($volume, 1)-$volume, 0), {d}))"
        "/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
    ),
]

_KBAR = [
    ("KMID", "($close-$open)/$open"),
    ("KLEN", "($high-$low)/$open"),
    ("KMID2", "($close-$open)/($high-$low+1e-12)"),
    ("KUP", "($high-Greater($open, $close))/$open"),
    ("KUP2", "($high-Greater($open, $close))/($high-$low+1e-12)"),
    ("KLOW", "(Less($open, $close)-$low)/$open"),
    ("KLOW2", "(Less($open, $close)-$low)/($high-$low+1e-12)"),
    ("KSFT", "(2*$close-$high-$low)/$open"),
    ("KSFT2", "(2*$close-$high-$low)/($high-$low+1e-12)"),
]


class Alpha158DL(_AlphaDL):
    """Loader of the Alpha158 features (``config`` may add groups, e.g. a label)."""

    @staticmethod
    def get_feature_config(config: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:
        """Expressions and names from a feature description (qlib's keys and defaults).

        ``config`` keys: ``kbar: {}``; ``price: {windows: [0..4], feature: [OPEN, HIGH, LOW, CLOSE, VWAP]}``;
        ``volume: {windows: [0..4]}``; ``rolling: {windows: [5, 10, 20, 30, 60], include: None, exclude: []}``.
        Rolling keys are the group names except ``LOW`` which selects the ``MIN`` features.
        """
        config = _ALPHA158_DEFAULT if config is None else config
        fields: list[str] = []
        names: list[str] = []
        if "kbar" in config:
            names += [n for n, _ in _KBAR]
            fields += [e for _, e in _KBAR]
        if "price" in config:
            pc = config["price"] or {}
            windows = pc.get("windows", range(5))
            for field in pc.get("feature", ["OPEN", "HIGH", "LOW", "CLOSE", "VWAP"]):
                field = field.lower()
                fields += [f"Ref(${field}, {d})/$close" if d != 0 else f"${field}/$close" for d in windows]
                names += [f"{field.upper()}{d}" for d in windows]
        if "volume" in config:
            windows = (config["volume"] or {}).get("windows", range(5))
            fields += [f"Ref($volume, {d})/($volume+1e-12)" if d != 0 else "$volume/($volume+1e-12)" for d in windows]
            names += [f"VOLUME{d}" for d in windows]
        if "rolling" in config:
            rc = config["rolling"] or {}
            windows = rc.get("windows", [5, 10, 20, 30, 60])
            include = rc.get("include", None)
            exclude = rc.get("exclude", []) or []
            for key, prefix, tmpl in _ROLLING:
                if key in exclude or (include is not None and key not in include):
                    continue
                fields += [tmpl.format(d=d) for d in windows]
                names += [f"{prefix}{d}" for d in windows]
        return fields, names
