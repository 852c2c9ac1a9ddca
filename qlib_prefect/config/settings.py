"""Every environment variable the package reads, in one pydantic-settings model (:class:`Settings`).

Our own variables have the prefix ``QLIB_PREFECT_``; a few variables of Prefect and MLflow are read too (to decide
before those libraries are imported, or to mirror their behaviour): they keep their own names (field aliases).
Code reads ``get_settings().<field>``, never ``os.environ``. The README's settings table lists exactly these
variables (a test compares the two); :func:`settings_table` renders it from the fields.

qlib reads its settings from ``qlib.init(...)`` keyword arguments and a few ``QLIB_*``/``_QLIB_*`` variables;
here the ``init`` keywords are the same and the environment variables are these.

Example:
    >>> get_settings().home.name  # doctest: +SKIP
    '.qlib_prefect'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qlib_prefect.errors import ConfigError

__all__ = ["ENV_PREFIX", "Settings", "env_name", "get_settings", "home_dir", "lineage_environment",
           "settings_table"]

ENV_PREFIX = "QLIB_PREFECT_"


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """The environment, validated. Booleans accept ``1/0``, ``true/false``, ``yes/no``, ``on/off``; an empty
    variable counts as unset."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    # --- ours
    home: Path = Field(default_factory=lambda: Path("~/.qlib_prefect").expanduser(),
                       description="local caches: sample data, handler cache, content store, stage results")
    mlflow_uri: str | None = Field(None, description="default MLflow tracking URI "
                                   "(default: `sqlite:///<cwd>/mlruns/mlflow.db`)")
    mongo_url: str = Field("mongodb://localhost:27017/", description="TaskManager MongoDB URL")
    mongo_db: str = Field("default_task_db", description="TaskManager database")
    sample_dir: Path | None = Field(None, description="Jinja variable of the example configs: the bundled "
                                    "sample's qlib-format folder (`run`/`demo` fill it when a config uses it)")
    expr_threads: int | None = Field(None, ge=1, description="threads of the expression engine "
                                     "(default: the process' CPUs, at most 4)")
    handler_cache: bool = Field(True, description="`0` turns the handler cache off")
    max_memory: int | None = Field(None, gt=0, description="working-memory cap of a handler build, bytes or "
                                   "`512M`/`8G`/`1T` (default: half the machine's RAM); a build whose panel "
                                   "would exceed it runs in chunks streamed into the memory-mapped handler cache (one "
                                   "that cannot, because a processor is not column-local or the cache is off, "
                                   "warns with the reason and builds in memory)")
    window_deployment: str | None = Field(None, description="deployment that runs rolling windows "
                                          "(default `qlib-workflow/qlib-workflow`)")
    early_server: bool = Field(True, description="tweak: the CLI starts Prefect's temporary API server at once "
                               "(`0`: leave it to Prefect, started at the first API call)")
    fast_exit: bool = Field(True, description="tweak: the CLI skips the interpreter's module teardown after the "
                            "`atexit` handlers (`0`: normal exit)")
    heap_tweaks: bool = Field(True, description="tweak: glibc `mallopt` heap reuse and numpy hugepage advice off "
                              "during handler builds (`0`: library defaults)")
    verify_content: bool = Field(False, description="`1`: hash every data file and cached artifact in full on "
                                 "every use instead of trusting (size, mtime, ctime, inode) stamps (slower; for "
                                 "shared or untrusted data directories)")
    mlflow_store_tweaks: bool = Field(True, description="tweak: direct SQL listing of runs and SQLite pragmas on "
                                      "MLflow's store (`0`: public `MlflowClient` calls only)")
    # --- read from Prefect's and MLflow's variables (their names)
    prefect_api_url: str | None = Field(None, validation_alias=_alias("PREFECT_API_URL"),
                                        description="Prefect: a running API server (no temporary server then)")
    prefect_home: Path | None = Field(None, validation_alias=_alias("PREFECT_HOME"),
                                      description="Prefect: its home (database, profiles; default `~/.prefect`)")
    prefect_profiles_path: Path | None = Field(None, validation_alias=_alias("PREFECT_PROFILES_PATH"),
                                               description="Prefect: profiles file (checked for an API URL)")
    prefect_allow_ephemeral: bool = Field(True, validation_alias=_alias("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"),
                                          description="Prefect: `false` forbids temporary servers")
    prefect_startup_timeout: float = Field(
        120.0, gt=0, validation_alias=_alias("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"),
        description="Prefect: seconds to wait for the temporary server (raised from Prefect's 20 s, CLI and "
                    "Python API)")
    prefect_extra_loggers: str | None = Field(None, validation_alias=_alias("PREFECT_LOGGING_EXTRA_LOGGERS"),
                                              description="Prefect: loggers whose records go to the run logs (the "
                                              "CLI adds the training-progress logger)")
    mlflow_tracking_uri: str | None = Field(None, validation_alias=_alias("MLFLOW_TRACKING_URI"),
                                            description="MLflow: tracking URI for `current_recorder(run_id)`")
    mlflow_allow_file_store: bool = Field(False, validation_alias=_alias("MLFLOW_ALLOW_FILE_STORE"),
                                          description="MLflow: `true` accepts the deprecated `file:` store")

    @field_validator("max_memory", mode="before")
    @classmethod
    def _parse_bytes(cls, v: Any) -> Any:
        """``"8G"``, ``"512m"``, ``"1.5T"`` or a plain number of bytes."""
        if isinstance(v, str):
            t = v.strip().upper().removesuffix("B")
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
            num = t[:-1] if mult > 1 else t
            try:
                return int(float(num) * mult)
            except ValueError:
                raise ValueError(f"not a size in bytes: {v!r} (use e.g. 8G, 512M or 1000000000)") from None
        return v

    @property
    def max_memory_bytes(self) -> int:
        """``max_memory``, or half the machine's physical RAM when unset."""
        if self.max_memory is not None:
            return int(self.max_memory)
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
        except (ValueError, OSError, AttributeError):  # no sysconf (e.g. Windows): assume 8 GB
            return 4 << 30

    @property
    def prefect_home_dir(self) -> Path:
        """Prefect's home folder (``$PREFECT_HOME`` or ``~/.prefect``)."""
        return (self.prefect_home or Path.home() / ".prefect").expanduser()


def env_name(field: str) -> str:
    """The environment variable of a :class:`Settings` field."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return ENV_PREFIX + field.upper()


def get_settings() -> Settings:
    """Read the settings now (environment changes are honoured on every call); a bad value raises
    :class:`ConfigError` naming the variable."""
    try:
        return Settings()
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err.get("loc") else "?"
            name = env_name(field) if field in Settings.model_fields else field
            problems.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise ConfigError("bad environment variable: " + "; ".join(problems)) from None


def home_dir() -> Path:
    """The cache root (created on demand)."""
    p = Path(get_settings().home).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


def lineage_environment() -> dict[str, str]:
    """qlib's lineage params: every ``_QLIB_*`` variable (recorded as run params, as qlib does; not settings)."""
    return {k: v for k, v in os.environ.items() if k.startswith("_QLIB_")}


def settings_table() -> str:
    """The Markdown table of every variable (as in the README)."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = "`~/.qlib_prefect`" if field == "home" else "computed"
        elif info.default is None:
            default = "unset"
        else:
            default = f"`{str(info.default).lower() if isinstance(info.default, bool) else info.default}`"
        rows.append(f"| `{env_name(field)}` | {info.description} | {default} |")
    return "\n".join(rows)
