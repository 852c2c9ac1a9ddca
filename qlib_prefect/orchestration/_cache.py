"""Stage keys and the Prefect cache policy that uses them.

A stage key is ``sha256`` of the stage's name, the canonical hash of the config it depends on, the keys of its
upstream stages, the data fingerprint, the settings that change results (``qlib_init`` minus the experiment
manager and the data location) and the code version. Keys are computed before anything runs, so the plan
(``qlib-prefect run --plan``) shows them and whether each stage is already in the content store.

Dependencies (qlib's ``_exe_task`` order):

* ``dataset``: ``task.dataset``;
* ``train``: ``task.model`` (+ ``task.reweighter``) and the dataset key;
* a record that takes ``model``/``dataset`` (``SignalRecord``) or names ``<MODEL>``/``<DATASET>``: its config and
  the train + dataset keys;
* a record whose ``depend_cls`` is produced by an earlier record (``SigAnaRecord``/``PortAnaRecord`` ->
  ``SignalRecord``): its config and that record's key;
* any other record: its config and the keys of every earlier stage.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import pickle
import uuid
from dataclasses import dataclass, field
from typing import Any

from prefect.cache_policies import CachePolicy

from qlib_prefect.config.hashing import canonical_hash
from qlib_prefect.errors import ConfigError
from qlib_prefect.workflow.pipeline import RECORD_MODULE

__all__ = ["StageCachePolicy", "StageSpec", "build_plan", "stage_key"]

logger = logging.getLogger(__name__)

#: ``qlib_init`` keys that do not change results (where things are, not what they are).
_ENV_IGNORED = frozenset({"provider_uri", "exp_manager", "mount_path", "logging_level", "kernels", "redis_host",
                          "redis_port", "redis_task_db", "mongo", "flask_server", "dataset_cache", "expression_cache",
                          "local_cache_path", "calendar_cache", "joblib_backend", "maxtasksperchild"})


@dataclass
class StageCachePolicy(CachePolicy):
    """Cache key = the precomputed stage key passed to the task as ``key_param`` (``None`` -> no caching).

    Equal keys hit across processes; nothing of the task's source or of big inputs is hashed.
    """

    key_param: str = "stage_key"

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        key = inputs.get(self.key_param)
        return None if key is None else str(key)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a workflow run."""

    name: str  #: unique stage name: ``dataset``, ``train``, ``record.<i>.<Class>``
    kind: str  #: ``dataset`` | ``train`` | ``record``
    key: str
    config_hash: str
    upstream: tuple[str, ...] = ()  #: names of the stages whose outputs it reads (direct)
    index: int | None = None  #: record index in ``task.record``
    label: str = ""  #: record class name (or the stage kind)
    needs_model: bool = False
    ancestors: tuple[str, ...] = field(default=())  #: all stages upstream (transitive), nearest first

    @property
    def store_stage(self) -> str:
        """Directory name in the content store."""
        return self.kind if self.kind != "record" else self.label


def _hash_any(obj: Any, where: str) -> str:
    try:
        return canonical_hash(obj)
    except TypeError as e:
        try:
            return hashlib.sha256(pickle.dumps(obj, protocol=4)).hexdigest()
        except Exception:
            logger.warning("%s: cannot hash the config (%s); this stage is never cached", where, e)
            return "uncacheable-" + uuid.uuid4().hex


def stage_key(name: str, config_hash: str, upstream_keys: list[str], fingerprint: str, env_hash: str,
              version: str) -> str:
    """The 64-hex-digit key of a stage."""
    payload = json.dumps([name, config_hash, upstream_keys, fingerprint, env_hash, version], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def _contains(obj: Any, values: set[str]) -> bool:
    if isinstance(obj, str):
        return obj in values
    if isinstance(obj, dict):
        return any(_contains(v, values) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains(v, values) for v in obj)
    return False


def _record_class(rec: Any, where: str) -> type | None:
    from qlib_prefect.utils import get_callable_kwargs

    if not isinstance(rec, (dict, str, type)):
        return type(rec)
    try:
        cls, _ = get_callable_kwargs(rec, RECORD_MODULE, where=where)
    except ConfigError:
        raise
    return cls


def _takes_model(cls: type | None) -> bool:
    if cls is None:
        return False
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False
    return "model" in params or "dataset" in params


def resolve_dotted(task: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``task`` with dotted-path placeholders (``<dataset.kwargs.segments.train.0>``) filled."""
    from qlib_prefect.utils.placeholder import fill_placeholder

    return fill_placeholder(copy.deepcopy(task), {})


def env_hash(qlib_init: dict[str, Any]) -> str:
    """Hash of the ``qlib_init`` settings that can change results (region, trade unit, ...)."""
    env = {k: v for k, v in (qlib_init or {}).items() if k not in _ENV_IGNORED}
    env.setdefault("region", "cn")
    return _hash_any(env, "qlib_init")


def build_plan(task: dict[str, Any], *, fingerprint: str, env: str, version: str) -> list[StageSpec]:
    """The stages of ``task`` with their keys, in execution order."""
    task = resolve_dotted(task)
    if "dataset" not in task or "model" not in task:
        raise ConfigError("task: needs both 'model' and 'dataset' sections")
    stages: dict[str, StageSpec] = {}

    def add(name: str, kind: str, cfg_hash: str, upstream: list[str], **kw: Any) -> StageSpec:
        ancestors: list[str] = []
        for u in upstream:
            for a in (u, *stages[u].ancestors):
                if a not in ancestors:
                    ancestors.append(a)
        key = stage_key(name if kind != "record" else f"record:{kw.get('label')}", cfg_hash,
                        [stages[u].key for u in upstream], fingerprint, env, version)
        spec = StageSpec(name=name, kind=kind, key=key, config_hash=cfg_hash, upstream=tuple(upstream),
                         ancestors=tuple(ancestors), **kw)
        stages[name] = spec
        return spec

    add("dataset", "dataset", _hash_any(task["dataset"], "task.dataset"), [], label="dataset")
    add("train", "train", _hash_any({"model": task["model"], "reweighter": task.get("reweighter")}, "task.model"),
        ["dataset"], label="train")
    records = task.get("record") or []
    if not isinstance(records, list):
        records = [records]
    produced: list[tuple[str, type | None]] = []
    for i, rec in enumerate(records):
        where = f"task.record.{i}"
        cls = _record_class(rec, where)
        label = cls.__name__ if cls is not None else "Record"
        name = f"record.{i}.{label}"
        needs_model = _takes_model(cls) or _contains(rec, {"<MODEL>", "<DATASET>"})
        if needs_model:
            upstream = ["train", "dataset"]
        else:
            dep = getattr(cls, "depend_cls", None)
            src = None
            if isinstance(dep, type):
                src = next((n for n, c in reversed(produced) if c is not None and issubclass(c, dep)), None)
            upstream = [src] if src is not None else ["dataset", "train", *(n for n, _ in produced)]
        add(name, "record", _hash_any(rec, where), upstream, index=i, label=label, needs_model=needs_model)
        produced.append((name, cls))
    return list(stages.values())
