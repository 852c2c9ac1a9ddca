"""The one Flow base of the package and what every flow entry shares (config loading, result storage).

:class:`LeanFlow` is a Prefect ``Flow`` whose direct call (1) applies the lean Prefect environment defaults,
(2) runs the flow's ``prepare`` hook before any flow run exists (config errors fail there, naming the YAML path;
work that overlaps the API server's start-up begins there), then (3) calls the flow with heartbeats off, after
waiting for an API server the CLI started early; a top-level call first sets Crashed the flow runs that killed
processes left Running (:func:`~qlib_prefect.orchestration.housekeeping.crash_dangling_flow_runs`), and every flow
run is tagged with its owner process. ``with_options`` keeps all of it (Prefect's returns a plain ``Flow``).

The owner tags name the flow run only: the flow's body runs with the caller's tags (a ``TagsContext`` without
them), so its task runs do not carry them. Prefect treats every task-run tag as a possible tag concurrency limit and
asks the API server for slots before each task run (one round trip per task, about 0.35 s against a running
``prefect server`` on the project's machine), whether or not such a limit exists.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Flow, tags
from prefect.context import TagsContext
from prefect.utilities.hashing import file_hash

from qlib_prefect.orchestration._settings import apply_env_defaults, lean_prefect_settings
from qlib_prefect.orchestration.housekeeping import crash_dangling_flow_runs, flow_run_owner_tags

__all__ = ["LeanFlow", "flow_run_id", "load_workflow_config", "results_dir", "state_name", "warm_tracking"]

logger = logging.getLogger("qlib_prefect.orchestration")



class LeanFlow(Flow):
    """A Prefect flow with the package's call protocol (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], *, prepare: Callable[..., None] | None = None, **kwargs: Any) -> None:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"LeanFlow runs synchronous flow functions only, got {fn.__qualname__}")
        if not kwargs.get("version"):  # Prefect's default, a hash of the flow function's file (not this one's)
            kwargs["version"] = _file_version(fn)
        super().__init__(_without_owner_tags(fn), **kwargs)
        self.prepare = prepare

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        apply_env_defaults()
        if self.prepare is not None:
            self.prepare(*args, **kwargs)
        with lean_prefect_settings():
            if get_run_context_or_none() is None:  # a top-level flow call: end what killed processes left
                crash_dangling_flow_runs()
            with tags(*flow_run_owner_tags()):
                return super().__call__(*args, **kwargs)

    def with_options(self, **kwargs: Any) -> LeanFlow:
        new = super().with_options(**kwargs)
        new.__class__ = type(self)
        new.prepare = self.prepare
        return new


def _file_version(fn: Callable[..., Any]) -> str | None:
    try:
        path = inspect.getsourcefile(fn)
        return file_hash(path) if path else None
    except (OSError, TypeError):  # no source file (a REPL)
        return None


def _without_owner_tags(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with the current tags minus this process's owner tags (see the module docstring)."""

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        with TagsContext(current_tags=TagsContext.get().current_tags - set(flow_run_owner_tags())):
            return fn(*args, **kwargs)

    return body


def results_dir() -> Path:
    """Where Prefect persists the small stage results (references into the content store)."""
    from qlib_prefect.config.settings import home_dir

    p = home_dir() / "prefect-results"
    p.mkdir(parents=True, exist_ok=True)
    return p


def load_workflow_config(config: Any) -> Any:
    """A ``WorkflowConfig`` from a dict, a YAML path or a ``WorkflowConfig`` (the bundled sample filled in)."""
    from qlib_prefect.config.loader import WorkflowConfig, load_config
    from qlib_prefect.data.sample import ensure_sample_env

    if isinstance(config, WorkflowConfig):
        return config
    ensure_sample_env(config)
    return load_config(config)


def warm_tracking() -> None:
    """Open the MLflow store of the run to come (import, engine, schema) in this thread, while the Prefect API
    server starts or the dataset builds; the flow's ``R.start_exp`` then finds the client ready."""
    try:
        from qlib_prefect.workflow import R
        from qlib_prefect.workflow.expm import MLflowExpManager

        manager = R.exp_manager
        if isinstance(manager, MLflowExpManager):
            manager.client  # noqa: B018 - builds and caches the client of the manager's URI
    except Exception as e:  # the flow opens it again and reports the error
        logger.debug("tracking warm-up skipped: %s", e)


def get_run_context_or_none() -> Any:
    """The current Prefect flow/task run context, ``None`` outside one."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() or TaskRunContext.get()


def flow_run_id() -> str:
    """The id of the running Prefect flow run (``""`` outside one)."""
    try:
        from prefect.context import get_run_context

        return str(get_run_context().flow_run.id)
    except Exception:  # not inside a flow run
        return ""


def state_name(state: Any) -> str:
    """A task or flow run state's display name (``Completed``, ``Cached``...)."""
    return getattr(state, "name", None) or str(getattr(state, "type", "?"))
