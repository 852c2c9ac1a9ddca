"""``qlib-prefect online init / status / history`` on a real store and data directory (one Prefect flow run)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from online_helpers import cut_data, golden, store_uri

from qlib_prefect.cli.main import main


def test_online_cli_init_status_history(session_tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = store_uri(session_tmp, tmp_path / "store")
    data, drops = tmp_path / "data", tmp_path / "drops"
    cut_data(data, pd.Timestamp("2020-03-13"))
    drops.mkdir()
    cfg = {"qlib_init": {"provider_uri": str(data), "region": "us", "exp_manager": {
               "class": "MLflowExpManager", "module_path": "qlib.workflow.expm", "kwargs": {"uri": uri}}},
           "online": {"name": "cli_online", "source": str(drops), "step": 20, "trunc_days": 2},
           "task": copy.deepcopy(golden()["task"])}
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["online", "status", str(path)]) == 1
    assert "no online models" in capsys.readouterr().out
    assert main(["online", "init", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["date"] == "2020-03-13" and len(out["online"]) == 1 and out["champion"] == out["online"][0]
    assert main(["online", "status", str(path)]) == 0
    status = capsys.readouterr().out.split()
    assert status[:2] == [out["online"][0], "2020-03-02"]
    assert main(["online", "history", str(path)]) == 0
    assert "2020-03-13" in capsys.readouterr().out
    assert main(["online", "routine", str(path)]) == 0  # no new drop: the same day again, as a labelled table
    text = capsys.readouterr().out
    assert "routine day" in text and "champion" in text and out["champion"] in text
    assert "look at it with" in text and "mlflow ui --backend-store-uri" in text
