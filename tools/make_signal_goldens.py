"""Generate the signal-evaluation goldens from the REAL qlib (run with the qlib venv, never in the test suite).

    MLFLOW_ALLOW_FILE_STORE=true MLFLOW_DISABLE_TELEMETRY=true \
        /work/qlib-venv/bin/python tools/make_signal_goldens.py [out_dir=tests/golden/signal]

Builds a fixed, seeded pred/label pair with the awkward cases (NaNs on either side, rows present on one side only,
ties in pred, a date with a single valid pair, a constant-pred date, an all-NaN-label date, a date with fewer than
5 rows so N = 0) and stores qlib's ``calc_ic`` / ``calc_long_short_return`` / ``calc_long_short_prec`` outputs and
SigAnaRecord's metric formulas as parquet/JSON, what qlib's own SigAnaRecord records for that pair
(tests/workflow/test_record_temp.py), and qlib's LGBModel trained on a fixed float32 frame with NaNs
(best iteration, eval history, test predictions; tests/model/test_gbdt.py requires exact equality), and qlib's
PortAnaRecord on the backtest goldens' data/pred (artifact names, the 13 metrics) plus the error qlib's own
MultiPassPortAnaRecord raises under pandas 3 (tests/workflow/test_record_temp.py).
tests/model/test_signal_eval.py compares the functions to 1e-12.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def make_inputs(seed: int = 20261127) -> pd.DataFrame:
    """Union-indexed frame: pred, label (float64), label32 (float32), has_pred, has_label."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2017-01-02", periods=40)
    insts = [f"S{i:03d}" for i in range(37)]
    idx = pd.MultiIndex.from_product([dates, insts], names=["datetime", "instrument"])
    n = len(idx)
    factor = rng.standard_normal(n)
    label = 0.02 * (0.1 * factor + rng.standard_normal(n))
    pred = factor + 0.05 * rng.standard_normal(n)
    pred[rng.random(n) < 0.04] = np.nan
    label[rng.random(n) < 0.06] = np.nan
    df = pd.DataFrame({"pred": pred, "label": label}, index=idx)
    d = df.index.get_level_values("datetime")
    df.loc[d == dates[3], "pred"] = np.round(df.loc[d == dates[3], "pred"], 1)  # heavy ties
    df.loc[d == dates[5], "pred"] = 0.5  # constant pred -> NaN IC
    df.loc[d == dates[7], "label"] = np.nan  # all-NaN label
    one = (d == dates[9]).nonzero()[0]
    df.iloc[one[1:], 0] = np.nan  # a single valid pair
    df["has_pred"] = rng.random(n) > 0.03
    df["has_label"] = rng.random(n) > 0.03
    few = (d == dates[11]).nonzero()[0]
    df.iloc[few[4:], df.columns.get_loc("has_pred")] = False  # date 11: only 4 rows -> N = int(4*0.2) = 0
    df.iloc[few[4:], df.columns.get_loc("has_label")] = False
    df.loc[~df["has_pred"], "pred"] = np.nan
    df.loc[~df["has_label"], "label"] = np.nan
    df["label32"] = df["label"].astype(np.float32)
    return df


def split(df: pd.DataFrame, label_col: str = "label") -> tuple[pd.Series, pd.Series]:
    return df.loc[df["has_pred"], "pred"], df.loc[df["has_label"], label_col]


MODEL_PARAMS = {"loss": "mse", "colsample_bytree": 0.8879, "learning_rate": 0.1, "subsample": 0.8789,
                "lambda_l1": 1.5, "lambda_l2": 3.0, "max_depth": 6, "num_leaves": 15, "num_threads": 1}
MODEL_SEGMENTS = {"train": ("2017-01-02", "2017-02-24"), "valid": ("2017-02-27", "2017-03-24"),
                  "test": ("2017-03-27", "2017-04-21")}


