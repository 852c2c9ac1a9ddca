"""Record classes used by the orchestration tests (imported through the config's ``sys.path``)."""

from __future__ import annotations

import os

from qlib_prefect.workflow.record_temp import RecordTemp


class FailingRecord(RecordTemp):
    """Fails while ``QP_TEST_FAIL`` is set; otherwise saves ``ok.pkl``."""

    artifact_path = "failing"

    def __init__(self, recorder=None, label: str = "x") -> None:
        super().__init__(recorder=recorder)
        self.label = label

    def generate(self, **kwargs):
        self.save(**{"partial.pkl": 1})  # written before the failure: must not survive it
        if os.environ.get("QP_TEST_FAIL"):
            raise RuntimeError("FailingRecord: failing on purpose")
        self.save(**{"ok.pkl": self.label})


class ContextRecord(RecordTemp):
    """Reaches the flow's MLflow run through ``current_recorder()`` from a worker thread."""

    def generate(self, **kwargs):
        from qlib_prefect.orchestration import current_recorder

        rec = current_recorder()
        rec.set_tags(context_record="reached")
        pred = self.recorder.load_object("pred.pkl")  # upstream SignalRecord artifact via the store recorder
        self.recorder.log_metrics(pred_rows=len(pred))


class SlowRecord(RecordTemp):
    """Saves ``partial.pkl``, then works for ``seconds`` (a stage long enough to be interrupted by a test)."""

    artifact_path = "slow"

    def __init__(self, recorder=None, seconds: float = 120.0) -> None:
        super().__init__(recorder=recorder)
        self.seconds = seconds

    def generate(self, **kwargs):
        import time

        self.save(**{"partial.pkl": 1})
        print("SlowRecord working", flush=True)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        self.save(**{"done.pkl": 1})
