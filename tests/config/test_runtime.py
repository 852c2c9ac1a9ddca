"""``C``/``configure`` (the config half of ``qlib.init``) and the explicit ``qlib_prefect.init``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qlib_prefect.config import runtime
from qlib_prefect.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _reset():
    yield
    runtime.reset()


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (nothing imported before it), with this worktree first on the path."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                            "MLFLOW_DISABLE_TELEMETRY": "true"})


def test_configure_sets_region_defaults_and_moves_the_generation(tmp_path: Path) -> None:
    gen = runtime.generation()
    runtime.configure(provider_uri=tmp_path, region="US", kernels=1, skip_if_reg=True)
    assert runtime.generation() == gen + 1 and runtime.is_initialized()
    assert (runtime.C.region, runtime.C.trade_unit, runtime.C.limit_threshold) == ("us", 1, None)
    assert runtime.C["kernels"] == 1 and "skip_if_reg" not in runtime.C  # qlib.init switches are not config keys
    assert runtime.provider_path() == tmp_path.resolve()
    with pytest.raises(ConfigError, match=r"qlib_init\.region: unknown region 'eu'"):
        runtime.configure(region="eu")
    runtime.reset()
    assert not runtime.is_initialized() and runtime.C.region == "cn" and runtime.generation() > gen + 1


def test_config_imports_nothing_above_it() -> None:
    out = _run("""
        import json, sys
        from qlib_prefect.config.loader import load_config
        from qlib_prefect.config.runtime import C, configure
        configure(provider_uri="/nonexistent", region="tw")
        load_config({"task": {"model": {"class": "LGBModel"}, "dataset": {"class": "DatasetH"}}}, validate="structure")
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("qlib_prefect"))))
    """)
    assert out.returncode == 0, out.stderr
    mods = json.loads(out.stdout)
    above = [m for m in mods if m != "qlib_prefect" and m.split(".")[1] not in ("config", "errors", "_version")]
    assert "qlib_prefect.config.validation" in mods and above == []


def test_init_rebuilds_r_whatever_was_imported_before(tmp_path: Path) -> None:
    """Before, ``init()`` ran hooks registered at import time: without ``qlib_prefect.workflow`` imported first, a
    bad tracking URI went unnoticed at init. Now init configures C and rebuilds R, always."""
    ok = _run("""
        import sys
        import qlib_prefect
        qlib_prefect.init(provider_uri=sys.argv[1], region="us",
                          exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                                       "kwargs": {"uri": "sqlite:///" + sys.argv[1] + "/mlflow.db"}})
        from qlib_prefect.workflow import R
        print(R.is_built(), R.get_uri(), "mlflow" in sys.modules)
    """, str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["True", f"sqlite:///{tmp_path}/mlflow.db", "False"]  # MLflow not imported by init
    bad = _run("""
        import qlib_prefect
        qlib_prefect.init(exp_manager={"class": "MLflowExpManager", "kwargs": {"uri": "file:/tmp/mlruns"}})
    """)
    assert bad.returncode == 1 and "ConfigError" in bad.stderr and "sqlite:///" in bad.stderr
