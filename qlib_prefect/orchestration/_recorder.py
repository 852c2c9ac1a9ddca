"""A recorder that writes into a content-store entry instead of MLflow.

It implements the part of qlib's ``Recorder`` API that models and record templates use (``save_objects``,
``load_object``, ``log_metrics``, ``log_params``, ``set_tags``, ``list_artifacts``, ``list_metrics``,
``log_artifact``, ``id``), so any ``RecordTemp`` subclass named in a config runs unchanged inside a stage.
Reads fall back to the entries of upstream stages (``SigAnaRecord`` finds ``pred.pkl`` of ``SignalRecord``).
"""

from __future__ import annotations

import json
import pickle
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qlib_prefect.errors import LoadObjectError
from qlib_prefect.orchestration._store import ARTIFACTS
from qlib_prefect.utils.serial import general_dump

__all__ = ["StoreRecorder"]


class StoreRecorder:
    """Recorder over a stage directory ``path`` (being built) and read-only ``upstream`` entry directories."""

    def __init__(self, *, path: Path, upstream: Sequence[Path] = (), name: str = "stage",
                 experiment_id: str | None = None) -> None:
        self.path = Path(path)
        self.upstream = [Path(p) for p in upstream]
        self.id = f"store:{self.path.name}"
        self.name = name
        self.experiment_id = experiment_id
        self.status = "RUNNING"
        self._metrics: list[list[Any]] = []
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}
        self._lock = threading.Lock()
        (self.path / ARTIFACTS).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"StoreRecorder({self.path})"

    @property
    def artifact_dir(self) -> Path:
        return self.path / ARTIFACTS

    # ---- writing -----------------------------------------------------------------------------------------
    def save_objects(self, local_path: str | Path | None = None, artifact_path: str | None = None,
                     **kwargs: Any) -> None:
        """Pickle ``name=obj`` pairs (or copy ``local_path``) under ``artifact_path``."""
        if local_path is not None and kwargs:
            raise ValueError(
                "You can choose only one of `local_path`(save the files in a path) or `kwargs`(pass in the objects "
                "directly)"
            )
        _check_names(artifact_path, *kwargs)
        base = self.artifact_dir / artifact_path if artifact_path else self.artifact_dir
        base.mkdir(parents=True, exist_ok=True)
        if local_path is not None:
            src = Path(local_path)
            if src.is_dir():
                shutil.copytree(src, base, dirs_exist_ok=True)
            else:
                shutil.copy2(src, base / src.name)
            return
        for name, obj in kwargs.items():
            target = base / name
            target.parent.mkdir(parents=True, exist_ok=True)
            general_dump(obj, target)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        src = Path(local_path)
        base = self.artifact_dir / artifact_path if artifact_path else self.artifact_dir
        base.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, base / src.name, dirs_exist_ok=True)
        else:
            shutil.copy2(src, base / src.name)

    def log_metrics(self, step: int | None = None, **kwargs: Any) -> None:
        with self._lock:
            for k, v in kwargs.items():
                self._metrics.append([str(k), float(v), int(step or 0)])

    def log_metrics_batch(self, rows: Sequence[tuple[int, dict[str, float]]]) -> None:
        """``[(step, {name: value})]`` in one call (used by LGBModel for its evaluation history)."""
        with self._lock:
            for step, row in rows:
                for k, v in row.items():
                    self._metrics.append([str(k), float(v), int(step)])

    def log_params(self, **kwargs: Any) -> None:
        with self._lock:
            self._params.update({str(k): str(v) for k, v in kwargs.items()})

    def set_tags(self, **kwargs: Any) -> None:
        with self._lock:
            self._tags.update({str(k): str(v) for k, v in kwargs.items()})

    def flush(self) -> None:
        """Write metrics/params/tags to the entry directory (called before the entry is sealed)."""
        with self._lock:
            for name, data in (("metrics.json", self._metrics), ("params.json", self._params),
                               ("tags.json", self._tags)):
                (self.path / name).write_text(json.dumps(data), encoding="utf-8")

    # ---- reading -----------------------------------------------------------------------------------------
    def _locate(self, name: str) -> Path | None:
        for root in (self.path, *self.upstream):
            p = root / ARTIFACTS / name
            if p.is_file():
                return p
        return None

    def load_object(self, name: str, unpickler: Any = pickle.Unpickler) -> Any:
        p = self._locate(name)
        if p is None:
            raise LoadObjectError(f"stage recorder {self.name}: no artifact {name!r} in this stage or its upstream")
        try:
            with p.open("rb") as f:
                return unpickler(f).load()
        except Exception as e:
            raise LoadObjectError(f"stage recorder {self.name}: cannot load artifact {name!r} ({p}): {e}") from e

    def get_artifact_path(self, name: str, dst_path: Any = None) -> str:
        p = self._locate(name)
        if p is None:
            raise LoadObjectError(f"stage recorder {self.name}: no artifact {name!r}")
        return str(p)

    def list_artifacts(self, artifact_path: str | None = None) -> list[str]:
        """Paths directly under ``artifact_path`` (one level, MLflow style), over this stage and its upstream."""
        out: set[str] = set()
        for root in (self.path, *self.upstream):
            d = root / ARTIFACTS / artifact_path if artifact_path else root / ARTIFACTS
            if d.is_dir():
                for child in d.iterdir():
                    out.add(f"{artifact_path}/{child.name}" if artifact_path else child.name)
        return sorted(out)

    def list_metrics(self) -> dict[str, float]:
        """Latest value per metric (this stage, then upstream entries for names not logged here)."""
        out: dict[str, float] = {}
        for root in reversed(self.upstream):
            p = root / "metrics.json"
            if p.is_file():
                for k, v, _ in json.loads(p.read_text(encoding="utf-8")):
                    out[k] = v
        with self._lock:
            for k, v, _ in self._metrics:
                out[k] = v
        return out

    def list_params(self) -> dict[str, str]:
        with self._lock:
            return dict(self._params)

    def list_tags(self) -> dict[str, str]:
        with self._lock:
            return dict(self._tags)


def _check_names(*names: str | None) -> None:
    """Refuse artifact names that would leave the entry (absolute, ``..``, a drive): like the MLflow recorder."""
    from qlib_prefect.errors import RecorderError

    for name in names:
        if name is None:
            continue
        parts = str(name).replace("\\", "/").split("/")
        if str(name).startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise RecorderError(f"save_objects: artifact name {name!r} must be a relative path without '..'")
