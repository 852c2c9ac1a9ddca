"""Helpers of the online tests (a unique module name: ``conftest`` clashes with other test folders' conftest)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

import qlib_prefect

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "golden" / "handlers" / "data"  # 24 instruments, 2019-01-02 .. 2020-09-09, qlib format
GOLD = ROOT / "golden" / "online"


def golden() -> dict:
    return json.loads((GOLD / "goldens.json").read_text())


def store_uri(session_tmp: Path, folder: Path) -> str:
    """A fresh MLflow SQLite store in ``folder``, copied from a per-process template (schema creation is slow)."""
    tpl = session_tmp / "online-mlflow-template" / "mlflow.db"
    if not tpl.exists():
        from mlflow.tracking import MlflowClient

        tpl.parent.mkdir(parents=True, exist_ok=True)
        build = tpl.with_name(f"build-{os.getpid()}.db")
        MlflowClient(tracking_uri=f"sqlite:///{build}").search_experiments()
        build.replace(tpl)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tpl, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


def init_store(uri: str, data: Path = DATA) -> None:
    qlib_prefect.init(provider_uri=str(data), region="us", exp_manager={
        "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
        "kwargs": {"uri": uri, "default_exp_name": "Experiment"}})


def cut_data(dst: Path, last: pd.Timestamp, src: Path = DATA) -> None:
    """``dst`` = the qlib-format ``src`` as it was on day ``last``: calendar, instrument spans and feature files
    cut after that day (what a data directory looked like before the later days arrived)."""
    if not dst.exists():
        shutil.copytree(src, dst)
    cal = pd.DatetimeIndex(pd.read_csv(src / "calendars" / "day.txt", header=None)[0])
    n = int((cal <= last).sum())
    for p in (src / "features").rglob("*.bin"):
        arr = np.fromfile(p, dtype="<f4")
        start, out = int(arr[0]), dst / p.relative_to(src)
        if start >= n:  # the instrument did not exist yet
            out.unlink(missing_ok=True)
            if out.parent.exists() and not any(out.parent.iterdir()):
                out.parent.rmdir()
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(arr[: 1 + n - start].astype("<f4").tobytes())
    for p in (src / "instruments").glob("*.txt"):
        spans = pd.read_csv(p, sep="\t", header=None, names=["code", "start", "end"], parse_dates=[1, 2])
        keep = spans[spans["start"] <= last].assign(end=lambda f: f["end"].clip(upper=last))
        (dst / "instruments" / p.name).write_text("".join(
            f"{r.code}\t{r.start.date()}\t{r.end.date()}\n" for r in keep.itertuples()))
    (dst / "calendars" / "day.txt").write_text("".join(f"{d.date()}\n" for d in cal[:n]))


def day_frame(day: pd.Timestamp, fields: tuple = ("open", "high", "low", "close", "volume", "factor"),
              src: Path = DATA) -> pd.DataFrame:
    """One day of ``src`` as a long CSV drop frame: ``symbol, date, <fields>`` (instruments with data that day)."""
    cal = pd.DatetimeIndex(pd.read_csv(src / "calendars" / "day.txt", header=None)[0])
    i = int(cal.get_loc(day))
    rows = []
    for d in sorted((src / "features").iterdir()):
        row: dict = {"symbol": d.name.upper(), "date": day.date().isoformat()}
        for f in fields:
            arr = np.fromfile(d / f"{f}.day.bin", dtype="<f4")
            j = i - int(arr[0]) + 1
            row[f] = float(arr[j]) if 1 <= j < len(arr) else np.nan
        if not np.isnan(row["close"]):
            rows.append(row)
    return pd.DataFrame(rows)
