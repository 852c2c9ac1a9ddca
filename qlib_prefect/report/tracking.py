"""MLflow 3 entries a run gets with its report (qlib's artifacts and names are untouched):

* the trained model (``params.pkl``) as an MLflow **LoggedModel** of the run, with an input/output signature
  (feature columns -> ``score``), loadable with ``mlflow.pyfunc.load_model(f"models:/{model_id}")`` and
  predicting what ``params.pkl`` predicts (:mod:`qlib_prefect.report.pyfunc`; ``qlib_prefect.model`` never imports
  mlflow);
* the dataset as a logged **input** whose digest is the data fingerprint (tag ``qlib_prefect.data_fingerprint``,
  else the provider's fingerprint);
* a **run name** saying what ran (``LGBModel Alpha158 sp500 ..2017-06-29``) when the run has qlib's default name
  ``mlflow_recorder`` (or none);
* the experiment tagged ``mlflow.experimentKind=custom_model_development`` (shown in the UI's model-training
  view, not under GenAI "Evaluations");
* the run **description** (``mlflow.note.content``) linking ``report.html``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from qlib_prefect.errors import LoadObjectError
from qlib_prefect.report.artifacts import RunArtifacts

__all__ = ["EXPERIMENT_KIND", "MODEL_ID_TAG", "add_mlflow_entries", "report_link", "run_name"]

logger = logging.getLogger(__name__)

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
#: run tag holding the id of the run's LoggedModel
MODEL_ID_TAG = "qlib_prefect.model_id"
FINGERPRINT_TAG = "qlib_prefect.data_fingerprint"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
_DEFAULT_NAMES = ("", "mlflow_recorder", "None")


def _task(config: Any) -> dict[str, Any]:
    """The task section of a workflow config (or the config itself when it is a task)."""
    if not isinstance(config, dict):
        return {}
    task = config.get("task", config)
    return task if isinstance(task, dict) else {}


def run_name(config: Any) -> str | None:
    """``<model> <handler> <market> ..<test end>`` from a qrun task config (None if it has no model)."""
    task = _task(config)
    model = task.get("model")
    if not isinstance(model, dict):
        return None
    parts = [str(model.get("class", "model"))]
    ds = task.get("dataset", {}).get("kwargs", {}) if isinstance(task.get("dataset"), dict) else {}
    handler = ds.get("handler")
    if isinstance(handler, dict):
        parts.append(str(handler.get("class", "handler")))
        market = handler.get("kwargs", {}).get("instruments")
        if isinstance(market, str):
            parts.append(market)
    test = (ds.get("segments") or {}).get("test")
    if isinstance(test, (list, tuple)) and len(test) == 2 and test[1] is not None:
        parts.append(f"..{pd.Timestamp(test[1]).date()}")
    return " ".join(parts)


def report_link(recorder: Any, name: str = "report.html") -> str:
    """Where the run's report opens: the tracking server's artifact URL, else the artifact's file URI."""
    uri = str(getattr(recorder, "uri", ""))
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/get-artifact?path={name}&run_uuid={recorder.id}"
    return f"{recorder.get_artifact_uri().rstrip('/')}/{name}"


def _dataset_input(art: RunArtifacts, tags: dict[str, str]) -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    fingerprint = tags.get(FINGERPRINT_TAG)
    source = ""
    try:
        from qlib_prefect.data.registry import get_provider

        provider = get_provider()
        fingerprint = fingerprint or provider.fingerprint()
        source = str(getattr(provider, "root", getattr(provider, "uri", "")) or "")
    except Exception as e:  # no provider initialised: the run's tag is all there is
        logger.debug("report: no provider for the dataset input (%s)", e)
    if not fingerprint:
        return None
    task = _task(art.config)
    handler = task.get("dataset", {}).get("kwargs", {}).get("handler", {}) if task else {}
    name = handler.get("class", "dataset") if isinstance(handler, dict) else "dataset"
    import json

    ds = Dataset(name=str(name), digest=str(fingerprint)[:36], source_type="local", source=json.dumps(
        {"uri": source, "fingerprint": str(fingerprint)}), schema=None, profile=None)
    return DatasetInput(dataset=ds, tags=[InputTag(key="mlflow.data.context", value="training")])


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _feature_names(recorder: Any, booster: Any) -> list[str]:
    """The handler's feature column names (from the run's ``dataset`` artifact: its loader's ``feature`` fields),
    else the booster's (``Column_<i>`` when it was trained on an array)."""
    names = list(booster.feature_name())
    try:
        fields = recorder.load_object("dataset").handler.data_loader.fields
        group = fields["feature"] if isinstance(fields, dict) else fields
        found = [str(n) for n in group[1]]
    except Exception:  # no dataset artifact, or a loader without a fields config
        return names
    return found if len(found) == len(names) else names


