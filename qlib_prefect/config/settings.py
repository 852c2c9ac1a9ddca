"""Settings read from the environment (prefix ``QLIB_PREFECT_``), pydantic-settings based.

| variable | meaning | default |
|---|---|---|
| ``QLIB_PREFECT_HOME`` | root of local caches (sample data, handler cache, content store) | ``~/.qlib_prefect`` |
| ``QLIB_PREFECT_MLFLOW_URI`` | default MLflow tracking URI | ``sqlite:///<cwd>/mlruns/mlflow.db`` |
| ``QLIB_PREFECT_MONGO_URL`` | TaskManager MongoDB URL | ``mongodb://localhost:27017/`` |
| ``QLIB_PREFECT_MONGO_DB`` | TaskManager database | ``default_task_db`` |

Example:
    >>> get_settings().home.name  # doctest: +SKIP
    '.qlib_prefect'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "home_dir"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QLIB_PREFECT_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path("~/.qlib_prefect").expanduser())
    mlflow_uri: str | None = None
    mongo_url: str = "mongodb://localhost:27017/"
    mongo_db: str = "default_task_db"
    #: ``QLIB_PREFECT_VERIFY_CONTENT=1``: hash every data file and cached artifact in full on every use instead of
    #: trusting (size, mtime, ctime, inode) stamps (slower; for shared or untrusted data directories)
    verify_content: bool = False


def get_settings() -> Settings:
    """Read the settings now (environment changes are honoured on every call)."""
    return Settings()


def home_dir() -> Path:
    """The cache root (created on demand)."""
    p = Path(get_settings().home).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p
