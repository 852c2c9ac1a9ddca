"""The ``online_routine`` Prefect flow on a data directory cut at a date and fed one CSV drop per day (real Prefect
flow runs, real MLflow SQLite store, the incremental importer): each day's signal equals that day's signal of one
``simulate`` on the full data; a retrain when the step is crossed; the champion alias follows the online model;
a bad drop fails the routine naming the file and row and changes nothing."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from online_helpers import DATA, cut_data, day_frame, golden, init_store, store_uri

from qlib_prefect.errors import DataError
from qlib_prefect.online.manager import OnlineManager
from qlib_prefect.orchestration import ingest_drops, online_routine, online_strategy, routine_history
from qlib_prefect.task.trainer import TrainerR
from qlib_prefect.workflow import R

BEGIN, END = pd.Timestamp("2020-03-25"), pd.Timestamp("2020-03-31")
FIELDS = ["open", "high", "low", "close", "volume", "factor"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _config(uri: str, data: Path, drops: Path, name: str) -> dict:
    return {"qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
                "class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                "kwargs": {"uri": uri, "default_exp_name": "Experiment"}}},
            "online": {"name": name, "source": str(drops), "step": 20, "rtype": "sliding", "trunc_days": 2,
                       "fields": FIELDS, "account": 1e6,
                       "strategy": {"class": "TopkDropoutStrategy", "module_path": "qlib.contrib.strategy",
                                    "kwargs": {"topk": 5, "n_drop": 2}}},
            "task": copy.deepcopy(golden()["task"])}


def test_online_routine_day_by_day(session_tmp: Path, tmp_path: Path) -> None:
    uri = store_uri(session_tmp, tmp_path / "store")
    cal = pd.DatetimeIndex(pd.read_csv(DATA / "calendars" / "day.txt", header=None)[0])
    days = cal[(cal > BEGIN) & (cal <= END)]

    # the reference: one simulate on the full data
    ref_cfg = _config(uri, DATA, tmp_path, "flow_ref")
    init_store(uri)
    ref = OnlineManager(online_strategy(ref_cfg), trainer=TrainerR(), begin_time=BEGIN).simulate(end_time=END)

    data, drops = tmp_path / "data", tmp_path / "drops"
    cut_data(data, BEGIN)
    drops.mkdir()
    cfg = _config(uri, data, drops, "flow_online")
    first = online_routine(cfg)
    assert first["date"] == BEGIN.date().isoformat() and first["new_dates"] == [] and len(first["online"]) == 1
    assert first["mlflow_ui_command"].startswith("mlflow ui --backend-store-uri")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pclient:  # the routine's summary as a Prefect artifact, like a run's
        arts = pclient.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["qlib-online-routine"])))
    assert any(first["routine_run_id"] in a.data and "| champion |" in a.data and "| instrument | score |" in a.data
               for a in arts)
    outs = [first]
    for d in days:
        day_frame(d, tuple(FIELDS)).to_csv(drops / f"{d.date()}.csv", index=False)
        outs.append(online_routine(cfg))
    assert [o["date"] for o in outs] == [d.date().isoformat() for d in [BEGIN, *days]]
    assert [o["new_dates"] for o in outs[1:]] == [[d.date().isoformat()] for d in days]
    assert [bool(o["new"]) for o in outs] == [True] + [d == pd.Timestamp("2020-03-31") for d in days]  # one retrain

    init_store(uri, data)
    hist = routine_history(cfg)
    assert list(hist["date"]) == [o["date"] for o in outs]
    for o, rid in zip(outs, hist["run_id"]):
        sig = R.get_recorder(recorder_id=rid, experiment_name="flow_online_routine").load_object("signals.pkl")
        want = ref.xs(pd.Timestamp(o["signal_date"]), level="datetime")
        assert o["signal_date"] == o["date"]
        np.testing.assert_allclose(sig.set_index("instrument")["score"].loc[want.index], want, rtol=0, atol=1e-12)
    # the champion alias points at the online model's registered version
    client = R.exp_manager.client
    mv = client.get_model_version_by_alias("flow_online", "champion")
    assert mv.run_id == outs[-1]["online"][0] == outs[-1]["champion"]
    assert len(client.search_model_versions("name = 'flow_online'")) == 2

    # a bad day: a NaN close for every stock -> FAILED naming file and row; nothing changed
    before = _digest(data)
    online_before = [r.info["id"] for r in online_strategy(cfg).tool.online_models()]
    nxt = cal[cal > END][0]
    bad = day_frame(nxt, tuple(FIELDS)).assign(close=np.nan)
    bad.to_csv(drops / f"{nxt.date()}.csv", index=False)
    with pytest.raises(DataError, match=rf"{nxt.date()}\.csv: row 2: data quality check 'nan' failed"):
        online_routine(cfg)
    assert _digest(data) == before
    init_store(uri, data)
    assert [r.info["id"] for r in online_strategy(cfg).tool.online_models()] == online_before
    assert R.exp_manager.client.get_model_version_by_alias("flow_online", "champion").run_id == mv.run_id
    assert len(routine_history(cfg)) == len(outs)


@pytest.mark.parametrize(("name", "write", "match"), [
    ("x.parquet", lambda p, f: p.write_bytes(b"PAR1"), r"x\.parquet: not a CSV file"),
    ("d.csv", lambda p, f: f.drop(columns="close").to_csv(p, index=False), r"d\.csv: missing column 'close'"),
    ("d.csv", lambda p, f: pd.concat([f, f.iloc[[3]]]).to_csv(p, index=False), r"d\.csv: row \d+: duplicated row"),
    ("d.csv", lambda p, f: pd.concat([f, f.assign(date="2020-03-24")]).to_csv(p, index=False),
     r"d\.csv: row \d+: date 2020-03-24 is already in the calendar"),
])
def test_bad_drops_change_nothing(tmp_path: Path, name: str, write, match: str) -> None:
    data, drops = tmp_path / "data", tmp_path / "drops"
    cut_data(data, BEGIN)
    drops.mkdir()
    write(drops / name, day_frame(pd.Timestamp("2020-03-26"), tuple(FIELDS)))
    before = _digest(data)
    with pytest.raises(DataError, match=match):
        ingest_drops(data, drops, fields=FIELDS)
    assert _digest(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "drops"]  # no staging copy left behind
