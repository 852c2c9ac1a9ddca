"""``qlib-prefect report RUN_ID`` on an old run (no report, no sig_analysis), ``report compare``, ``report factors``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from report_helpers import parse_report, trace

from qlib_prefect.cli.main import main
from qlib_prefect.model.signal_eval import calc_ic
from qlib_prefect.report import SECTION_IDS
from qlib_prefect.report.compare import compare_runs, select_recorders
from qlib_prefect.workflow import MLflowRecorder

OLD_ARTIFACTS = ["pred.pkl", "label.pkl", "portfolio_analysis"]


@pytest.fixture(scope="module")
def old_run(_session_run, tmp_path_factory) -> MLflowRecorder:
    """A run as made before the report existed: qlib's artifacts only, no sig_analysis, no report."""
    src: MLflowRecorder = _session_run["recorder"]
    client = MlflowClient(_session_run["uri"])
    tmp = tmp_path_factory.mktemp("old_run")
    run = client.create_run(src.experiment_id, run_name="mlflow_recorder", tags={"kind": "old"})
    for name in OLD_ARTIFACTS:
        local = Path(src.download_artifact(name, str(tmp)))
        if local.is_dir():
            client.log_artifacts(run.info.run_id, str(local), name)
        else:
            client.log_artifact(run.info.run_id, str(local))
    client.set_terminated(run.info.run_id)
    return MLflowRecorder.from_run_id(run.info.run_id, _session_run["uri"], async_logging=False)


def test_report_run_id_regenerates_an_old_run(real_run, old_run, tmp_path, capsys) -> None:
    assert "report.html" not in old_run.list_artifacts()
    rc = main(["report", old_run.id, "--uri", real_run["uri"], "--provider-uri", str(real_run["data"]),
               "--out", str(tmp_path)])
    assert rc == 0 and "report.html" in capsys.readouterr().out
    assert "report.html" in old_run.list_artifacts() and (tmp_path / "report.html").is_file()
    assert {"ledgers/positions_1day.parquet", "ledgers/trades_1day.csv"} <= set(old_run.list_artifacts("ledgers"))
    p = parse_report(old_run.load_text("report.html"))
    assert p.sections == list(SECTION_IDS)
    ic, _ = calc_ic(old_run.load_object("pred.pkl")["score"], old_run.load_object("label.pkl").iloc[:, 0])
    got = np.array(trace(p.figures["ic/daily"], "IC")["y"], dtype=float)
    np.testing.assert_allclose(got, ic.to_numpy(), rtol=1e-12, equal_nan=True)  # computed from pred + label
    assert "ic-decay/decay" in p.figures
    # the old run had qlib's default name and no config: it keeps its name (nothing says what ran)
    assert MlflowClient(real_run["uri"]).get_run(old_run.id).info.run_name == "mlflow_recorder"


def test_compare_runs_by_id_experiment_and_tag(real_run, old_run, tmp_path, capsys) -> None:
    a, b = real_run["recorder"], old_run
    out = compare_runs([a, b], tmp_path / "cmp.html")
    p = parse_report(out.read_text(encoding="utf-8"))
    assert p.sections == ["metrics", "curves", "ic"]
    fig = p.figures["curves/excess_with_cost"]
    assert len(fig["data"]) == 2
    report = a.load_object("portfolio_analysis/report_normal_1day.pkl")
    last = (report["return"] - report["bench"] - report["cost"]).sum()
    assert fig["data"][0]["y"][-1] == pytest.approx(last, rel=1e-12) == fig["data"][1]["y"][-1]
    assert len(p.figures["ic/ic"]["data"]) == 1  # the old run has no sig_analysis
    exp = MlflowClient(real_run["uri"]).get_experiment(a.experiment_id).name
    assert {r.id for r in select_recorders(experiment=exp, uri=real_run["uri"])} >= {a.id, b.id}
    assert [r.id for r in select_recorders(experiment=exp, tags=["kind=old"], uri=real_run["uri"])] == [b.id]
    rc = main(["report", "compare", a.id, "--tag", "kind=old", "--uri", real_run["uri"],
               "--out", str(tmp_path / "cli.html")])
    assert rc == 0 and "comparison of 2 runs" in capsys.readouterr().out
    assert main(["report", "compare", "--uri", real_run["uri"]]) == 2  # nothing selected: a clear error


def test_report_factors_per_feature_column(real_run, tmp_path, caplog) -> None:
    from qlib_prefect.data.dataset import DatasetH
    from qlib_prefect.utils import init_instance_by_config

    cfg = {k: v for k, v in real_run["config"].items() if k != "sys"}
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="qlib_prefect.report")
    rc = main(["report", "factors", str(path), "--horizons", "1,5", "--out", str(tmp_path / "f")])
    assert rc == 0
    table = pd.read_parquet(tmp_path / "f" / "factors.parquet")
    assert len(table) == 158 and {"IC", "ICIR", "Rank IC", "Rank ICIR", "Rank IC h=1", "Rank IC h=5"} <= set(
        table.columns)
    ds = init_instance_by_config(cfg["task"]["dataset"], accept_types=DatasetH)
    feats = ds.prepare("test", col_set="feature", data_key="raw")
    label = ds.prepare("test", col_set="label", data_key="raw").iloc[:, 0]
    for col in ("KMID", "ROC5", table.index[0]):
        ic, ric = calc_ic(feats[col], label)
        assert table.loc[col, "IC"] == pytest.approx(ic.mean(), rel=1e-6)
        assert table.loc[col, "Rank IC"] == pytest.approx(ric.mean(), rel=1e-6) == table.loc[col, "Rank IC h=1"]
    p = parse_report((tmp_path / "f" / "factors.html").read_text(encoding="utf-8"))
    assert len(trace(p.figures["chart/rank_ic"], "Rank IC")["y"]) == 158
    assert len(p.figures["decay/decay"]["data"][0]["z"]) == 158
    lines = [r.getMessage() for r in caplog.records if "factor IC over 158 columns" in r.getMessage()]
    done = [tuple(map(int, re.search(r": (\d+)/(\d+)", m).groups())) for m in lines]
    assert len(done) >= 10 and done[-1][0] == done[-1][1]  # progress lines up to the end
