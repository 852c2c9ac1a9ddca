"""The loaded config object, :class:`WorkflowConfig` (what :func:`~qlib_prefect.config.loader.load_config` returns)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qlib_prefect.config.hashing import config_hash as _config_hash
from qlib_prefect.config.models import WorkflowSpec
from qlib_prefect.config.yaml_codec import dump_yaml
from qlib_prefect.errors import ConfigError

__all__ = ["DEFAULT_EXPERIMENT_NAME", "WorkflowConfig"]

#: qrun's default experiment name.
DEFAULT_EXPERIMENT_NAME = "workflow"


class WorkflowConfig:
    """A loaded qrun config.

    ``raw`` is the merged dict exactly as qrun would see it (placeholders untouched, dates as ``datetime.date``);
    ``spec`` the validated :class:`~qlib_prefect.config.models.WorkflowSpec` (None when loaded with
    ``validate=False``). ``task``/``qlib_init``/``records``/``section()`` return deep copies, so a trainer may fill
    placeholders in place without changing ``raw``.
    """

    def __init__(
        self,
        *,
        raw: dict[str, Any],
        spec: WorkflowSpec | None = None,
        path: Path | None = None,
        sources: tuple[str, ...] = (),
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.raw = raw
        self.spec = spec
        self.path = path
        self.sources = sources
        self.warnings = warnings

    @property
    def config_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def task(self) -> dict[str, Any]:
        """A deep copy of ``raw["task"]``."""
        return copy.deepcopy(self.raw.get("task") or {})

    @property
    def qlib_init(self) -> dict[str, Any]:
        """A deep copy of ``raw["qlib_init"]`` (``{}`` when absent), for ``init(**qlib_init)``."""
        return copy.deepcopy(self.raw.get("qlib_init") or {})

    @property
    def experiment_name(self) -> str:
        """``experiment_name`` of the config, else qrun's default ``"workflow"``."""
        return self.resolve_experiment_name()

    def resolve_experiment_name(self, default: str = DEFAULT_EXPERIMENT_NAME) -> str:
        """qrun's rule: the config's ``experiment_name`` wins over ``default`` (the CLI's ``--experiment_name``)."""
        name = self.raw.get("experiment_name")
        return default if name is None else str(name)

    @property
    def records(self) -> list[Any]:
        """``task.record`` as a list (a single record dict is wrapped, like qlib's trainer)."""
        rec = self.task.get("record")
        if rec is None:
            return []
        return list(rec) if isinstance(rec, list) else [rec]

    def section(self, dotted: str | None = None) -> Any:
        """A deep copy of the value at ``dotted`` (``"task.model"``, ``"task.record.0"``); None -> everything."""
        if not dotted:
            return copy.deepcopy(self.raw)
        cur: Any = self.raw
        for part in dotted.split("."):
            if isinstance(cur, Mapping) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
                cur = cur[int(part)]
            else:
                raise ConfigError(f"config has no section {dotted!r} (stopped at {part!r})")
        return copy.deepcopy(cur)

    def config_hash(self, section: str | None = None, length: int = 16) -> str:
        """Stable hash of a section (see :mod:`qlib_prefect.config.hashing`), e.g. ``config_hash("task.dataset")``."""
        return _config_hash(self.section(section), length=length)

    def to_yaml(self) -> str:
        """``raw`` as YAML text (anchors expanded) that :func:`load_config` reads back to an equal ``raw``."""
        return dump_yaml(self.raw)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def __repr__(self) -> str:
        src = f" from {self.path}" if self.path is not None else ""
        return f"WorkflowConfig(experiment_name={self.experiment_name!r}{src}, hash={self.config_hash()})"
