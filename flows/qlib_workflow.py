"""Deployment entrypoint: ``flows/qlib_workflow.py:qlib_workflow``.

    prefect deploy flows/qlib_workflow.py:qlib_workflow -n lgb --pool local
    prefect deployment run 'qlib-workflow/lgb' \
        --param config=examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml

or serve it from a process: ``python flows/qlib_workflow.py`` (``qlib_workflow.serve(name="qlib-workflow")``).
"""

from qlib_prefect.orchestration import qlib_workflow

__all__ = ["qlib_workflow"]

if __name__ == "__main__":
    qlib_workflow.serve(name="qlib-workflow")
