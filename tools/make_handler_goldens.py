"""Produce the handler-level golden fixtures in tests/golden/handlers/ with the REAL qlib.

Run with the oracle venv (qlib 0.9.7), from the repository root::

    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \\
        /work/qlib-venv/bin/python tools/make_handler_goldens.py [--out tests/golden/handlers] [--data-only]

Steps:
1. write a small synthetic, deliberately quirky qlib-format data directory (``<out>/data``; deterministic seed);
2. write ``<out>/configs.json``: the exact DatasetH/handler configs of every case (qlib module paths);
3. build every case with qlib (``qlib.init(provider_uri=<out>/data, region="us", kernels=1)``) and store the
   ``raw``/``infer``/``learn`` views of ``DatasetH.prepare(["train", "valid", "test"], col_set=["feature", "label"])``
   (segments concatenated in that order) as parquet: columns ``"<group>/<name>"``, index ``(datetime, instrument)``.

To keep the fixtures small, a view whose content is byte-identical to an already stored view is recorded as
``same_as``; a view whose feature columns are identical to the rows of a stored view stores only its label
columns and records ``features_ref`` (the test rebuilds the expected frame from both).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qlib_data_writer import write_calendar, write_feature, write_instruments

SEED = 20240607
N_DAYS = 420
FIELDS = ["open", "high", "low", "close", "volume", "factor", "change"]
CODES = [f"S{i:02d}" for i in range(24)]

# Calendar positions used by the quirks and the handler windows.
A158_START, A158_FIT_END, A158_VALID_END, A158_END = 300, 350, 385, 418
A360_START, A360_FIT_END, A360_VALID_END, A360_END = 376, 400, 410, 418
ALL_NAN_DAY = 395


def make_calendar() -> pd.DatetimeIndex:
    """420 business days from 2019-01-02 with one 'holiday' every 21 days."""
    b = pd.bdate_range("2019-01-02", periods=N_DAYS + N_DAYS // 20 + 5)
    keep = [d for i, d in enumerate(b) if i % 21 != 10]
    return pd.DatetimeIndex(keep[:N_DAYS])


def _ohlcv(rng: np.random.Generator, n: int, p0: float, vol: float) -> dict[str, np.ndarray]:
    r = rng.normal(0.0003, vol, n)
    close = p0 * np.exp(np.cumsum(r))
    prev = np.concatenate([[p0], close[:-1]])
    open_ = prev * np.exp(rng.normal(0, vol / 4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2, n)))
    volume = np.round(np.exp(rng.normal(13, 0.5, n)))
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "factor": np.ones(n)}


VWAP_CODES = ["S01", "S02", "S03", "S04", "S08", "S09", "S11", "S16"]
NO_VWAP_FILE = ["S02", "S09"]


def make_data(root: Path, vwap_root: Path | None = None) -> dict[str, object]:
    """Write the synthetic data set; returns a description of its quirks (stored in configs.json).

    With ``vwap_root``, also write the "with vwap" variant there: the same series for the 8 codes of market
    ``small`` plus ``vwap = (high + low + close) / 3``, except S02 and S09, which have no vwap file.
    """
    rng = np.random.default_rng(SEED)
    cal = make_calendar()
    write_calendar(root, cal)
    quirks: dict[str, str] = {}
    series: dict[str, tuple[int, dict[str, np.ndarray]]] = {}
    for code in CODES:
        d = _ohlcv(rng, N_DAYS, float(rng.uniform(8, 150)), float(rng.uniform(0.01, 0.03)))
        series[code] = (0, d)

    def nan_all(code: str, i0: int, i1: int) -> None:
        for f in ("open", "high", "low", "close", "volume", "factor"):
            series[code][1][f][i0:i1] = np.nan

    # S01: suspensions (NaN runs inside the span), a single suspended day, a volume-only NaN.
    nan_all("S01", 340, 352)
    nan_all("S01", 305, 306)
    series["S01"][1]["volume"][330] = np.nan
    quirks["S01"] = "suspended 340-351 and 305 (all fields NaN); volume NaN at 330"
    # S02: constant prices and volume -> zero-std windows (Rsquare/Corr masking, Std=0).
    d = series["S02"][1]
    for f in ("open", "high", "low", "close"):
        d[f][310:400] = 25.0
    d["volume"][320:400] = 100000.0
    quirks["S02"] = "constant OHLC=25 on 310-399, constant volume on 320-399"
    # S03: late listing: the series starts at 360.
    series["S03"] = (360, {f: v[360:] for f, v in series["S03"][1].items()})
    quirks["S03"] = "listed late: data and spans start at 360"
    # S04: leaves the market (data and all spans end at 385).
    series["S04"] = (0, {f: v[:386] for f, v in series["S04"][1].items()})
    quirks["S04"] = "delisted: data and spans end at 385"
    quirks["S05"] = "mkt span ends at 340 (data continues to the end)"
    quirks["S06"] = "joins mkt late at 350 (data from 0)"
    quirks["S07"] = "two mkt spans: 0-330 and 360-419"
    # S08: extreme jumps.
    d = series["S08"][1]
    for f in ("open", "high", "low", "close"):
        d[f][350:] *= 8.0
        d[f][380:] *= 0.05
    quirks["S08"] = "price x8 at 350, x0.05 at 380"
    # S09: zero-volume days with unchanged prices.
    d = series["S09"][1]
    for i in (320, 321, 322, 400):
        for f in ("open", "high", "low", "close"):
            d[f][i] = d["close"][i - 1]
        d["volume"][i] = 0.0
    quirks["S09"] = "volume 0 (prices flat) at 320-322 and 400"
    # S10: a split: factor 1 -> 2 at 330 (adjusted prices continuous, volume / factor).
    d = series["S10"][1]
    d["factor"][330:] = 2.0
    quirks["S10"] = "factor 1 -> 2 at 330"
    # S11: a bad tick with open = 0 (division by zero -> inf in KMID etc.).
    series["S11"][1]["open"][390] = 0.0
    quirks["S11"] = "open = 0 at 390 (inf features)"
    # S12: data starts shortly before the Alpha158 window (short rolling windows at the handler start).
    series["S12"] = (280, {f: v[280:] for f, v in series["S12"][1].items()})
    quirks["S12"] = "data and spans start at 280 (20 days before the Alpha158 window)"
    # S13: the feature files end at 410 but the membership spans run to the calendar end.
    series["S13"] = (0, {f: v[:411] for f, v in series["S13"][1].items()})
    quirks["S13"] = "data ends at 410, spans run to 419"
    # S14: close NaN on the last calendar day only.
    series["S14"][1]["close"][N_DAYS - 1] = np.nan
    quirks["S14"] = "close NaN on the last day"
    # S16: close = 0 on one day (inf in the Alpha360 block).
    series["S16"][1]["close"][405] = 0.0
    quirks["S16"] = "close = 0 at 405"
    quirks["S22"] = "in all.txt, not in mkt"
    quirks["S23"] = "listed in mkt and all.txt, but has no feature files"
    quirks["*"] = f"every instrument NaN on calendar day {ALL_NAN_DAY}; label needs data past the end"

    for code, (i0, d) in series.items():
        if code == "S23":
            continue
        j = ALL_NAN_DAY - i0
        if 0 <= j < len(d["close"]):
            for f in ("open", "high", "low", "close", "volume", "factor"):
                d[f][j] = np.nan
        close = d["close"]
        with np.errstate(divide="ignore", invalid="ignore"):
            change = close / np.concatenate([[np.nan], close[:-1]]) - 1.0
        d["change"] = change
        adj = d["factor"]
        for f in FIELDS:
            v = d[f]
            if f == "volume":
                v = v / adj  # qlib convention: volume divided by the adjustment factor
            write_feature(root, code, f, i0, v)
            if vwap_root is not None and code in VWAP_CODES:
                write_feature(vwap_root, code, f, i0, v)
        if vwap_root is not None and code in VWAP_CODES and code not in NO_VWAP_FILE:
            write_feature(vwap_root, code, "vwap", i0, (d["high"] + d["low"] + d["close"]) / 3.0)

    def span(code: str) -> tuple[int, int]:
        if code == "S23":
            return 0, N_DAYS - 1
        i0, d = series[code]
        n = len(d["close"])
        return i0, (N_DAYS - 1 if code == "S13" else i0 + n - 1)

    all_spans = [(c, cal[span(c)[0]], cal[span(c)[1]]) for c in CODES]
    write_instruments(root, "all", all_spans)
    mkt = []
    for c in CODES:
        s0, s1 = span(c)
        if c == "S22":
            continue
        if c == "S05":
            mkt.append((c, cal[s0], cal[340]))
        elif c == "S06":
            mkt.append((c, cal[350], cal[s1]))
        elif c == "S07":
            mkt += [(c, cal[0], cal[330]), (c, cal[360], cal[s1])]
        else:
            mkt.append((c, cal[s0], cal[s1]))
    write_instruments(root, "mkt", mkt)
    small = VWAP_CODES
    write_instruments(root, "small", [s for s in all_spans if s[0] in small])
    if vwap_root is not None:
        write_calendar(vwap_root, cal)
        write_instruments(vwap_root, "all", [s for s in all_spans if s[0] in small])
    return {"seed": SEED, "days": N_DAYS, "first": str(cal[0].date()), "last": str(cal[-1].date()),
            "quirks": quirks, "fields": FIELDS, "markets": {"all": "24 codes", "mkt": "all but S22",
                                                            "small": small},
            "data_vwap": f"codes {small} with vwap = (high + low + close) / 3, no vwap file for {NO_VWAP_FILE}; "
                         "market all = these 8"}


def _d(cal: pd.DatetimeIndex, i: int, shift_days: int = 0) -> str:
    return str((cal[i] + pd.Timedelta(days=shift_days)).date())


A158_SUBSET = ["KMID", "KLEN", "KSFT2", "OPEN0", "VWAP0", "ROC5", "STD20", "BETA10", "RSQR5", "RSQR60", "RESI10",
               "QTLU20", "RANK10", "RSV5", "IMAX20", "IMXD60", "CORR5", "CORD20", "CNTD10", "SUMP30", "VMA5",
               "VSTD20", "WVMA60", "VSUMD10"]

OPS_EXPRS = [
    "$close", "$volume", "$factor", "$change", "$vwap", "Ref($close, 1)", "Ref($close, -1)", "Mean($close, 5)",
    "Std($close, 10)", "Var($close, 10)", "Skew($close, 10)", "Kurt($close, 10)", "Med($close, 10)",
    "Mad($close, 10)", "Max($high, 10)", "Min($low, 10)", "Sum($volume, 5)", "Count($close, 10)",
    "Quantile($close, 10, 0.3)", "Rank($close, 10)", "IdxMax($high, 10)", "IdxMin($low, 10)", "Slope($close, 10)",
    "Rsquare($close, 10)", "Resi($close, 10)", "Corr($close, $volume, 10)", "Cov($close, $volume, 10)",
    "Delta($close, 3)", "WMA($close, 10)", "Abs($change)", "Sign($change)", "Log($volume)", "Power($close, 2)",
    "If($close > $open, $high, $low)", "Gt($close, $open)", "$close > Ref($close, 1)",
    "($close > $open) & ($volume > 0)", "($close < $open) | ($volume == 0)", "Greater($open, $close)",
    "Less($open, $close)", "$volume / Ref($volume, 1)", "2 * $open - $close", "Not($close > $open)",
    "Ne($close, $open)", "Le($close, $open)", "Ge($close, $open)", "Lt($close, $open)", "Eq($volume, 0)",
]
OPS_QUIRK_EXPRS = ["Ref($close, 0)", "Mean($close, 0)", "Sum($volume, 0)", "EMA($close, 10)", "EMA($close, 0.5)",
                   "Max($high, 0)", "Std($close, 0)"]


#: cases that read another data directory than ``data``
CASE_PROVIDER = {"alpha158vwap": "data_vwap"}


def make_cases(cal: pd.DatetimeIndex) -> dict[str, dict]:
    """The DatasetH configs of every golden case (qlib class/module paths; JSON-serialisable)."""
    h158 = {"start_time": _d(cal, A158_START), "end_time": _d(cal, A158_END),
            "fit_start_time": _d(cal, A158_START), "fit_end_time": _d(cal, A158_FIT_END), "instruments": "mkt"}
    seg158 = {"train": [_d(cal, A158_START, -3), _d(cal, A158_FIT_END)],
              "valid": [_d(cal, A158_FIT_END, 1), _d(cal, A158_VALID_END)],
              "test": [_d(cal, A158_VALID_END, 1), _d(cal, A158_END, 5)]}
    h360 = {"start_time": _d(cal, A360_START), "end_time": _d(cal, A360_END),
            "fit_start_time": _d(cal, A360_START), "fit_end_time": _d(cal, A360_FIT_END), "instruments": "small"}
    seg360 = {"train": [_d(cal, A360_START), _d(cal, A360_FIT_END)],
              "valid": [_d(cal, A360_FIT_END, 1), _d(cal, A360_VALID_END)],
              "test": [_d(cal, A360_VALID_END, 1), _d(cal, A360_END)]}
    a158_all = [c for c in _alpha158_names()]
    drop_cols = [c for c in a158_all if c not in A158_SUBSET[:16]]

    def ds(handler: dict, segments: dict) -> dict:
        return {"class": "DatasetH", "module_path": "qlib.data.dataset",
                "kwargs": {"handler": handler, "segments": segments}}

    def a158(**kw) -> dict:
        return {"class": "Alpha158", "module_path": "qlib.contrib.data.handler", "kwargs": {**h158, **kw}}

    def a360(**kw) -> dict:
        return {"class": "Alpha360", "module_path": "qlib.contrib.data.handler", "kwargs": {**h360, **kw}}

    label_expr = "Ref($close, -1)/$close - 1"
    return {
        # The LightGBM Alpha158 YAML handler: no infer processors, learn = DropnaLabel + CSZScoreNorm(label).
        "alpha158": ds(a158(), seg158),
        "alpha158_label2": ds(a158(label=[["Ref($close, -1)/$close - 1", "Ref($close, -5)/$close - 1"],
                                          ["LABEL0", "LABEL1"]]), seg158),
        "alpha158_procs_a": ds(a158(
            infer_processors=[
                {"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": A158_SUBSET}},
                {"class": "ProcessInf", "kwargs": {}},
                {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
                {"class": "CSZFillna", "kwargs": {"fields_group": "feature"}},
            ],
            learn_processors=[{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}],
        ), seg158),
        "alpha158_procs_b": ds(a158(
            infer_processors=[
                {"class": "DropCol", "kwargs": {"col_list": drop_cols}},
                {"class": "MinMaxNorm", "kwargs": {}},
                {"class": "TanhProcess", "kwargs": {}},
                {"class": "Fillna", "kwargs": {"fields_group": "feature", "fill_value": -1}},
            ],
            learn_processors=[
                {"class": "DropnaProcessor", "kwargs": {"fields_group": "label"}},
                {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label", "method": "robust"}},
                {"class": "CSRankNorm", "kwargs": {"fields_group": "feature"}},
            ],
        ), seg158),
        "alpha158_indep": ds(a158(
            process_type="independent",
            shared_processors=[
                {"class": "FilterCol", "kwargs": {"fields_group": "feature", "col_list": A158_SUBSET[8:]}},
                {"class": "ProcessInf", "kwargs": {}},
            ],
            infer_processors=[{"class": "ZScoreNorm", "kwargs": {"fields_group": "feature"}},
                              {"class": "Fillna", "kwargs": {}}],
            learn_processors=[{"class": "DropnaLabel"},
                              {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}},
                              {"class": "CSZScoreNorm", "kwargs": {"fields_group": "feature"}}],
        ), seg158),
        # Alpha360 with the class defaults (infer ProcessInf, ZScoreNorm(fit), Fillna; learn DropnaLabel, CSZScoreNorm).
        "alpha360": ds(a360(), seg360),
        # The LightGBM Alpha360 YAML handler (label override with spaces, learn CSRankNorm(label)).
        "alpha360_lgb_yaml": ds(a360(infer_processors=[],
                                     learn_processors=[{"class": "DropnaLabel"},
                                                       {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}],
                                     label=[["Ref($close, -2) / Ref($close, -1) - 1"], ["LABEL0"]]), seg360),
        # Alpha158vwap on the "with vwap" data (provider data_vwap; S02 and S09 have no vwap file).
        "alpha158vwap": ds({"class": "Alpha158vwap", "module_path": "qlib.contrib.data.handler",
                            "kwargs": {**h360, "instruments": "all"}}, seg360),
        # Plain DataHandlerLP + QlibDataLoader on the whole universe: operators beyond Alpha158.
        "ops": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": "all", "start_time": h158["start_time"], "end_time": h158["end_time"],
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [OPS_EXPRS, [f"F{i:02d}" for i in range(len(OPS_EXPRS))]],
                           "label": [[label_expr], ["LABEL0"]]}}}}}, seg158),
        # An explicit instrument list (no membership spans: rows wherever data exists), incl. S22 (not in mkt),
        # S23 (no data), S05 (mkt span ends early), S07 (two mkt spans), S13 (data shorter than its span);
        # handler dates that are not trading days / beyond the calendar.
        "ops_list": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": ["S03", "S04", "S05", "S07", "S13", "S22", "S23"],
            "start_time": "2020-03-14", "end_time": "2020-12-31",  # a Saturday; past the calendar end
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [["$close", "Mean($close, 5)", "Ref($close, -2)", "$close/Ref($close, 1) - 1"],
                                       ["CLOSE", "MA5", "FWD2", "RET1"]],
                           "label": [[label_expr], ["LABEL0"]]}}}}}, seg158),
        # Plain DataHandlerLP with processors (no check_transform_proc: fit times given explicitly), shared
        # processors, CSZScoreNorm over a list of groups; inf-producing expressions.
        "ops_procs": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": "mkt", "start_time": h158["start_time"], "end_time": h158["end_time"],
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [["$volume / Ref($volume, 1)", "Log($volume)", "$close / $open",
                                        "Corr($close, $volume, 10)", "Rank($close, 10)", "$high / $close - 1"],
                                       ["VRATIO", "LOGV", "CO", "CORR10", "RANK10", "HC"]],
                           "label": [[label_expr], ["LABEL0"]]}}},
            "shared_processors": [{"class": "ProcessInf", "kwargs": {}}],
            "infer_processors": [
                {"class": "ZScoreNorm", "kwargs": {"fit_start_time": h158["fit_start_time"],
                                                   "fit_end_time": h158["fit_end_time"], "fields_group": "feature"}},
                {"class": "CSZScoreNorm", "kwargs": {"fields_group": ["feature", "label"]}},
                {"class": "Fillna", "kwargs": {"fill_value": 0}},
            ],
            "learn_processors": [{"class": "DropnaLabel"},
                                 {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}},
                                 {"class": "TanhProcess", "kwargs": {}}],
        }}, seg158),
        # Tiny cross-sections (1-3 instruments per date: S12 alone before S03 lists, S04 delists): CS processors
        # with a single value (std NaN, MAD 0 -> robust z-score inf/NaN then clipped).
        "ops_single": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": ["S03", "S04", "S12"], "start_time": _d(cal, 340), "end_time": h158["end_time"],
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [["$close / Ref($close, 1) - 1", "$volume", "Rank($close, 5)"],
                                       ["RET1", "VOL", "RANK5"]],
                           "label": [[label_expr], ["LABEL0"]]}}},
            "infer_processors": [{"class": "ProcessInf", "kwargs": {}},
                                 {"class": "CSZScoreNorm", "kwargs": {"fields_group": "feature", "method": "robust"}},
                                 {"class": "CSZFillna", "kwargs": {"fields_group": "feature"}}],
            "learn_processors": [{"class": "DropnaLabel"},
                                 {"class": "CSZScoreNorm", "kwargs": {"fields_group": "label"}}],
        }}, seg158),
        # An instrument processor: TimeRangeFlt keeps instruments whose (span-masked) rows reach both ends.
        "ops_timerange": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": "mkt", "start_time": h158["start_time"], "end_time": h158["end_time"],
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [["$close", "Mean($close, 5)"], ["CLOSE", "MA5"]],
                           "label": [[label_expr], ["LABEL0"]]},
                "inst_processors": [{"class": "TimeRangeFlt", "module_path": "qlib.data.dataset.processor",
                                     "kwargs": {"start_time": h158["start_time"],
                                                "end_time": h158["end_time"]}}]}}}}, seg158),
        # Operators whose qlib result depends on the loaded window (N=0 expanding, Ref(x, 0), EMA).
        "ops_quirks": ds({"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler", "kwargs": {
            "instruments": "all", "start_time": h158["start_time"], "end_time": h158["end_time"],
            "data_loader": {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader", "kwargs": {
                "config": {"feature": [OPS_QUIRK_EXPRS, [f"Q{i:02d}" for i in range(len(OPS_QUIRK_EXPRS))]],
                           "label": [[label_expr], ["LABEL0"]]}}}}}, seg158),
    }


#: DatasetH.prepare / handler.fetch / get_cols calls beyond the stored views ({"slice": [a, b]} means slice(a, b)).
API_PROBES = [
    {"case": "alpha158", "call": "prepare", "args": ["test"], "kwargs": {"col_set": "feature"}},
    {"case": "alpha158", "call": "prepare", "args": ["train"], "kwargs": {"col_set": "__all", "data_key": "learn"}},
    {"case": "alpha158", "call": "prepare", "args": ["valid"], "kwargs": {"col_set": "label", "data_key": "raw"}},
    {"case": "alpha158", "call": "prepare", "args": [["2020-05-01", "2020-05-15"]], "kwargs": {"col_set": "__raw"}},
    {"case": "alpha158", "call": "prepare", "args": [{"slice": ["2020-08-29", None]}],
     "kwargs": {"col_set": ["label"], "data_key": "learn"}},
    {"case": "alpha158", "call": "prepare", "args": [["train", "test"]], "kwargs": {"col_set": "label"}},
    {"case": "alpha158", "call": "fetch", "args": ["2020-05-04"], "kwargs": {"col_set": "label", "squeeze": True}},
    {"case": "alpha158", "call": "fetch", "args": [["2020-05-01", "2020-05-08"]],
     "kwargs": {"col_set": ["label"], "data_key": "learn"}},
    {"case": "alpha158", "call": "fetch", "args": ["S07"],
     "kwargs": {"level": "instrument", "col_set": "label", "data_key": "raw"}},
    {"case": "alpha158", "call": "fetch", "args": [], "kwargs": {"col_set": "feature", "data_key": "raw"}},
    {"case": "alpha158", "call": "get_cols", "args": ["label"], "kwargs": {}},
    {"case": "alpha158", "call": "prepare", "args": [{"slice": ["2021-01-01", "2021-02-01"]}],
     "kwargs": {"col_set": ["feature", "label"], "data_key": "learn"}},
    {"case": "alpha158_procs_a", "call": "get_cols", "args": [], "kwargs": {"col_set": "feature"}},
    {"case": "alpha158_procs_a", "call": "get_cols", "args": [], "kwargs": {"col_set": "__all", "data_key": "raw"}},
    {"case": "alpha360", "call": "prepare", "args": ["valid"], "kwargs": {"col_set": "feature", "data_key": "learn"}},
]


def probe_args(spec: dict) -> tuple[list, dict]:
    conv = [slice(*a["slice"]) if isinstance(a, dict) else a for a in spec["args"]]
    return conv, dict(spec["kwargs"])


def summarize(obj: object) -> dict:
    """A compact, comparable description of a prepare/fetch/get_cols result (same code in the test)."""

    def key(i: object) -> str:
        parts = i if isinstance(i, tuple) else (i,)
        return "|".join(pd.Timestamp(e).strftime("%Y-%m-%d") if isinstance(e, (pd.Timestamp, np.datetime64))
                        else str(e) for e in parts)

    if isinstance(obj, list):
        return {"type": "list", "items": [key(c) for c in obj]}
    if isinstance(obj, pd.Series):
        cols, vals = [str(obj.name)], obj.to_numpy("float64", na_value=np.nan)
    else:
        cols, vals = [key(c) for c in obj.columns], obj.to_numpy("float64", na_value=np.nan)
    idx = obj.index
    return {"type": type(obj).__name__, "shape": list(obj.shape), "index_names": [str(n) for n in idx.names],
            "columns": cols, "index_head": [key(i) for i in idx[:3]], "index_tail": [key(i) for i in idx[-3:]],
            "nansum": float(np.nansum(vals[np.isfinite(vals)])), "n_nan": int(np.isnan(vals).sum())}


def _alpha158_names() -> list[str]:
    names = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2", "OPEN0", "HIGH0", "LOW0",
             "VWAP0"]
    groups = ["ROC", "MA", "STD", "BETA", "RSQR", "RESI", "MAX", "MIN", "QTLU", "QTLD", "RANK", "RSV", "IMAX",
              "IMIN", "IMXD", "CORR", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "VMA", "VSTD", "WVMA",
              "VSUMP", "VSUMN", "VSUMD"]
    return names + [f"{g}{d}" for g in groups for d in (5, 10, 20, 30, 60)]


# ----------------------------------------------------------------------------------------------- qlib side


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df.columns = ["/".join(map(str, c)) for c in df.columns]
    return df


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (a.shape == b.shape and list(a.columns) == list(b.columns) and a.index.equals(b.index)
            and all(a[c].dtype == b[c].dtype for c in a.columns)
            and np.array_equal(a.to_numpy("float64"), b.to_numpy("float64"), equal_nan=True))


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """zstd + BYTE_STREAM_SPLIT for the float columns (dictionary encoding only for the index columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df)
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    others = [f.name for f in table.schema if f.name not in floats]
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=19, use_dictionary=others or False,
                   use_byte_stream_split=floats or False)
    os.replace(tmp, path)