def _log_model(recorder: Any, art: RunArtifacts, client: Any) -> str | None:
    """The LoggedModel of ``params.pkl`` (None when the run has none or it is not a booster-backed model)."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from qlib_prefect.report.pyfunc import QlibPyfuncModel

    try:
        model = recorder.load_object("params.pkl")
    except LoadObjectError:
        return None
    booster = getattr(model, "model", None)
    if booster is None or not hasattr(booster, "feature_name"):
        return None
    features = _feature_names(recorder, booster)
    signature = ModelSignature(inputs=Schema([ColSpec("double", f) for f in features]),
                               outputs=Schema([ColSpec("double", "score")]))
    with tempfile.TemporaryDirectory(prefix="qlib-prefect-model-") as tmp:
        params = Path(tmp) / "params.pkl"
        import pickle

        params.write_bytes(pickle.dumps(model))
        local = Path(tmp) / "model"
        with warnings.catch_warnings(), _quiet("mlflow.pyfunc"):  # "no input example" / cloudpickle notes
            warnings.simplefilter("ignore")
            mlflow.pyfunc.save_model(str(local), python_model=QlibPyfuncModel(),
                                     artifacts={"params": str(params)}, signature=signature,
                                     pip_requirements=["qlib-prefect", "lightgbm", "pandas"])
        lm = client.create_logged_model(experiment_id=recorder.experiment_id, name=type(model).__name__,
                                        source_run_id=recorder.id, model_type="qlib",
                                        params={"features": str(len(features))})
        client.log_model_artifacts(lm.model_id, str(local))
        client.finalize_logged_model(lm.model_id, "READY")
    client.log_outputs(recorder.id, [LoggedModelOutput(model_id=lm.model_id, step=0)])
    return lm.model_id


def add_mlflow_entries(recorder: Any, art: RunArtifacts) -> None:
    """Add the entries of the module docstring to an MLflow recorder's run (no-op for other recorders)."""
    client = getattr(recorder, "client", None)
    if client is None or not hasattr(client, "create_logged_model"):
        return
    recorder.flush()
    run = client.get_run(recorder.id)
    tags = dict(run.data.tags)
    exp = client.get_experiment(recorder.experiment_id)
    if exp.tags.get(EXPERIMENT_KIND[0]) is None:
        client.set_experiment_tag(recorder.experiment_id, *EXPERIMENT_KIND)
    name = run_name(art.config)
    if name and str(run.info.run_name or "") in _DEFAULT_NAMES:
        client.update_run(recorder.id, name=name)
    link = (f"Report: [report.html]({report_link(recorder)}) (Artifacts tab: `report.html`; ledgers under "
            "`ledgers/`).")
    note = tags.get(NOTE_TAG, "")
    new_tags = {} if link in note else {NOTE_TAG: f"{note}\n\n{link}" if note else f"qlib-prefect run. {link}"}
    if MODEL_ID_TAG not in tags:
        model_id = _log_model(recorder, art, client)
        if model_id:
            new_tags[MODEL_ID_TAG] = model_id
    if not run.inputs.dataset_inputs:
        ds = _dataset_input(art, tags)
        if ds is not None:
            client.log_inputs(recorder.id, datasets=[ds])
    for k, v in new_tags.items():
        client.set_tag(recorder.id, k, v)
