"""The bundled S&P 500 sample (505 stocks + the index as ``SPX``, 2013-02-08 .. 2018-02-07, 1,259 dates).

:func:`sample_data_dir` turns the CSVs shipped in ``qlib_prefect/data/_bundled/`` into a qlib-format
directory once (no network), under ``$QLIB_PREFECT_HOME/sample/sp500_5yr-<hash>`` by default, and returns
its path. Layout and values are those of the acceptance script ``to_qlib.py``: fields
``open high low close volume factor(=1) change``, markets ``all`` (everything) and ``sp500`` (stocks only),
the index restricted to the stock calendar. A quality report is saved in ``<dir>/quality/``.

Caveats (see ``_bundled/README.md`` and docs/data.md): prices are split- but not dividend-adjusted,
membership is as of 2018 (survivorship), a few known glitches, no ``vwap`` (``$vwap`` is NaN).

Example:
    >>> import qlib_prefect
    >>> qlib_prefect.init(provider_uri=sample_data_dir(), region=SAMPLE_REGION)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from qlib_prefect.data.importer import import_frame
from qlib_prefect.data.storage import atomic_write_text
from qlib_prefect.errors import DataError

__all__ = [
    "SAMPLE_BENCHMARK",
    "SAMPLE_DIR_ENV",
    "SAMPLE_MARKET",
    "SAMPLE_REGION",
    "bundled_dir",
    "ensure_sample_env",
    "load_sample_frame",
    "sample_data_dir",
    "sample_hash",
]

SAMPLE_MARKET = "sp500"
SAMPLE_BENCHMARK = "SPX"
SAMPLE_REGION = "us"
SAMPLE_FIELDS = ("open", "high", "low", "close", "volume")
#: Jinja variable of the example configs: the bundled sample's qlib-format directory.
SAMPLE_DIR_ENV = "QLIB_PREFECT_SAMPLE_DIR"
_STOCKS = "all_stocks_5yr.csv.gz"
_INDEX = "sp500_index.csv.gz"
#: bump when the materialised layout changes (invalidates cached directories).
_LAYOUT_VERSION = "1"
_MARKER = "sample.json"
_hash_cache: dict[tuple, str] = {}


def bundled_dir() -> Path:
    """Folder of the shipped CSV files and their licences."""
    return Path(__file__).resolve().parent / "_bundled"


def sample_hash() -> str:
    """Short content hash of the bundled CSVs and the layout version."""
    files = [bundled_dir() / _STOCKS, bundled_dir() / _INDEX]
    for f in files:
        if not f.exists():
            raise DataError(f"{f}: bundled sample file missing (broken installation?)")
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _hash_cache:
        h = hashlib.blake2b(_LAYOUT_VERSION.encode(), digest_size=6)
        for f in files:
            h.update(f.read_bytes())
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def load_sample_frame() -> pd.DataFrame:
    """The long table ``symbol, date, open, high, low, close, volume`` (stocks + ``SPX`` on the stock calendar)."""
    df = pd.read_csv(bundled_dir() / _STOCKS, parse_dates=["date"])
    stocks = pd.DataFrame({
        "symbol": df["Name"].astype(str).str.replace(".", "_", regex=False).str.upper().astype(object),
        "date": df["date"],
        **{f: df[f].astype("float64") for f in SAMPLE_FIELDS},
    })
    ix = pd.read_csv(bundled_dir() / _INDEX)
    ix["Date"] = pd.to_datetime(ix["Date"], format="%m/%d/%Y")
    d0, d1 = stocks["date"].min(), stocks["date"].max()
    ix = ix[(ix["Date"] >= d0) & (ix["Date"] <= d1)]
    index = pd.DataFrame({
        "symbol": SAMPLE_BENCHMARK, "date": ix["Date"],
        "open": ix["Open"], "high": ix["High"], "low": ix["Low"], "close": ix["Close"],
        "volume": ix["Volume"].astype("float64"),
    })
    return pd.concat([stocks, index], ignore_index=True)


def sample_data_dir(path: str | Path | None = None, *, on_build: Callable[[Path], Any] | None = None) -> Path:
    """Materialise the sample as a qlib data directory (once) and return its path.

    Args:
        path: target directory; default ``$QLIB_PREFECT_HOME/sample/sp500_5yr-<hash>``. An existing
            complete sample there is reused; an existing non-sample directory is an error.
        on_build: called with the target directory just before the sample is (re)built, never when it is
            reused (e.g. to tell the user why this call takes a few seconds).
    """
    from qlib_prefect.config.settings import home_dir

    h = sample_hash()
    dest = Path(path).expanduser() if path is not None else home_dir() / "sample" / f"sp500_5yr-{h}"
    marker = dest / _MARKER
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("hash") == h:
                return dest
        except (OSError, ValueError):
            pass
    if dest.exists() and any(dest.iterdir()) and not marker.exists():
        raise DataError(f"{dest}: exists and is not a qlib-prefect sample directory; choose another --path")
    if on_build is not None:
        on_build(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.build-{uuid.uuid4().hex[:8]}"
    try:
        res = import_frame(
            load_sample_frame(), tmp, fields=list(SAMPLE_FIELDS),
            markets={SAMPLE_MARKET: f"all-but:{SAMPLE_BENCHMARK}"}, source=str(bundled_dir() / _STOCKS),
        )
        atomic_write_text(tmp / _MARKER, json.dumps({
            "name": "sp500_5yr", "hash": h, "instruments": res.n_instruments, "dates": res.n_dates,
            "market": SAMPLE_MARKET, "benchmark": SAMPLE_BENCHMARK, "region": SAMPLE_REGION,
        }, indent=2) + "\n")
        if dest.exists():  # stale sample (other hash) or a concurrent build finished first
            if (dest / _MARKER).exists() and json.loads((dest / _MARKER).read_text()).get("hash") == h:
                shutil.rmtree(tmp, ignore_errors=True)
                return dest
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_sample_env(config: Any, *, on_build: Callable[[Path], Any] | None = None) -> Path | None:
    """Set ``$QLIB_PREFECT_SAMPLE_DIR`` to the bundled sample (materialised once) when a config file uses it.

    Nothing happens when the variable is already set or ``config`` is not a path (a dict, a loaded config).
    Returns the sample directory when the variable was set here, else None. ``on_build``: see
    :func:`sample_data_dir`.
    """
    from qlib_prefect.config.settings import get_settings

    if get_settings().sample_dir is not None or not isinstance(config, (str, Path)):
        return None
    try:
        used = SAMPLE_DIR_ENV in Path(config).expanduser().read_text(encoding="utf-8")
    except OSError:  # a missing file is reported by whoever loads it
        return None
    if not used:
        return None
    path = sample_data_dir(on_build=on_build)
    os.environ[SAMPLE_DIR_ENV] = str(path)
    return path
