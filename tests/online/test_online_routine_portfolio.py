"""The routine's target portfolio, promotion and per-step caching (real Prefect flow runs, real MLflow store):

* holdings carry over between routine days (day 2's current = day 1's target), orders reconcile
  (current + buy - sell = target), TopkDropout sells at most ``n_drop`` per day, the parquet / CSV / holdings
  artifacts are in the routine run and ``online portfolio`` prints them;
* a re-run of the same day recomputes nothing (the manager and the strategy are not called) and returns the same;
* across the retrain day: ``challenger`` points at the fresh model while the promote step has not run (it failed),
  ``champion`` stays on the old one; the re-run moves ``champion`` and drops ``challenger``; the online history
  shows the switch.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from online_helpers import DATA, cut_data, day_frame, golden, init_store, store_uri

from qlib_prefect.cli.main import main
from qlib_prefect.orchestration import online_routine, routine_history, routine_portfolio
from qlib_prefect.workflow import R

BEGIN = pd.Timestamp("2020-03-26")
DAYS = [pd.Timestamp(d) for d in ("2020-03-27", "2020-03-30", "2020-03-31")]  # 2020-03-31: the retrain day
FIELDS = ["open", "high", "low", "close", "volume", "factor"]
TOPK, NDROP = 5, 2


def _config(uri: str, data: Path, drops: Path) -> dict:
    return {"qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
                "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}},
            "online": {"name": "port_online", "source": str(drops), "step": 20, "rtype": "sliding", "trunc_days": 2,
                       "fields": FIELDS, "account": 1e6,
                       "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                    "kwargs": {"topk": TOPK, "n_drop": NDROP}}},
            "task": copy.deepcopy(golden()["task"])}


def _drop(drops: Path, day: pd.Timestamp) -> None:
    day_frame(day, tuple(FIELDS)).to_csv(drops / f"{day.date()}.csv", index=False)


def _check_table(t: pd.DataFrame) -> None:
    buy = t["order_amount"].where(t["side"] == "BUY", 0.0)
    sell = t["order_amount"].where(t["side"] == "SELL", 0.0)
    pd.testing.assert_series_equal(t["current_amount"] + buy - sell, t["target_amount"], check_names=False,
                                   rtol=0, atol=1e-6)
    assert (t["side"] == "SELL").sum() <= NDROP
    assert (t["target_amount"] > 0).sum() <= TOPK
    assert t.loc[t["side"] != "HOLD", "price"].gt(0).all()
    assert set(t["side"]) <= {"BUY", "SELL", "HOLD"}


def test_portfolio_promotion_and_caching(session_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    uri = store_uri(session_tmp, tmp_path / "store")
    data, drops = tmp_path / "data", tmp_path / "drops"
    cut_data(data, BEGIN)
    drops.mkdir()
    cfg = _config(uri, data, drops)
    outs = [online_routine(cfg)]
    init_store(uri, data)
    tags0, t0 = routine_portfolio(cfg)
    assert tags0["date"] == BEGIN.date().isoformat() and t0["current_amount"].eq(0).all()
    assert (t0["side"] == "BUY").sum() == TOPK  # day 0: all cash, buy the top k
    _check_table(t0)

    # day 1: the holdings are day 0's target; the orders reconcile
    _drop(drops, DAYS[0])
    outs.append(online_routine(cfg))
    init_store(uri, data)
    tags1, t1 = routine_portfolio(cfg, DAYS[0].date().isoformat())
    _check_table(t1)
    held0 = t0[t0["target_amount"] > 0].set_index("instrument")["target_amount"]
    cur1 = t1[t1["current_amount"] > 0].set_index("instrument")["current_amount"]
    pd.testing.assert_series_equal(cur1.sort_index(), held0.sort_index(), check_names=False)
    assert (t1["side"] == "SELL").any()  # the ranking changed: some dropout happens
    rec = R.get_recorder(recorder_id=tags1["run_id"], experiment_name="port_online_routine")
    assert {"portfolio/target.parquet", "portfolio/target.csv", "portfolio/holdings.json"} <= set(
        rec.list_artifacts("portfolio"))
    csv = pd.read_csv(rec.download_artifact("portfolio/target.csv"))
    pd.testing.assert_frame_equal(csv, t1, check_dtype=False)

    # a re-run of the same day: every step cached (nothing recomputed), the same outputs, no new routine run
    from qlib_prefect.online import manager, portfolio

    def boom(*a, **k):
        raise AssertionError("recomputed on a cached re-run")

    with monkeypatch.context() as m:
        m.setattr(manager.OnlineManager, "routine", boom)
        m.setattr(manager.OnlineManager, "first_train", boom)
        m.setattr(portfolio, "target_portfolio", boom)
        again = online_routine(cfg)
    assert again == outs[-1]
    init_store(uri, data)
    assert len(routine_history(cfg)) == 2

    _drop(drops, DAYS[1])
    outs.append(online_routine(cfg))
    assert not outs[-1]["new"]
    old_champion = outs[-1]["champion"]

    # the retrain day, with the promote step failing: the fresh model is the challenger, the champion unchanged
    from qlib_prefect.orchestration import _online

    def fail(point: str) -> None:
        if point == "before-champion":
            raise RuntimeError("promotion interrupted")

    _drop(drops, DAYS[2])
    with monkeypatch.context() as m:
        m.setattr(_online, "_hook", fail)
        with pytest.raises(RuntimeError, match="promotion interrupted"):
            online_routine(cfg)
    init_store(uri, data)
    client = R.exp_manager.client
    assert client.get_model_version_by_alias("port_online", "champion").run_id == old_champion
    challenger = client.get_model_version_by_alias("port_online", "challenger").run_id
    assert challenger != old_champion
    assert len(routine_history(cfg)) == 3  # the failed day is not recorded

    outs.append(online_routine(cfg))  # the re-run: the routine step is cached, the promotion completes
    assert outs[-1]["new"] == [challenger] and outs[-1]["champion"] == challenger
    init_store(uri, data)
    client = R.exp_manager.client
    assert client.get_model_version_by_alias("port_online", "champion").run_id == challenger
    assert "challenger" not in client.get_registered_model("port_online").aliases
    versions = client.search_model_versions("name = 'port_online'")
    assert len(versions) == 2
    champ_version = client.get_model_version_by_alias("port_online", "champion").version
    assert client.get_registered_model("port_online").aliases == {"champion": champ_version}  # exactly one alias
    hist = routine_history(cfg)
    assert list(hist["date"]) == [d.date().isoformat() for d in [BEGIN, *DAYS]]
    assert list(hist["champion"]) == [old_champion] * 3 + [challenger]
    assert list(hist["trained"]) == [old_champion, "", "", challenger]
    _check_table(routine_portfolio(cfg)[1])

    # the CLI prints the stored table, labelled
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["online", "portfolio", str(path), "--date", DAYS[0].date().isoformat()]) == 0
    text = capsys.readouterr().out
    assert "target portfolio for the trading day after 2020-03-27" in text
    for col in ("instrument", "current_amount", "target_amount", "side", "order_amount", "price"):
        assert col in text
    assert f"{int((t1['side'] == 'SELL').sum())} sell" in text
    assert main(["online", "history", str(path)]) == 0
    assert "champion_version" in capsys.readouterr().out
    assert DATA.exists()