def make_model_frame(seed: int = 7) -> pd.DataFrame:
    """(feature, label) frame for the LGBModel parity check: float32, NaN features, 8 features x 40 names."""
    rng = np.random.default_rng(seed)
    idx = pd.MultiIndex.from_product([pd.bdate_range("2017-01-02", periods=80), [f"S{i:03d}" for i in range(40)]],
                                     names=["datetime", "instrument"])
    x = rng.standard_normal((len(idx), 8)).astype(np.float32)
    y = (0.5 * x[:, 0] - 0.3 * x[:, 3] * x[:, 1] + rng.standard_normal(len(idx))).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan
    cols = pd.MultiIndex.from_tuples([("feature", f"F{i}") for i in range(8)] + [("label", "LABEL0")])
    return pd.DataFrame(np.column_stack([x, y]), index=idx, columns=cols)


class FrameDataset:
    """What qlib's LGBModel needs from a DatasetH: ``segments`` and ``prepare``."""

    def __init__(self, frame: pd.DataFrame, segments: dict) -> None:
        self.frame, self.segments = frame, segments

    def prepare(self, segments, col_set="__all", data_key=None):
        lo, hi = self.segments[segments]
        dt = self.frame.index.get_level_values("datetime")
        df = self.frame[(dt >= pd.Timestamp(lo)) & (dt <= pd.Timestamp(hi))]
        return df if isinstance(col_set, list) or col_set == "__all" else df[col_set]


def run_lgb_model(out: Path) -> dict:
    """Train qlib's LGBModel on make_model_frame(); save the test prediction; return the eval history."""
    from qlib.contrib.model.gbdt import LGBModel
    from qlib.workflow import R

    frame = make_model_frame()
    frame.to_parquet(out / "model_inputs.parquet")
    model = LGBModel(**MODEL_PARAMS)
    evals: dict = {}
    with R.start(experiment_name="model_golden"):
        model.fit(FrameDataset(frame, MODEL_SEGMENTS), evals_result=evals)
    pred = model.predict(FrameDataset(frame, MODEL_SEGMENTS))
    pred.rename("score").to_frame().to_parquet(out / "model_pred.parquet")
    return {"params": MODEL_PARAMS, "segments": MODEL_SEGMENTS, "best_iteration": model.model.best_iteration,
            "evals": evals}


BACKTEST_DATA = Path(__file__).resolve().parents[1] / "tests" / "golden" / "backtest"
PORT_CONFIG = {
    "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                 "kwargs": {"signal": "<PRED>", "topk": 10, "n_drop": 3}},
    "backtest": {"start_time": "2020-01-07", "end_time": "2020-06-30", "account": 1000000.0, "benchmark": "BENCH",
                 "exchange_kwargs": {"limit_threshold": 0.095, "deal_price": "close", "open_cost": 0.0005,
                                     "close_cost": 0.0015, "min_cost": 5}},
}


def run_port_ana_record() -> dict:
    """qlib's PortAnaRecord on the backtest golden data/pred (tests/golden/backtest); also try MultiPass."""
    import copy
    import tempfile
    import time

    import qlib
    from qlib.workflow import R
    from qlib.workflow.record_temp import MultiPassPortAnaRecord, PortAnaRecord

    tmp = Path(tempfile.mkdtemp(prefix="port-golden-"))
    qlib.init(provider_uri=str(BACKTEST_DATA / "data"), region="cn",
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": f"file:{tmp / 'mlruns'}", "default_exp_name": "Experiment"}})
    pred = pd.read_parquet(BACKTEST_DATA / "pred.parquet")
    with R.start(experiment_name="port_golden"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred, "label.pkl": pred.rename(columns={"score": "LABEL0"})})
        PortAnaRecord(rec, config=copy.deepcopy(PORT_CONFIG), risk_analysis_freq="day").generate()
        for _ in range(50):
            metrics = rec.list_metrics()
            if len(metrics) == 13:
                break
            time.sleep(0.1)
        artifacts = sorted(rec.list_artifacts("portfolio_analysis"))
        try:
            MultiPassPortAnaRecord(rec, config=copy.deepcopy(PORT_CONFIG), pass_num=2).generate()
            multipass = "ok"
        except Exception as e:  # pandas Copy-on-Write: the in-place shuffle of .values fails
            multipass = f"{type(e).__name__}: {e}"
    return {"config": PORT_CONFIG, "metrics": {k: float(v) for k, v in metrics.items()}, "artifacts": artifacts,
            "multi_pass": multipass}


