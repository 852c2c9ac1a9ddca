"""``online_simulate`` (real Prefect flow runs, real MLflow SQLite store, the golden qlib-format data): the signals
equal ``OnlineManager.simulate``'s; extending the simulation by a month trains and predicts only the new window
(the other window tasks are ``Cached``) and gives exactly the signals of a fresh simulation of the longer span;
the run holds qlib's PortAnaRecord / SigAnaRecord artifacts and a report.html with the online history."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from online_helpers import DATA, golden, init_store, store_uri

from qlib_prefect.cli.main import main
from qlib_prefect.online.manager import OnlineManager
from qlib_prefect.orchestration import online_simulate, online_strategy, simulate_text
from qlib_prefect.task.trainer import TrainerR
from qlib_prefect.workflow import R

A, B, B2 = "2020-03-02", "2020-04-30", "2020-05-29"  # 2020-04-30 is not a trading day of the data


def _config(uri: str, name: str) -> dict:
    return {"qlib_init": {"provider_uri": str(DATA), "region": "us", "exp_manager": {
                "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}},
            "online": {"name": name, "source": str(DATA), "step": 20, "rtype": "sliding", "refit_processors": False,
                       "port_analysis": {
                           "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                        "kwargs": {"signal": "<PRED>", "topk": 5, "n_drop": 1}},
                           "backtest": {"account": 1000000, "benchmark": "S00",
                                        "exchange_kwargs": {"deal_price": "close", "open_cost": 0.0005,
                                                            "close_cost": 0.0015, "min_cost": 5}}}},
            "task": copy.deepcopy(golden()["task"])}


def _signals(summary: dict) -> pd.Series:
    rec = R.get_recorder(recorder_id=summary["run_id"], experiment_name=summary["experiment_name"])
    pred = rec.load_object("pred.pkl")
    return (pred.iloc[:, 0] if isinstance(pred, pd.DataFrame) else pred).sort_index()


def test_online_simulate_extend_and_parity(session_tmp: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    uri = store_uri(session_tmp, tmp_path / "store")
    cfg = _config(uri, "sim")
    first = online_simulate(cfg, A, B)
    states = [w["state"] for w in first["windows"]]
    assert len(states) == 3 and first["trained"] + first["cached"] == 3
    sig_ab = _signals(first)
    dates = sig_ab.index.get_level_values("datetime")
    assert str(dates.min().date()) == A and str(dates.max().date()) == "2020-04-29" == first["end"]
    assert len(sig_ab) == first["signal_rows"]

    # extending by a month: only the new window is trained and predicted
    second = online_simulate(cfg, A, B2)
    assert [w["state"] for w in second["windows"]] == ["Cached"] * 3 + ["Completed"]
    assert second["trained"] == 1 and second["cached"] == 3
    sig_ab2 = _signals(second)
    pd.testing.assert_series_equal(sig_ab2[sig_ab2.index.get_level_values("datetime") <= pd.Timestamp(B)], sig_ab,
                                   check_names=False)
    # ... and its signals are exactly those of a fresh simulation of the longer span
    fresh = online_simulate(cfg, A, B2, refresh=True)
    assert [w["state"] for w in fresh["windows"]] == ["Completed"] * 4
    pd.testing.assert_series_equal(_signals(fresh), sig_ab2, check_exact=True)

    # the same signals as qlib's OnlineManager.simulate with a RollingStrategy whose first window starts on A
    init_store(uri)
    mcfg = _config(uri, "sim_manager")
    mcfg["task"]["dataset"]["kwargs"]["segments"]["test"] = [A, str(first["windows"][0]["test"].split("..")[1])]
    ref = OnlineManager(online_strategy(mcfg), trainer=TrainerR(), begin_time=A).simulate(end_time=B2)
    ref = ref[ref.index.get_level_values("datetime") <= pd.Timestamp(B2)].sort_index()
    assert (sig_ab2 - ref).abs().max() < 1e-12 and len(ref) == len(sig_ab2)

    # history: one window online per day, switched on its test start
    hist = second["history"]
    assert [h["window"] for h in hist] == [0, 1, 2, 3] and sum(h["days"] for h in hist) == second["days"]
    for h, w in zip(hist, second["windows"]):
        assert h["online_from"] == w["test"].split("..")[0] and h["run_id"] == w["run_id"]

    # the backtest and signal analysis of the signals, with qlib's artifact names, in the same run
    rec = R.get_recorder(recorder_id=second["run_id"], experiment_name=second["experiment_name"])
    arts = set(rec.list_artifacts()) | set(rec.list_artifacts("portfolio_analysis"))
    arts |= set(rec.list_artifacts("sig_analysis"))
    for name in ("pred.pkl", "label.pkl", "online_history.csv", "online_history.pkl", "report.html",
                 "portfolio_analysis/report_normal_1day.pkl", "portfolio_analysis/port_analysis_1day.pkl",
                 "sig_analysis/ic.pkl"):
        assert name in arts, (name, sorted(arts))
    report = rec.load_object("portfolio_analysis/report_normal_1day.pkl")
    assert str(report.index.min().date()) >= A and str(report.index.max().date()) <= B2
    metrics = rec.list_metrics()
    assert "IC" in metrics and "1day.excess_return_with_cost.annualized_return" in metrics
    h = rec.load_object("online_history.pkl")
    assert len(h) == second["days"] and h["window"].is_monotonic_increasing

    # report.html: the usual sections plus the online history chart, with labelled axes
    html_text = Path(rec.download_artifact("report.html")).read_text(encoding="utf-8")
    for sid in ("metrics", "returns", "ic", "online-history", "config"):
        assert f'id="{sid}"' in html_text, sid
    assert "Online history" in html_text and "online window (index of the rolling window)" in html_text
    assert not re.search(r"<script[^>]+src=\"https?://", html_text)

    text = simulate_text(second)
    for label in ("simulated days", "windows (trained / cached)", "signal rows", "online history", "mlflow ui"):
        assert label in text

    # the CLI: the same flow (every window cached now), a labelled summary
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["online", "simulate", str(path), "--start", A, "--end", B2]) == 0
    out = capsys.readouterr().out
    assert "4 (0 / 4)" in out and f"{len(sig_ab2)} (dates {A} .. {second['end']})" in out
    for label in ("online history", "excess_return_with_cost", "mlflow ui --backend-store-uri", "report"):
        assert label in out, (label, out)
    assert "2020-05-28" in out  # window 3 online from its test start
