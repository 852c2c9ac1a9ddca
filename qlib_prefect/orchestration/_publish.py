"""The one publish path: content-store entries -> an MLflow run (artifacts, metrics, params, tags).

Stages compute into the content store; publishing copies their entries into the flow's MLflow run, also when
they came from cache, so every run is complete in qlib's layout. :func:`publish_child_run` makes a new run
(a rolling window, a group summary) as a child of the flow's run and publishes into it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from qlib_prefect.orchestration._store import StoreEntry

__all__ = ["PARENT_TAG", "publish_child_run", "publish_child_task", "publish_refs", "publish_task",
           "recorder_for_run"]

PARENT_TAG = "mlflow.parentRunId"


def recorder_for_run(run_id: str, uri: str | None = None) -> Any:
    """An MLflow recorder for an existing run (works in any process: no flow context needed)."""
    from qlib_prefect.config.settings import get_settings
    from qlib_prefect.workflow import MLflowRecorder, get_client, resolve_uri, retry_locked

    uri = resolve_uri(uri or get_settings().mlflow_tracking_uri)
    run = retry_locked(lambda: get_client(uri).get_run(run_id))
    return MLflowRecorder(run.info.experiment_id, uri, mlflow_run=run)


def publish_refs(refs: list[dict[str, Any]], run_id: str, uri: str, *, recorder: Any = None) -> dict[str, float]:
    """Copy every referenced stage entry's artifacts, metrics, params and tags into the MLflow run ``run_id``;
    returns the latest value of each metric."""
    from mlflow.entities import Metric

    from qlib_prefect.workflow import retry_locked

    rec = recorder if recorder is not None and recorder.id == run_id else recorder_for_run(run_id, uri)
    now = int(time.time() * 1000)
    metrics: list[Any] = []
    latest: dict[str, float] = {}
    for ref in refs:
        stage_dir = Path(ref["path"])
        entry = StoreEntry(path=stage_dir, stage=stage_dir.parent.name, key=ref["key"])
        if entry.artifact_dir.is_dir() and any(entry.artifact_dir.iterdir()):
            rec.log_artifacts(entry.artifact_dir)
        for name, value, step in entry.metrics():
            metrics.append(Metric(key=name, value=float(value), timestamp=now, step=int(step)))
            latest[name] = float(value)
        if entry.params():
            rec.log_params(**entry.params())
        if entry.tags():
            rec.set_tags(**entry.tags())
    rec.flush()
    client = rec.client
    for i in range(0, len(metrics), 1000):
        chunk = metrics[i: i + 1000]
        retry_locked(lambda c=chunk: client.log_batch(run_id, metrics=c))
    return latest


def publish_child_run(refs: list[dict[str, Any]], *, parent_id: str, experiment_id: str, uri: str, name: str,
                      tags: dict[str, str]) -> str:
    """A new MLflow run ``name`` (child of ``parent_id``) holding ``refs``; FINISHED, or FAILED if publishing
    fails. Returns its run id."""
    from qlib_prefect.workflow import get_client, retry_locked

    client = get_client(uri)
    tags = {PARENT_TAG: parent_id, "mlflow.runName": name, **tags}
    run = retry_locked(lambda: client.create_run(experiment_id, tags=tags, run_name=name))
    run_id = run.info.run_id
    try:
        publish_refs(refs, run_id, uri)
    except BaseException:
        retry_locked(lambda: client.set_terminated(run_id, "FAILED"))
        raise
    retry_locked(lambda: client.set_terminated(run_id, "FINISHED"))
    return run_id


#: the Prefect tasks of the two publish calls (never cached: a run is published on every flow run)
publish_task = task(publish_refs, name="publish-to-mlflow", cache_policy=NO_CACHE, persist_result=False)
publish_child_task = task(publish_child_run, name="publish-window", cache_policy=NO_CACHE, persist_result=False)