def run_sig_ana_record(df: pd.DataFrame) -> dict:
    """Run qlib's own SigAnaRecord(ana_long_short=True) on the float32-label pair; return what it recorded."""
    import tempfile
    import time

    import qlib
    from qlib.workflow import R
    from qlib.workflow.record_temp import SigAnaRecord

    tmp = Path(tempfile.mkdtemp(prefix="sig-golden-"))
    qlib.init(provider_uri=str(tmp / "nodata"), region="cn",
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": f"file:{tmp / 'mlruns'}", "default_exp_name": "Experiment"}})
    pred, label = split(df, "label32")
    with R.start(experiment_name="signal_golden"):
        rec = R.get_recorder()
        rec.save_objects(**{"pred.pkl": pred.to_frame("score"), "label.pkl": label.to_frame("LABEL0")})
        SigAnaRecord(rec, ana_long_short=True).generate()
        for _ in range(50):  # qlib logs metrics asynchronously
            metrics = rec.list_metrics()
            if len(metrics) == 8:
                break
            time.sleep(0.1)
        artifacts = sorted(rec.list_artifacts("sig_analysis"))
    return {"metrics": {k: float(v) for k, v in metrics.items()}, "artifacts": artifacts}


def main(out: Path) -> None:
    from qlib.contrib.eva.alpha import calc_ic, calc_long_short_prec, calc_long_short_return

    out.mkdir(parents=True, exist_ok=True)
    df = make_inputs()
    df.to_parquet(out / "inputs.parquet")
    metrics: dict[str, dict[str, float]] = {}
    for tag, col in (("f64", "label"), ("f32", "label32")):
        pred, label = split(df, col)
        ic, ric = calc_ic(pred, label)
        ls, la = calc_long_short_return(pred, label)
        lp, sp = calc_long_short_prec(pred, label)
        lpa, spa = calc_long_short_prec(pred, label, is_alpha=True)
        ls_d, la_d = calc_long_short_return(pred, label, dropna=True, quantile=0.1)
        frame = {
            "ic": ic, "ric": ric, "long_short": ls, "long_avg": la, "long_pre": lp, "short_pre": sp,
            "long_pre_alpha": lpa, "short_pre_alpha": spa, "long_short_dropna_q10": ls_d, "long_avg_dropna_q10": la_d,
        }
        for name, s in frame.items():
            s.astype("float64").rename("value").to_frame().to_parquet(out / f"{tag}_{name}.parquet")
        metrics[tag] = {
            "IC": float(ic.mean()), "ICIR": float(ic.mean() / ic.std()),
            "Rank IC": float(ric.mean()), "Rank ICIR": float(ric.mean() / ric.std()),
            "Long-Short Ann Return": float(ls.mean() * 252),
            "Long-Short Ann Sharpe": float(ls.mean() / ls.std() * 252**0.5),
            "Long-Avg Ann Return": float(la.mean() * 252),
            "Long-Avg Ann Sharpe": float(la.mean() / la.std() * 252**0.5),
        }
    import qlib

    meta = {"qlib_version": qlib.__version__, "pandas": pd.__version__, "numpy": np.__version__, "metrics": metrics,
            "recorded": run_sig_ana_record(df)}
    meta["lgb_model"] = run_lgb_model(out)
    meta["port_ana_record"] = run_port_ana_record()
    (out / "expected.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/golden/signal")
