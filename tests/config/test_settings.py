"""The settings model: one documented table, validated values, every field read from its variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qlib_prefect.config.settings import Settings, env_name, get_settings, settings_table
from qlib_prefect.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_variables() -> set[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.M))


def test_readme_table_is_the_generated_table() -> None:
    assert settings_table() in README.read_text(encoding="utf-8"), "regenerate README's table: settings_table()"


def test_every_field_is_in_the_readme_and_vice_versa() -> None:
    fields = {env_name(f) for f in Settings.model_fields}
    assert _readme_variables() == fields
    assert len(fields) == len(Settings.model_fields)


def test_every_field_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {"home": str(tmp_path), "mlflow_uri": "sqlite:///x.db", "mongo_url": "mongodb://h:1/",
              "mongo_db": "d", "sample_dir": str(tmp_path), "expr_threads": "3", "handler_cache": "0",
              "window_deployment": "a/b", "early_server": "off", "fast_exit": "no", "heap_tweaks": "false",
              "mlflow_store_tweaks": "0", "prefect_api_url": "http://h:4200/api", "prefect_home": str(tmp_path),
              "prefect_profiles_path": str(tmp_path / "p.toml"), "prefect_allow_ephemeral": "false",
              "prefect_startup_timeout": "7.5", "mlflow_tracking_uri": "sqlite:///y.db",
              "mlflow_allow_file_store": "true", "prefect_extra_loggers": "a.b",
              "verify_content": "1", "max_memory": "8G"}
    assert set(values) == set(Settings.model_fields)
    defaults = Settings()
    for field, value in values.items():
        monkeypatch.setenv(env_name(field), value)
    s = get_settings()
    for field in values:
        assert getattr(s, field) != getattr(defaults, field), field
    assert s.expr_threads == 3 and s.prefect_startup_timeout == 7.5 and s.home == tmp_path


def test_empty_is_unset_and_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QLIB_PREFECT_HANDLER_CACHE", "")
    assert get_settings().handler_cache is True
    monkeypatch.setenv("QLIB_PREFECT_EXPR_THREADS", "many")
    with pytest.raises(ConfigError, match="QLIB_PREFECT_EXPR_THREADS='many'"):
        get_settings()
    monkeypatch.setenv("QLIB_PREFECT_EXPR_THREADS", "0")
    with pytest.raises(ConfigError, match="QLIB_PREFECT_EXPR_THREADS"):
        get_settings()
    monkeypatch.delenv("QLIB_PREFECT_EXPR_THREADS")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ConfigError, match="PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        get_settings()


def test_no_environment_reads_outside_the_settings_module() -> None:
    """Code reads settings through the model (writes for children, and the Jinja mapping of qrun configs, stay)."""
    root = Path(__file__).resolve().parents[2] / "qlib_prefect"
    allowed = {root / "config" / "settings.py", root / "config" / "loader.py"}
    reads = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=)|\.items\(\).*environ|"
                       r"environ\.items\(\)")
    found = []
    for path in root.rglob("*.py"):
        if path in allowed:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if reads.search(line) and not line.lstrip().startswith("#"):
                found.append(f"{path.relative_to(root)}:{no}: {line.strip()}")
    assert not found, "\n".join(found)
