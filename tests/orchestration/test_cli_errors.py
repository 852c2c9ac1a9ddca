"""``qlib-prefect run`` on a config with a misspelled key: exit 2, the YAML path and a suggestion (no flow run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "benchmarks" / "LightGBM"


def test_misspelled_key_names_the_path(tmp_path: Path) -> None:
    text = (EXAMPLE / "workflow_config_lightgbm_Alpha158.yaml").read_text()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text.replace("open_cost: 0.0005", "open_cots: 0.0005"))
    proc = subprocess.run([sys.executable, "-m", "qlib_prefect.cli.main", "run", str(cfg), "--plan"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "QLIB_PREFECT_SAMPLE_DIR": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("task.record.2.kwargs.config.backtest.exchange_kwargs.open_cots: unknown key; did you mean "
            "'open_cost'?") in proc.stderr


def test_examples_load_and_validate() -> None:
    from qlib_prefect.config.loader import load_config

    for name in ("workflow_config_lightgbm_Alpha158.yaml", "workflow_config_lightgbm_Alpha360.yaml"):
        cfg = load_config(EXAMPLE / name, env={"QLIB_PREFECT_SAMPLE_DIR": "/data"})
        assert cfg.qlib_init == {"provider_uri": "/data", "region": "us"}
        assert [r["class"] for r in cfg.records] == ["SignalRecord", "SigAnaRecord", "PortAnaRecord"]
