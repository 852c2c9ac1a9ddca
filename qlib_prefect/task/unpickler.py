"""The task pool's allow-list unpickler: ``def*`` / ``res*`` fields of task documents are decoded with it.

qlib unpickles task documents with plain ``pickle.loads``: whoever can write to the pool runs code in every
worker. Here only the exact globals a task needs resolve: containers, datetime, pathlib, decimal, uuid, numpy
arrays and scalar types, the pandas data classes (frames, series, indexes, arrays, dtypes, timestamps, offsets)
and our recorders. Nothing that touches files or processes (``pandas.ExcelWriter``, ``pandas.HDFStore``,
``numpy.memmap``, ``os.system``, ``builtins.getattr``) -- those raise :class:`UnsafePickleError` naming the global;
:func:`add_safe_class` extends the list.

Example:
    >>> safe_loads(pickle.dumps({"a": 1}))
    {'a': 1}
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from qlib_prefect.errors import ConfigError, LoadObjectError

__all__ = ["AllowListUnpickler", "UnsafePickleError", "add_safe_class", "safe_loads"]


class UnsafePickleError(LoadObjectError, pickle.UnpicklingError):
    """A pickled task definition or result refers to a class outside the allow-list."""


_SAFE_GLOBALS: set[tuple[str, str]] = {
    *(("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int",
                                "float", "complex", "bool", "range", "slice", "object")),
    *(("__builtin__", n) for n in ("set", "frozenset", "bytearray", "complex", "slice", "xrange", "list",
                                   "object")),
    ("copyreg", "_reconstructor"),
    ("copy_reg", "_reconstructor"),
    ("_codecs", "encode"),
    *(("collections", n) for n in ("OrderedDict", "defaultdict", "Counter", "deque")),
    *(("datetime", n) for n in ("datetime", "date", "time", "timedelta", "timezone")),
    *(("pathlib", n) for n in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")),
    ("decimal", "Decimal"),
    ("uuid", "UUID"),
    ("bson.objectid", "ObjectId"),
    # numpy (2.x and 1.x module names)
    *((m, n) for m in ("numpy._core.multiarray", "numpy.core.multiarray") for n in ("_reconstruct", "scalar")),
    *((m, "_frombuffer") for m in ("numpy._core.numeric", "numpy.core.numeric")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # pandas reconstruction helpers
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.tslibs.nattype", "_nat_unpickle"),
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    ("pandas.core.indexes.period", "_new_PeriodIndex"),
    ("pandas.core.indexes.multi", "_new_multi_index"),
    ("pandas._libs.sparse", "BlockIndex"),
    # pyarrow buffers behind pandas' default string dtype
    ("pyarrow.lib", "_restore_array"),
    ("pyarrow.lib", "py_buffer"),
    ("pyarrow.lib", "type_for_alias"),
    # our recorders (TrainerRM stores them as results)
    ("qlib_prefect.workflow.recorder", "MLflowRecorder"),
    ("qlib_prefect.workflow.recorder", "Recorder"),
}
#: the pandas data classes a task definition or result holds, by every module path pandas 1.x-3.x pickles them
#: under; nothing that opens files or processes (``ExcelWriter``, ``HDFStore``, readers, ``eval``) is here.
_PANDAS_CLASSES: dict[str, tuple[str, ...]] = {
    "pandas": (
        "DataFrame", "Series", "Index", "MultiIndex", "RangeIndex", "DatetimeIndex", "TimedeltaIndex", "PeriodIndex",
        "CategoricalIndex", "IntervalIndex", "Categorical", "Timestamp", "Timedelta", "Period", "Interval", "NA",
        "NaT", "CategoricalDtype", "DatetimeTZDtype", "PeriodDtype", "IntervalDtype", "StringDtype", "BooleanDtype",
        "Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype", "UInt8Dtype", "UInt16Dtype", "UInt32Dtype",
        "UInt64Dtype", "Float32Dtype", "Float64Dtype", "ArrowDtype", "SparseDtype",
    ),
    "pandas.arrays": (
        "ArrowStringArray", "BooleanArray", "Categorical", "DatetimeArray", "FloatingArray", "IntegerArray",
        "IntervalArray", "NumpyExtensionArray", "PeriodArray", "SparseArray", "StringArray", "TimedeltaArray",
        "ArrowExtensionArray",
    ),
    "pandas.core.frame": ("DataFrame",),
    "pandas.core.series": ("Series",),
    "pandas.core.indexes.base": ("Index",),
    "pandas.core.indexes.multi": ("MultiIndex",),
    "pandas.core.indexes.range": ("RangeIndex",),
    "pandas.core.indexes.datetimes": ("DatetimeIndex",),
    "pandas.core.indexes.timedeltas": ("TimedeltaIndex",),
    "pandas.core.indexes.period": ("PeriodIndex",),
    "pandas.core.indexes.category": ("CategoricalIndex",),
    "pandas.core.indexes.numeric": ("Int64Index", "UInt64Index", "Float64Index", "NumericIndex"),
    "pandas.core.arrays.categorical": ("Categorical",),
    "pandas.core.arrays.datetimes": ("DatetimeArray",),
    "pandas.core.arrays.timedeltas": ("TimedeltaArray",),
    "pandas.core.arrays.period": ("PeriodArray",),
    "pandas.core.arrays.integer": ("IntegerArray", "Int64Dtype", "Int32Dtype"),
    "pandas.core.arrays.floating": ("FloatingArray", "Float64Dtype"),
    "pandas.core.arrays.boolean": ("BooleanArray", "BooleanDtype"),
    "pandas.core.arrays.string_": ("StringArray", "StringDtype"),
    "pandas.core.arrays.string_arrow": ("ArrowStringArray",),
    "pandas.core.arrays.numpy_": ("NumpyExtensionArray", "PandasArray"),
    "pandas.core.dtypes.dtypes": ("CategoricalDtype", "DatetimeTZDtype", "PeriodDtype", "IntervalDtype"),
    "pandas.core.internals.managers": ("BlockManager", "SingleBlockManager"),
    "pandas.core.internals.blocks": ("Block", "NumpyBlock", "ObjectBlock", "DatetimeTZBlock", "ExtensionBlock",
                                      "FloatBlock", "IntBlock", "DatetimeBlock", "DatetimeLikeBlock"),
    "pandas._libs.tslibs.timestamps": ("Timestamp",),
    "pandas._libs.tslibs.timedeltas": ("Timedelta",),
    "pandas._libs.tslibs.period": ("Period",),
    "pandas._libs.tslibs.nattype": ("NaTType",),
    "pandas._libs.interval": ("Interval",),
    "pandas._libs.missing": ("NAType",),
}
for _mod, _names in _PANDAS_CLASSES.items():
    _SAFE_GLOBALS.update((_mod, _n) for _n in _names)


def add_safe_class(module: str | type, name: str | None = None) -> None:
    """Allow ``module.name`` (or the class ``module``) in pickled task definitions and results.

    Only add classes you trust: unpickling may call them with data from the pool.

    Example:
        >>> add_safe_class("my_package.models", "MyResult")  # doctest: +SKIP
        >>> add_safe_class(MyResult)  # doctest: +SKIP
    """
    if isinstance(module, type):
        module, name = module.__module__, module.__qualname__
    if not name or not isinstance(module, str):
        raise ConfigError(f"add_safe_class: give a class, or a module and a name (got {module!r}, {name!r})")
    _SAFE_GLOBALS.add((module, name))


class AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the exact globals of the allow-list (plus numpy scalar types and pandas
    date offsets, which are plain data); anything else raises :class:`UnsafePickleError`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        if module == "pandas._libs.tslibs.offsets" and "." not in name:  # date offsets (Day, MonthEnd, ...)
            from pandas.tseries.offsets import BaseOffset

            obj = super().find_class(module, name)
            if isinstance(obj, type) and issubclass(obj, BaseOffset):
                return obj
        if module == "numpy" and "." not in name:  # numpy scalar types (np.float64, ...), never np.memmap & co
            import numpy as np

            obj = getattr(np, name, None)
            if isinstance(obj, type) and (issubclass(obj, np.generic) or issubclass(obj, np.dtype)):
                return obj
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: not in the task pool's allow-list. If you trust it, call "
            f"qlib_prefect.task.manage.add_safe_class({module!r}, {name!r}) before reading the pool"
        )


def safe_loads(data: bytes, *, where: str = "pickle") -> Any:
    """``pickle.loads`` restricted to the allow-list (see :func:`add_safe_class`)."""
    try:
        return AllowListUnpickler(io.BytesIO(bytes(data))).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{where}: {e}") from None
