"""qlib's ``Recorder`` / ``MLflowRecorder`` on MLflow 3 (``MlflowClient`` with explicit run ids, no fluent API).

Differences from qlib that users can see (all on purpose):

* params, metrics and tags are logged in the background **without loss**: reads of the run (``list_*``,
  ``load_object``, ``download_artifact``) and ``end_run`` flush first, and a background error is raised as
  :class:`~qlib_prefect.errors.RecorderError` at the next flush (qlib printed it and dropped the rest);
* a param longer than MLflow's limit is stored truncated with a marker and in full as the artifact
  ``params_full/<key>.txt`` (qlib#1317) instead of crashing the run;
* raw artifact access next to ``load_object`` (qlib#533): :meth:`MLflowRecorder.get_artifact_path`,
  :meth:`MLflowRecorder.load_bytes`, :meth:`MLflowRecorder.load_text`;
* a fifth status ``KILLED`` (MLflow's) is accepted by ``end_run``.

Example:
    >>> from qlib_prefect.workflow import R  # doctest: +SKIP
    >>> with R.start(experiment_name="demo"):  # doctest: +SKIP
    ...     R.log_metrics(IC=0.05)
    ...     R.save_objects(**{"pred.pkl": pred})
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from qlib_prefect.errors import LoadObjectError, RecorderError
from qlib_prefect.utils.serial import general_dump
from qlib_prefect.workflow import _async, lineage, sweeper
from qlib_prefect.workflow._store import get_client, retry_locked

__all__ = ["PARAMS_FULL_DIR", "MLflowRecorder", "Recorder"]

#: Folder (artifact path) that holds the full text of params longer than MLflow's limit.
PARAMS_FULL_DIR = "params_full"
_TRUNC_MARKER = "...[truncated; full value in artifact {path}]"
_TAG_LIMIT_FALLBACK = 8000


def _fmt_ms(ms: Any) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(float(ms) / 1000.0).strftime("%Y-%m-%d %H:%M:%S")


def _now_str() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


class Recorder:
    """Base recorder: identity, status and ``info`` (qlib's abstract ``Recorder``)."""

    STATUS_S = "SCHEDULED"
    STATUS_R = "RUNNING"
    STATUS_FI = "FINISHED"
    STATUS_FA = "FAILED"
    STATUS_K = "KILLED"  # MLflow's fifth status; not in qlib
    STATUSES = (STATUS_S, STATUS_R, STATUS_FI, STATUS_FA, STATUS_K)

    def __init__(self, experiment_id: str | None, name: str | None) -> None:
        self.id: str | None = None
        self.name = name
        self.experiment_id = experiment_id
        self.start_time: str | None = None
        self.end_time: str | None = None
        self.status = Recorder.STATUS_S

    def __repr__(self) -> str:
        return f"{type(self).__name__}(info={self.info})"

    def __str__(self) -> str:
        return str(self.info)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recorder) and self.id is not None and self.id == other.id

    @property
    def info(self) -> dict[str, Any]:
        return {
            "class": "Recorder",
            "id": self.id,
            "name": self.name,
            "experiment_id": self.experiment_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status": self.status,
        }

    def set_recorder_name(self, rname: str) -> None:
        self.recorder_name = rname


