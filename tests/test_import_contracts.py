"""The import contracts of pyproject.toml (``lint-imports``, also run by ``make test``) hold, and can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_contracts_kept() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 4 kept, 0 broken." in out.stdout


def test_an_upward_import_mlflow_in_data_and_a_cycle_break_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "qlib_prefect", tmp_path / "qlib_prefect", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    sample = tmp_path / "qlib_prefect" / "data" / "sample.py"
    wrong = "\n\ndef _wrong():\n    import mlflow\n\n    from qlib_prefect.workflow import R\n"
    sample.write_text(sample.read_text() + wrong)
    processor = tmp_path / "qlib_prefect" / "data" / "processor.py"  # handler imports processor: a cycle
    cycle = "\n\ndef _cycle():\n    from qlib_prefect.data.handler import DataHandler\n"
    processor.write_text(processor.read_text() + cycle)
    out = _lint(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Contracts: 1 kept, 3 broken." in out.stdout
    assert "No cycles are allowed in qlib_prefect.data." in out.stdout
    assert "qlib_prefect.data.sample -> qlib_prefect.workflow" in out.stdout
    assert "qlib_prefect.data.sample -> mlflow" in out.stdout
