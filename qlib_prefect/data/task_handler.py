"""qlib's task-handler helpers: ``init_task_handler`` (``qlib.data.dataset.utils``) and
``replace_task_handler_with_cache`` (``qlib.workflow.task.utils``)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from qlib_prefect.errors import ConfigError
from qlib_prefect.utils import init_instance_by_config

__all__ = ["hash_args", "init_task_handler", "replace_task_handler_with_cache"]


def hash_args(*args: Any) -> str:
    """qlib's ``hash_args``: md5 of ``json.dumps(args, sort_keys=True, default=str)``."""
    return hashlib.md5(json.dumps(args, sort_keys=True, default=str).encode()).hexdigest()


def init_task_handler(task: dict) -> Any:
    """Build the task's handler and put the object into ``task["dataset"]["kwargs"]["handler"]`` (in place)."""
    from qlib_prefect.data.handler import DataHandler

    h_conf = task["dataset"]["kwargs"].get("handler")
    if h_conf is None:
        raise ConfigError("task.dataset.kwargs: the task does not contain a handler part")
    handler = init_instance_by_config(h_conf, accept_types=DataHandler, _where="task.dataset.kwargs.handler")
    task["dataset"]["kwargs"]["handler"] = handler
    return handler


def replace_task_handler_with_cache(task: dict, cache_dir: str | Path = ".") -> dict:
    """A copy of ``task`` whose handler config is replaced by ``file://<cache_dir>/<class>.<hash10>.pkl``
    (the handler built once and pickled with its data, as qlib; an existing file is reused)."""
    cache_dir = Path(cache_dir)
    task = copy.deepcopy(task)
    handler = task["dataset"]["kwargs"]["handler"]
    if isinstance(handler, dict):
        h_path = cache_dir / f"{handler['class']}.{hash_args(handler)[:10]}.pkl"
        if not h_path.exists():
            h = init_instance_by_config(handler, _where="task.dataset.kwargs.handler")
            h.to_pickle(h_path, dump_all=True)
        task["dataset"]["kwargs"]["handler"] = f"file://{h_path}"
    return task
