"""Deployment entrypoints: ``flows/rolling_workflow.py:rolling_workflow`` and ``:multi_horizon_workflow``.

    prefect deploy flows/rolling_workflow.py:rolling_workflow -n lgb-rolling --pool local
    prefect deployment run 'qlib-rolling/lgb-rolling' \
        --param config=examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml --param step=40

or serve it from a process: ``python flows/rolling_workflow.py``.
"""

from qlib_prefect.orchestration import multi_horizon_workflow, rolling_workflow

__all__ = ["multi_horizon_workflow", "rolling_workflow"]

if __name__ == "__main__":
    rolling_workflow.serve(name="qlib-rolling")