def run_qlib(out: Path, cases: dict[str, dict], only: list[str] | None) -> tuple[dict[str, dict], list[dict]]:
    import qlib
    from qlib.utils import init_instance_by_config

    current = None
    datasets: dict[str, object] = {}
    stored: dict[str, pd.DataFrame] = {}  # "<case>.<view>" -> full frame (fully stored views only)
    seen: dict[str, pd.DataFrame] = {}  # every view computed so far
    meta: dict[str, dict] = {}
    for name, cfg in cases.items():
        if only and name not in only:
            continue
        provider = CASE_PROVIDER.get(name, "data")
        if provider != current:
            qlib.init(provider_uri=str(out / provider), region="us", kernels=1)
            current = provider
        ds = init_instance_by_config(json.loads(json.dumps(cfg)))
        datasets[name] = ds
        meta[name] = {}
        for view in ("raw", "infer", "learn"):
            parts = ds.prepare(["train", "valid", "test"], col_set=["feature", "label"], data_key=view)
            df = _flat(pd.concat(parts))
            key = f"{name}.{view}"
            info: dict[str, object] = {"segment_rows": {s: len(p) for s, p in zip(["train", "valid", "test"], parts)},
                                       "shape": list(df.shape), "columns": list(df.columns),
                                       "dtypes": sorted({str(t) for t in df.dtypes})}
            feat = [c for c in df.columns if c.startswith("feature/")]
            lab = [c for c in df.columns if not c.startswith("feature/")]
            same = next((k for k, g in seen.items() if _same(df, g)), None)
            ref = None
            if same is None:
                for k, g in stored.items():
                    if all(c in g.columns for c in feat) and df.index.isin(g.index).all():
                        sub = g.loc[df.index, feat]
                        if _same(df[feat], sub):
                            ref = k
                            break
            if same is not None:
                info["same_as"] = same
                del info["columns"]  # those of the referenced view
            elif ref is not None:
                info["features_ref"] = ref
                info["file"] = f"{key}.parquet"
                _write_parquet(df[lab], out / info["file"])
            else:
                del info["columns"]  # those of the file
                info["file"] = f"{key}.parquet"
                _write_parquet(df, out / info["file"])
                stored[key] = df
            if same is None:
                seen[key] = df
            meta[name][view] = info
            print(f"{key}: {df.shape} " + (f"same_as {same}" if same else f"features_ref {ref}" if ref else "stored"),
                  flush=True)
    probes = []
    for spec in API_PROBES:
        if spec["case"] not in datasets:
            continue
        ds = datasets[spec["case"]]
        args, kwargs = probe_args(spec)
        target = ds if spec["call"] == "prepare" else ds.handler
        res = getattr(target, spec["call"])(*args, **kwargs)
        if isinstance(res, list) and res and isinstance(res[0], pd.DataFrame):
            out_s = [summarize(r) for r in res]
        else:
            out_s = summarize(res)
        probes.append({**spec, "expected": out_s})
    return meta, probes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = Path(__file__).resolve().parents[1]
    p.add_argument("--out", type=Path, default=root / "tests/golden/handlers")
    p.add_argument("--data-only", action="store_true", help="write the data and configs.json, do not run qlib")
    p.add_argument("--cases", nargs="*", help="only these cases (default: all)")
    a = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    data_desc = make_data(out / "data", vwap_root=out / "data_vwap")
    cal = make_calendar()
    cases = make_cases(cal)
    doc: dict[str, object] = {"provider_uri": "data", "case_provider_uri": CASE_PROVIDER, "region": "us",
                              "data": data_desc, "cases": cases}
    if not a.data_only:
        import qlib

        doc["qlib_version"] = qlib.__version__
        doc["generated_utc"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        doc["command"] = "MLFLOW_ALLOW_FILE_STORE=true /work/qlib-venv/bin/python tools/make_handler_goldens.py"
        doc["views"], doc["api_probes"] = run_qlib(out, cases, a.cases)
        if a.cases:
            old = json.loads((out / "configs.json").read_text()) if (out / "configs.json").exists() else {}
            doc["views"] = {**old.get("views", {}), **doc["views"]}
    tmp = out / "configs.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out / "configs.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
