"""Config checks that need the data run before anything starts (issue 15 item 10): dates inside the calendar and
in order, a known market, a benchmark with data in the backtest range, known fields and operators (custom_ops
included). Each error names the YAML key path and the bad value; all problems are listed at once; fast (CPU time,
measured with ``time.process_time``, the machine being shared)."""

from __future__ import annotations

import copy
import shutil
import struct
import time
from pathlib import Path

import pytest
import yaml
from orch_helpers import small_config

from qlib_prefect.cli.preflight import validate_config
from qlib_prefect.errors import ConfigError

HANDLER = ("task", "dataset", "kwargs", "handler", "kwargs")
SEG = ("task", "dataset", "kwargs", "segments")
BT = ("task", "record", 2, "kwargs", "config", "backtest")
H = "task.dataset.kwargs.handler.kwargs"
B = "task.record.2.kwargs.config.backtest"


@pytest.fixture(scope="module")
def data(robust_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small data plus ``OLD``: a code whose close ends before the backtest range."""
    dest = tmp_path_factory.mktemp("check") / "data"
    shutil.copytree(robust_data, dest)
    (dest / "features" / "old").mkdir()
    (dest / "features" / "old" / "close.day.bin").write_bytes(struct.pack("<6f", 0, 1, 2, 3, 4, 5))
    return dest


def _set(cfg: dict, path: tuple, value: object) -> None:
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _write(tmp: Path, data: Path, edits: list[tuple[tuple, object]]) -> Path:
    cfg = small_config(data, f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    cfg["sys"]["path"].append(str(Path(__file__).resolve().parent))
    for path, value in edits:
        _set(cfg, path, copy.deepcopy(value))
    out = tmp / "wf.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


LOADER = {"class": "QlibDataLoader", "module_path": "qlib.data.dataset.loader",
          "kwargs": {"config": {"feature": [["$close/Ref($close, 1)", "Twice($volume)"], ["RET", "V2"]],
                                "label": [["Ref($close, -2)/Ref($close, -1) - 1"], ["LABEL0"]]}}}
LP = {"class": "DataHandlerLP", "module_path": "qlib.data.dataset.handler",
      "kwargs": {"start_time": "2015-01-02", "end_time": "2017-06-29", "instruments": "sp500",
                 "data_loader": LOADER}}
TWICE = [{"class": "Twice", "module_path": "robust_helpers"}]

#: name: (edits, expected text fragments: the key path and the bad value)
CASES = {
    "segment after the calendar": ([((*SEG, "test"), ["2018-01-01", "2018-06-30"]),
                                    ((*BT, "start_time"), "2018-01-02"), ((*BT, "end_time"), "2018-06-29")],
                                   [f"{'task.dataset.kwargs.segments'}.test.0: 2018-01-01 is after the last",
                                    f"{B}.start_time: 2018-01-02"]),
    "handler before the calendar": ([((*HANDLER, "start_time"), "2010-01-01"), ((*HANDLER, "end_time"), "2012-01-01")],
                                    [f"{H}.end_time: 2012-01-01 is before the first trading day"]),
    "fit reversed": ([((*HANDLER, "fit_end_time"), "2014-01-01")], [f"{H}: start 2015-01-02 is after end 2014-01-01"]),
    "unknown market": ([((*HANDLER, "instruments"), "sp600")], [f"{H}.instruments: unknown market 'sp600'", "sp500"]),
    "unknown codes": ([((*HANDLER, "instruments"), ["AAPL", "NOPE1"])], [f"{H}.instruments", "'NOPE1'"]),
    "benchmark without data": ([((*BT, "benchmark"), "QQQ")], [f"{B}.benchmark: benchmark 'QQQ' has no data"]),
    "benchmark outside the range": ([((*BT, "benchmark"), "OLD")],
                                    [f"{B}.benchmark: benchmark 'OLD' has data 2015-01-02 .. ",
                                     "none in the backtest"]),
    "unknown field": ([(("task", "dataset", "kwargs", "handler"), {**LP, "kwargs": {**LP["kwargs"], "data_loader": {
        **LOADER, "kwargs": {"config": {"feature": [["$vwap/$close"], ["V"]],
                                        "label": [["Ref($close, -1)"], ["L"]]}}}}}),
                       (("qlib_init", "custom_ops"), TWICE)],
                      [f"{H}.data_loader.kwargs.config.feature.0.0: '$vwap/$close': unknown field $vwap"]),
    "unknown operator": ([(("task", "dataset", "kwargs", "handler"), {**LP, "kwargs": {**LP["kwargs"], "data_loader": {
        **LOADER, "kwargs": {"config": {"feature": [["Reff($close, 1)"], ["R"]],
                                        "label": [["Ref($close, -1)"], ["L"]]}}}}})],
                         [f"{H}.data_loader.kwargs.config.feature.0.0: 'Reff($close, 1)'", "Reff"]),
    "custom op not registered": ([(("task", "dataset", "kwargs", "handler"), LP)],
                                 [f"{H}.data_loader.kwargs.config.feature.0.1: 'Twice($volume)'"]),
}


def test_a_good_config_passes(data, tmp_path):
    validate_config(_write(tmp_path, data, []))
    validate_config(_write(tmp_path, data, [(("task", "dataset", "kwargs", "handler"), LP),
                                            (("qlib_init", "custom_ops"), TWICE)]))  # custom_ops: known


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_problem_fails_fast_naming_the_key(case, data, tmp_path):
    edits, expected = CASES[case]
    path = _write(tmp_path, data, edits)
    t = time.process_time()
    with pytest.raises(ConfigError) as e:
        validate_config(path)
    assert time.process_time() - t < 3
    for text in expected:
        assert text in str(e.value), str(e.value)
    assert str(path) in str(e.value) or "problem" not in str(e.value)


def test_every_problem_is_listed_at_once(data, tmp_path):
    path = _write(tmp_path, data, [((*HANDLER, "instruments"), "sp600"), ((*BT, "benchmark"), "QQQ"),
                                   ((*HANDLER, "fit_end_time"), "2014-01-01")])
    with pytest.raises(ConfigError) as e:
        validate_config(path)
    msg = str(e.value)
    assert "3 problems" in msg and "sp600" in msg and "QQQ" in msg and "fit_start_time" not in msg.split("sp600")[0]


def test_python_api_runs_the_same_checks_before_the_flow(data, tmp_path):
    """``qlib_workflow(config)`` from Python checks the config against the data too: it fails before any flow
    run or MLflow run exists, naming the key path."""
    import mlflow

    from qlib_prefect.orchestration import qlib_workflow

    path = _write(tmp_path, data, [((*HANDLER, "instruments"), "sp600")])
    with pytest.raises(ConfigError) as e:
        qlib_workflow(str(path))
    assert f"{H}.instruments: unknown market 'sp600'" in str(e.value)
    db = tmp_path / "mlruns" / "mlflow.db"
    if db.exists():  # nothing ran: no MLflow run at all
        assert mlflow.MlflowClient(f"sqlite:///{db}").search_runs(
            [e.experiment_id for e in mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()]) == []
