"""qlib's tests/test_workflow.py on our MLflow 3 store.

Adaptations: ``TMP_PATH`` ``./.mlruns_tmp/.trash`` (relative to the working directory) -> the same subfolders
of a temporary folder, and ``uri=str(TMP_PATH)`` (an MLflow file store, which MLflow >= 3.13 refuses) ->
``URI``, a SQLite store in ``TMP_PATH`` (copied from the session's migrated template, as
test_qlib_contrib_workflow.py does). The test body is otherwise unchanged: start a run, reopen the store, ask the
resumed recorder for its local artifact folder."""

import shutil
import tempfile
import unittest
from pathlib import Path

import pytest
from qlib_test_data import TestAutoData

from qlib_prefect.workflow import R


@pytest.fixture(scope="class")
def _mlflow_store(request: pytest.FixtureRequest, template_db: Path):
    folder = Path(tempfile.mkdtemp(prefix="qlib-workflow-"))
    request.cls.TMP_PATH = folder / ".mlruns_tmp" / ".trash"
    request.cls.URI = f"sqlite:///{request.cls.TMP_PATH / 'mlflow.db'}"
    request.cls.TEMPLATE = template_db
    yield
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.usefixtures("_mlflow_store")
class WorkflowTest(TestAutoData):
    # Creating the directory manually doesn't work with mlflow,
    # so we add a subfolder named .trash when we create the directory.
    TMP_PATH = Path("./.mlruns_tmp/.trash")
    URI = ""
    TEMPLATE = Path()

    def tearDown(self) -> None:
        if self.TMP_PATH.exists():
            shutil.rmtree(self.TMP_PATH)

    def test_get_local_dir(self):
        """ """
        self.TMP_PATH.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.TEMPLATE, self.TMP_PATH / "mlflow.db")  # the migrated schema (adaptation)

        with R.start(uri=self.URI):
            pass

        with R.uri_context(uri=self.URI):
            resume_recorder = R.get_recorder()
            resume_recorder.get_local_dir()


if __name__ == "__main__":
    unittest.main()
