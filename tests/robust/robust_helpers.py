"""A record stage a test can hold (``QP_TEST_PAUSE`` set: it waits, to be killed) and configs around it."""

from __future__ import annotations

import os
import time

from qlib_prefect.workflow.record_temp import RecordTemp


class PauseRecord(RecordTemp):
    """Saves ``partial.pkl``; while ``QP_TEST_PAUSE`` is set, says so and waits; then saves ``done.pkl``.

    The pause is outside the config, so a paused and a free run have the same stage keys."""

    artifact_path = "pause"

    def generate(self, **kwargs):
        self.save(**{"partial.pkl": 1})
        if os.environ.get("QP_TEST_PAUSE"):
            print("PauseRecord working", flush=True)
            time.sleep(600)
        self.save(**{"done.pkl": 1})
        self.recorder.log_metrics(pause_done=1.0)


def custom_op_class() -> type:
    """A user operator (``Twice($x)``), defined on demand so that importing this module needs no data package."""
    from qlib_prefect.data.expression.operators import ElemOperator

    class Twice(ElemOperator):
        def _load_internal(self, instrument, start_index, end_index, *args):
            return self.feature.load(instrument, start_index, end_index, *args) * 2

    return Twice


Twice = custom_op_class()


class PandasFailRecord(RecordTemp):
    """Fails inside pandas (a KeyError of a missing column): a library error raised in a stage."""

    artifact_path = "pandas_fail"

    def generate(self, **kwargs):
        import pandas as pd

        return pd.DataFrame({"a": [1.0]})["no_such_column"]
