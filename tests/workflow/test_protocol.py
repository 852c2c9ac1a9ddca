"""The recorder seam (``RecorderProtocol``) and the provider seam (``Provider``) fit every implementation."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qlib_prefect.data.base import MemoryProvider, Provider
from qlib_prefect.data.provider import LocalProvider
from qlib_prefect.model.base import MetricsLogger
from qlib_prefect.orchestration._recorder import StoreRecorder
from qlib_prefect.workflow import QlibRecorder, R, RecorderProtocol
from qlib_prefect.workflow.recorder import MLflowRecorder

GOLD = Path(__file__).resolve().parents[1] / "golden" / "expressions" / "data"


def _mismatches(obj: Any, protocol: type) -> list[str]:
    """Protocol methods that ``obj`` cannot be called as declared (missing, renamed, newly required parameters)."""
    out = []
    for name, fn in inspect.getmembers(protocol, inspect.isfunction):
        if name.startswith("_"):
            continue
        impl = getattr(obj, name, None)
        if not callable(impl):
            out.append(f"{name}: missing")
            continue
        want = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        have = inspect.signature(impl).parameters
        has_var_kw = any(p.kind is p.VAR_KEYWORD for p in have.values())
        for p in want:
            if p.kind is p.VAR_KEYWORD:
                if not has_var_kw:
                    out.append(f"{name}: no **{p.name}")
            elif p.name not in have:
                out.append(f"{name}: no parameter {p.name!r}")
            elif p.default is not p.empty and have[p.name].default is p.empty:
                out.append(f"{name}: {p.name!r} is required")
        for q in have.values():
            named = q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)
            if named and q.default is q.empty and q.name not in {p.name for p in want}:
                out.append(f"{name}: extra required parameter {q.name!r}")
    return out


def _use(rec: RecorderProtocol) -> None:
    """What records and models do with a recorder, through the protocol only."""
    frame = pd.DataFrame({"score": [0.1, 0.2]})
    rec.save_objects(artifact_path="sig", **{"pred.pkl": frame})
    pd.testing.assert_frame_equal(rec.load_object("sig/pred.pkl"), frame)
    assert "sig/pred.pkl" in rec.list_artifacts("sig")
    rec.log_params(model="LGBModel")
    rec.log_metrics(step=0, ic=0.5)
    rec.set_tags(stage="test")


@pytest.fixture
def mlflow_recorder(r_sqlite) -> Any:
    with R.start(experiment_name="protocol"):
        yield R.get_recorder()


def test_mlflow_recorder_fits_and_works(mlflow_recorder: MLflowRecorder) -> None:
    assert isinstance(mlflow_recorder, MLflowRecorder) and isinstance(mlflow_recorder, RecorderProtocol)
    assert _mismatches(mlflow_recorder, RecorderProtocol) == []
    _use(mlflow_recorder)
    mlflow_recorder.flush()
    assert mlflow_recorder.list_metrics() == {"ic": 0.5} and mlflow_recorder.list_params()["model"] == "LGBModel"


def test_r_fits_and_works_on_its_active_run(mlflow_recorder: MLflowRecorder) -> None:
    assert isinstance(R, RecorderProtocol) and isinstance(R._get(), QlibRecorder)
    assert _mismatches(R, RecorderProtocol) == []
    _use(R)
    mlflow_recorder.flush()
    assert mlflow_recorder.list_tags()["stage"] == "test" and mlflow_recorder.list_metrics() == {"ic": 0.5}


def test_store_recorder_fits_and_works(tmp_path: Path) -> None:
    rec = StoreRecorder(path=tmp_path / "entry")
    assert isinstance(rec, RecorderProtocol) and isinstance(rec, MetricsLogger)
    assert _mismatches(rec, RecorderProtocol) == []
    _use(rec)
    rec.flush()
    assert rec.list_metrics() == {"ic": 0.5} and rec.list_tags()["stage"] == "test"


def test_a_recorder_missing_a_method_does_not_fit() -> None:
    class NoTags:
        def log_metrics(self, step=None, **kwargs): ...
        def save_objects(self, local_path=None, artifact_path=None, **kwargs): ...
        def load_object(self, name, *, unpickler): ...  # a new required parameter

    assert not isinstance(NoTags(), RecorderProtocol) and isinstance(NoTags(), MetricsLogger)
    problems = _mismatches(NoTags(), RecorderProtocol)
    assert "set_tags: missing" in problems and "load_object: extra required parameter 'unpickler'" in problems


@pytest.mark.parametrize("make", [
    lambda: LocalProvider(GOLD),
    lambda: MemoryProvider({"close": pd.DataFrame({"A": [1.0]}, index=pd.bdate_range("2020-01-01", periods=1))}),
], ids=["LocalProvider", "MemoryProvider"])
def test_providers_fit_the_provider_protocol(make) -> None:
    p = make()
    assert isinstance(p, Provider) and _mismatches(p, Provider) == []
    assert len(p.calendar()) >= 1 and isinstance(p.fingerprint(), str)
