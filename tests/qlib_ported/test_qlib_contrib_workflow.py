"""qlib's tests/test_contrib_workflow.py on the bundled-data cut: csi300 -> sp500, the 2020-05..08 segments ->
2016 (train Jan-May, valid Jun-Aug, test Sep-Dec), qlib's ``file:`` MLflow store -> a SQLite store in a temporary
folder (copied from the session's migrated template), ``num_threads`` 20 -> 1 (a 2-core CI);
``qlib.tests.config``'s task is ``qlib_test_data.CSI300_GBDT_TASK``. The test bodies are unchanged
(qlib's only check that they run); the records' outputs are then checked against the recorder."""

import shutil
import tempfile
import unittest
from pathlib import Path

import numpy as np
import pytest
from qlib_test_data import CSI300_GBDT_TASK, TestAutoData

from qlib_prefect.utils import flatten_dict, init_instance_by_config
from qlib_prefect.workflow import R
from qlib_prefect.workflow.contrib_record import MultiSegRecord, SignalMseRecord
from qlib_prefect.workflow.record_temp import SignalRecord


def train_multiseg(uri_path: str | None = None):
    model = init_instance_by_config(CSI300_GBDT_TASK["model"])
    dataset = init_instance_by_config(CSI300_GBDT_TASK["dataset"])
    with R.start(experiment_name="workflow", uri=uri_path):
        R.log_params(**flatten_dict(CSI300_GBDT_TASK))
        model.fit(dataset)
        recorder = R.get_recorder()
        sr = MultiSegRecord(model, dataset, recorder)
        sr.generate(dict(valid="valid", test="test"), True)
        uri = R.get_uri()
    return uri


def train_mse(uri_path: str | None = None):
    model = init_instance_by_config(CSI300_GBDT_TASK["model"])
    dataset = init_instance_by_config(CSI300_GBDT_TASK["dataset"])
    with R.start(experiment_name="workflow", uri=uri_path):
        R.log_params(**flatten_dict(CSI300_GBDT_TASK))
        model.fit(dataset)
        recorder = R.get_recorder()
        SignalRecord(recorder=recorder, model=model, dataset=dataset).generate()
        sr = SignalMseRecord(recorder)
        sr.generate()
        uri = R.get_uri()
    return uri


@pytest.fixture(scope="class")
def _mlflow_store(request: pytest.FixtureRequest, template_db: Path):
    """qlib's URI_PATH: a fresh SQLite store (copied from the session's migrated template) per class."""
    folder = Path(tempfile.mkdtemp(prefix="qlib-contrib-mlruns-"))
    shutil.copyfile(template_db, folder / "mlflow.db")
    request.cls.URI_PATH = f"sqlite:///{folder / 'mlflow.db'}"
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.usefixtures("_mlflow_store")
class TestAllFlow(TestAutoData):
    URI_PATH = ""

    def test_0_multiseg(self):
        uri_path = train_multiseg(self.URI_PATH)
        with R.uri_context(uri_path):
            recs = R.get_exp(experiment_name="workflow", create=False).list_recorders(rtype="list")
            res = next(r for r in recs if "results-test.pkl" in r.list_artifacts()).load_object("results-test.pkl")
        assert np.isclose(res["mean-IC"], res["all-IC"].mean(), equal_nan=True) and len(res["all-Rank-IC"]) > 50

    def test_1_mse(self):
        uri_path = train_mse(self.URI_PATH)
        with R.uri_context(uri_path):
            recs = R.get_exp(experiment_name="workflow", create=False).list_recorders(rtype="list")
            rec = next(r for r in recs if "MSE" in r.list_metrics())
            pred, label = rec.load_object("pred.pkl"), rec.load_object("label.pkl")
            mse_obj = rec.load_object("sig_analysis/mse.pkl")
        mask = ~np.isnan(label.to_numpy())
        mse = np.mean((pred.to_numpy()[mask] - label.to_numpy()[mask]) ** 2)
        assert np.isclose(mse_obj, mse)
        assert np.isclose(rec.list_metrics()["RMSE"], np.sqrt(mse))


def suite():
    _suite = unittest.TestSuite()
    _suite.addTest(TestAllFlow("test_0_multiseg"))
    _suite.addTest(TestAllFlow("test_1_mse"))
    return _suite


if __name__ == "__main__":
    runner = unittest.TextTestRunner()
    runner.run(suite())
