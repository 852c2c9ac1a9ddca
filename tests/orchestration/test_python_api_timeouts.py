"""The Python API ``qlib_workflow(...)`` gets the CLI's Prefect start-up timeout (120 s, not Prefect's 20 s) and a
time-out error that says what to do (issue 16 item 6). Fresh processes: Prefect reads its settings at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from orch_helpers import small_config

pytestmark = [pytest.mark.slow]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")}
    env.update(QLIB_PREFECT_HOME=str(tmp / "home"), PREFECT_HOME=str(tmp / "prefect"), **extra)
    return env


def test_python_api_uses_the_cli_startup_timeout(tmp_path: Path) -> None:
    code = """
        from qlib_prefect.orchestration import qlib_workflow  # imports prefect: its settings are read now
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as T
        from qlib_prefect.orchestration._settings import apply_env_defaults, lean_prefect_settings
        before = T.value()
        apply_env_defaults()
        with lean_prefect_settings():
            print(before, T.value())
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["20", "120"]


def test_python_api_startup_timeout_error_says_what_to_do(small_data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "wf.yaml"
    cfg.write_text(yaml.safe_dump(small_config(small_data, f"sqlite:///{tmp_path / 'mlflow.db'}"), sort_keys=False))
    code = f"""
        from qlib_prefect.errors import ConfigError
        from qlib_prefect.orchestration import qlib_workflow
        try:
            qlib_workflow({str(cfg)!r})
        except ConfigError as e:
            print("ConfigError:", e)
    """
    # a deliberately impossible 1 s budget: no server boots that fast here. The output pipes close only once every
    # process the child started is gone, so a temporary server left orphaned (a second start after the first
    # failed one) makes this run into its time-out
    env = _env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert "ConfigError: Prefect's temporary API server did not start within 1 s" in out.stdout, (
        out.stdout[-2000:] + out.stderr[-3000:])
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in out.stdout and "PREFECT_API_URL" in out.stdout