class MLflowRecorder(Recorder):
    """A recorder backed by one MLflow run (qlib's ``MLflowRecorder(experiment_id, uri, name, mlflow_run)``).

    Args:
        experiment_id: experiment of the run.
        uri: tracking URI (already resolved by the experiment manager).
        name: run name (default ``"mlflow_recorder"`` is chosen by the experiment).
        mlflow_run: an ``mlflow.entities.Run`` to wrap an existing run.
        async_logging: queue params/metrics/tags (default) or write them synchronously.
        config: a config dict whose hash is tagged on the run at ``start_run``.
    """

    def __init__(
        self,
        experiment_id: str | None,
        uri: str,
        name: str | None = None,
        mlflow_run: Any = None,
        *,
        async_logging: bool = True,
        config: Any = None,
    ) -> None:
        super().__init__(experiment_id, name)
        self._uri = uri
        self._artifact_uri: str | None = None
        self._async = async_logging
        self._config = config
        self._started_here = False
        self._repo: Any = None
        if mlflow_run is not None:
            info = mlflow_run.info
            self.name = mlflow_run.data.tags.get("mlflow.runName", getattr(info, "run_name", None))
            self.id = info.run_id
            self.experiment_id = info.experiment_id
            self.status = info.status
            self.start_time = _fmt_ms(info.start_time)
            self.end_time = _fmt_ms(info.end_time)
            self._artifact_uri = info.artifact_uri

    @classmethod
    def from_run_id(cls, run_id: str, uri: str | None = None, *, async_logging: bool = True) -> MLflowRecorder:
        """The recorder of an existing run (e.g. a run id passed to a Prefect task in another process).
        ``uri=None`` -> the default store (``$QLIB_PREFECT_MLFLOW_URI`` or ``./mlruns/mlflow.db``)."""
        from mlflow.exceptions import MlflowException

        from qlib_prefect.workflow._store import resolve_uri

        uri = resolve_uri(uri)
        try:
            run = retry_locked(lambda: get_client(uri).get_run(run_id))
        except MlflowException as e:
            raise RecorderError(f"no MLflow run {run_id!r} at {uri}") from e
        return cls(run.info.experiment_id, uri, mlflow_run=run, async_logging=async_logging)

    # ---- identity --------------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"{type(self).__name__}(info={self.info}, uri={self.uri}, artifact_uri={self.artifact_uri})"

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MLflowRecorder) and self.id is not None and self.id == other.id

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_repo"] = None
        state["_started_here"] = False  # a copy (e.g. in a Prefect worker process) logs synchronously, never ends it
        return state

    def _artifact_repo(self) -> Any:
        """The run's artifact repository, built from the known artifact URI (MLflow would re-read the run)."""
        if self._repo is None:
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            if self._artifact_uri is None:
                rid = self._require_id("artifacts")
                self._artifact_uri = retry_locked(lambda: self.client.get_run(rid)).info.artifact_uri
            self._repo = get_artifact_repository(self._artifact_uri, tracking_uri=self._uri)
        return self._repo

    def _log_file(self, local_path: str | os.PathLike, artifact_path: str | None) -> None:
        self._require_id("log_artifact")
        local_path = str(local_path)
        repo = self._artifact_repo()
        if os.path.isdir(local_path):
            name = os.path.basename(os.path.normpath(local_path))
            repo.log_artifacts(local_path, f"{artifact_path}/{name}" if artifact_path else name)
        else:
            repo.log_artifact(local_path, artifact_path)

    def _log_text(self, text: str, artifact_file: str) -> None:
        folder, _, fname = artifact_file.rpartition("/")
        tmp = Path(tempfile.mkdtemp(prefix="qlib-prefect-txt-"))
        try:
            path = tmp / fname
            path.write_text(text, encoding="utf-8")
            self._log_file(path, folder or None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def artifact_uri(self) -> str | None:
        return self._artifact_uri

    @property
    def client(self) -> Any:
        """The process-wide ``MlflowClient`` of this recorder's tracking URI."""
        return get_client(self._uri)

    def _require_id(self, what: str) -> str:
        if self.id is None:
            raise RecorderError(f"{what}: recorder {self.name!r} has no MLflow run yet; call start_run() first")
        return self.id

    # ---- background logging ----------------------------------------------------------------------------------
    def _logger(self) -> _async.RunLogger | None:
        if not self._async or self.id is None:
            return None
        lg = _async.peek_run_logger(self._uri, self.id)
        if lg is None and self._started_here and self.status == Recorder.STATUS_R:
            lg = _async.get_run_logger(self._uri, self.id, self.client)
        return lg

    def flush(self) -> None:
        """Wait until every queued param/metric/tag of this run is stored; re-raise a background error."""
        lg = _async.peek_run_logger(self._uri, self.id)
        if lg is not None:
            lg.flush()

    def _submit(self, ops: list[tuple]) -> None:
        if not ops:
            return
        lg = self._logger()
        if lg is not None:
            lg.submit(*ops)
            return
        sync = _async.RunLogger(client=self.client, run_id=self._require_id("log"))
        sync._process(ops)
        if sync._errors:
            err = sync._errors[0]
            raise RecorderError(f"logging to run {self.id} failed: {err}") from err

    # ---- run lifecycle ---------------------------------------------------------------------------------------
    def start_run(self) -> Any:
        """Create the MLflow run (or resume it when this recorder already has an id); returns the MLflow ``Run``."""
        client = self.client
        resumed = self.id is not None
        if not resumed:
            tags = {**lineage.run_tags(lineage.GitState(), self._config), **sweeper.owner_tags()}
            sweeper.mark_dangling_runs(client, [self.experiment_id])  # runs of killed processes -> KILLED
            run = retry_locked(
                lambda: client.create_run(experiment_id=self.experiment_id, run_name=self.name, tags=tags)
            )
            existing_params: dict[str, str] = {}
        else:
            rid = self.id
            retry_locked(lambda: client.update_run(rid, status=Recorder.STATUS_R))
            run = retry_locked(lambda: client.get_run(rid))
            existing_params = dict(run.data.params)
        info = run.info
        self.id = info.run_id
        self.experiment_id = info.experiment_id
        self.name = self.name or info.run_name
        self._artifact_uri = info.artifact_uri
        self.start_time = _now_str()
        self.end_time = None
        self.status = Recorder.STATUS_R
        self._started_here = True
        params = {k: v for k, v in lineage.run_params().items() if k not in existing_params}
        self._submit([("call", self._log_lineage, f"run {self.id}: logging code lineage")])
        self.log_params(**params)
        if self._config is not None and resumed:
            self.set_tags(**{lineage.CONFIG_HASH_TAG: lineage.config_hash(self._config)})
        return run

    def _log_lineage(self) -> None:
        git = lineage.git_state()
        rid = self._require_id("lineage")
        for fname, text in git.files.items():
            self._log_text(text, fname)
        if git.commit:
            self.client.set_tag(rid, lineage.GIT_COMMIT_TAG, git.commit)

    def end_run(self, status: str = Recorder.STATUS_S) -> None:
        """Flush queued logging, then end the run with ``status`` (kept SCHEDULED if never started, as qlib)."""
        if status not in Recorder.STATUSES:
            raise RecorderError(f"end_run: status {status!r} is not one of {list(Recorder.STATUSES)}")
        self.end_time = _now_str()
        if self.status != Recorder.STATUS_S:
            self.status = status
        error: BaseException | None = None
        lg = _async.peek_run_logger(self._uri, self.id)
        if lg is not None:
            try:
                lg.close()
            except RecorderError as e:
                error = e
            finally:
                _async.drop_run_logger(self._uri, self.id or "")
        if self._started_here and self.id is not None:
            rid, final = self.id, self.status
            if final in (Recorder.STATUS_S, Recorder.STATUS_R):
                retry_locked(lambda: self.client.update_run(rid, status=final))
            else:
                retry_locked(lambda: self.client.set_terminated(rid, status=final))
            self._started_here = False
        if error is not None:
            raise error

    # ---- logging ---------------------------------------------------------------------------------------------
    def log_params(self, **kwargs: Any) -> None:
        """Log params (values become ``str``). Values over MLflow's length limit are truncated with a marker and
        saved in full as ``params_full/<key>.txt``."""
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        ops: list[tuple] = []
        for key, value in kwargs.items():
            text = str(value)
            if len(text) > MAX_PARAM_VAL_LENGTH:
                path = f"{PARAMS_FULL_DIR}/{key}.txt"
                marker = _TRUNC_MARKER.format(path=path)
                ops.append(("call", self._text_artifact_fn(text, path), f"run {self.id}: saving full param {key!r}"))
                text = text[: max(MAX_PARAM_VAL_LENGTH - len(marker), 0)] + marker
            ops.append(("param", str(key), text))
        self._submit(ops)

    def _text_artifact_fn(self, text: str, path: str) -> Any:
        self._require_id("log_params")
        return lambda: self._log_text(text, path)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        """Log one value per metric at ``step`` (default 0, as MLflow)."""
        ts = _async.now_ms()
        ops = []
        for key, value in kwargs.items():
            try:
                val = float(value)
            except (TypeError, ValueError) as e:
                raise RecorderError(f"log_metrics: metric {key!r} has a non-numeric value {value!r}") from e
            ops.append(("metric", str(key), val, ts, int(step or 0)))
        self._submit(ops)

    def set_tags(self, **kwargs: Any) -> None:
        """Set tags (values become ``str``; values over MLflow's tag limit are truncated)."""
        try:
            from mlflow.utils.validation import MAX_TAG_VAL_LENGTH as limit
        except ImportError:  # pragma: no cover
            limit = _TAG_LIMIT_FALLBACK
        ops = []
        for key, value in kwargs.items():
            text = str(value)
            if len(text) > limit:
                text = text[: limit - 14] + "...[truncated]"
            ops.append(("tag", str(key), text))
        self._submit(ops)

    def delete_tags(self, *keys: str) -> None:
        rid = self._require_id("delete_tags")
        self.flush()
        for key in keys:
            retry_locked(lambda k=key: self.client.delete_tag(rid, k))

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload one local file (or a directory, as ``artifact_path/<dir name>``) (MLflow's ``log_artifact``)."""
        self._log_file(local_path, artifact_path)

    def log_artifacts(self, local_dir: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Upload the contents of ``local_dir`` under ``artifact_path`` (MLflow's ``log_artifacts``)."""
        self._require_id("log_artifacts")
        self._artifact_repo().log_artifacts(str(local_dir), artifact_path)

    def save_objects(self, local_path: str | os.PathLike | None = None, artifact_path: str | None = None,
                     **kwargs: Any) -> None:
        """qlib's ``save_objects``: upload ``local_path`` as is, or pickle each ``name=obj`` to a file ``name``."""
        if local_path is not None and kwargs:
            raise ValueError(
                "You can choose only one of `local_path`(save the files in a path) or `kwargs`(pass in the objects "
                "directly)"
            )
        self._require_id("save_objects")
        if local_path is not None:
            if Path(local_path).is_dir():  # qlib: a directory's content goes to artifact_path
                self._artifact_repo().log_artifacts(str(local_path), artifact_path)
            else:
                self._log_file(local_path, artifact_path)
            return
        tmp = Path(tempfile.mkdtemp(prefix="qlib-prefect-art-"))
        try:
            for name, data in kwargs.items():
                path = tmp / name
                path.parent.mkdir(parents=True, exist_ok=True)
                general_dump(data, path)
                sub = artifact_path
                if "/" in name:  # a nested name keeps its folders
                    head = name.rsplit("/", 1)[0]
                    sub = f"{artifact_path}/{head}" if artifact_path else head
                self._log_file(path, sub)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def save_parquet(self, artifact_path: str | None = None, **frames: Any) -> None:
        """Store DataFrames/Series as ``<name>.parquet`` (readable without pickle); qlib's pickles are unaffected."""
        self._require_id("save_parquet")
        tmp = Path(tempfile.mkdtemp(prefix="qlib-prefect-pq-"))
        try:
            for name, frame in frames.items():
                df = frame.to_frame() if hasattr(frame, "to_frame") and not hasattr(frame, "columns") else frame
                path = tmp / f"{name}.parquet"
                df.to_parquet(path)
                self._log_file(path, artifact_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ---- reading ---------------------------------------------------------------------------------------------
    def _local_artifact_dir(self) -> Path | None:
        uri = self._artifact_uri
        if not uri:
            return None
        p = urlparse(uri)
        if p.scheme == "file":
            return Path(unquote(p.path))
        if p.scheme == "" or (len(p.scheme) == 1 and os.name == "nt"):
            return Path(uri)
        return None

    def get_artifact_path(self, name: str, dst_path: str | os.PathLike | None = None) -> str:
        """Local filesystem path of artifact ``name`` (raw access, qlib#533). Local stores: the stored file itself
        (read-only use!); remote stores: downloaded to ``dst_path`` or a new temp folder."""
        rid = self._require_id("get_artifact_path")
        self.flush()
        local = self._local_artifact_dir()
        if local is not None and dst_path is None:
            path = local / name
            if not path.exists():
                raise LoadObjectError(f"run {rid}: no artifact {name!r} under {local}")
            return str(path)
        dst = str(dst_path) if dst_path is not None else tempfile.mkdtemp(prefix="qlib-prefect-dl-")
        try:
            return self._artifact_repo().download_artifacts(name, dst)
        except Exception as e:
            raise LoadObjectError(f"run {rid}: cannot download artifact {name!r}: {e}") from e

    def load_bytes(self, name: str) -> bytes:
        """Raw bytes of artifact ``name``."""
        return self._with_local_file(name, lambda p: p.read_bytes())

    def load_text(self, name: str, encoding: str = "utf-8") -> str:
        """Text of artifact ``name``."""
        return self._with_local_file(name, lambda p: p.read_text(encoding=encoding))

    def _with_local_file(self, name: str, fn: Any) -> Any:
        rid = self._require_id("load")
        self.flush()
        local = self._local_artifact_dir()
        if local is not None:
            path = local / name
            try:
                return fn(path)
            except Exception as e:
                raise LoadObjectError(f"run {rid}: cannot load artifact {name!r} ({path}): {e}") from e
        tmp = tempfile.mkdtemp(prefix="qlib-prefect-dl-")
        try:
            path = Path(self._artifact_repo().download_artifacts(name, tmp))
            return fn(path)
        except Exception as e:
            raise LoadObjectError(f"run {rid}: cannot load artifact {name!r}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load_object(self, name: str, unpickler: Any = pickle.Unpickler) -> Any:
        """Unpickle artifact ``name``; any failure -> :class:`LoadObjectError` naming the run and artifact."""
        if self.id is None:
            raise LoadObjectError(f"load_object({name!r}): recorder {self.name!r} was never started")

        def _load(path: Path) -> Any:
            with path.open("rb") as f:
                return unpickler(f).load()

        return self._with_local_file(name, _load)

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        """Artifact paths directly under ``artifact_path`` (one level), after flushing queued logging."""
        self._require_id("list_artifacts")
        self.flush()
        return [a.path for a in self._artifact_repo().list_artifacts(artifact_path)]

    def download_artifact(self, path: str, dst_path: str | None = None) -> str:
        self._require_id("download_artifact")
        self.flush()
        return self._artifact_repo().download_artifacts(path, dst_path)

    def _run(self) -> Any:
        rid = self._require_id("read run")
        self.flush()
        return retry_locked(lambda: self.client.get_run(rid))

    def list_metrics(self) -> dict[str, float]:
        """Latest value of each metric."""
        return dict(self._run().data.metrics)

    def list_params(self) -> dict[str, str]:
        return dict(self._run().data.params)

    def list_tags(self) -> dict[str, str]:
        return dict(self._run().data.tags)

    def get_metric_history(self, key: str) -> list[Any]:
        """All logged values of one metric (MLflow ``Metric`` objects with value, step, timestamp)."""
        rid = self._require_id("get_metric_history")
        self.flush()
        return list(retry_locked(lambda: self.client.get_metric_history(rid, key)))

    def get_artifact_uri(self) -> str:
        if self._artifact_uri is None:
            raise ValueError(
                "Please make sure the recorder has been created and started properly before getting artifact uri."
            )
        return self._artifact_uri

    def get_local_dir(self) -> str:
        """The run's folder (parent of its artifact folder) when artifacts are on the local filesystem."""
        if self._artifact_uri is None:
            raise ValueError(
                "Please make sure the recorder has been created and started properly before getting artifact uri."
            )
        local = self._local_artifact_dir()
        if local is None:
            raise RecorderError(f"run {self.id}: artifacts are not on the local file system ({self._artifact_uri})")
        parent = local.parent.resolve()
        if not parent.is_dir():
            parent.mkdir(parents=True, exist_ok=True)
        return str(parent)
