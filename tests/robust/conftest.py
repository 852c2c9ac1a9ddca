"""Fixtures of the robustness tests: the orchestration tests' helpers and a small qlib-format data set."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _p in (HERE, HERE.parent / "orchestration"):  # orch_helpers, stage_helpers, robust_helpers
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


@pytest.fixture(scope="session")
def robust_data(session_tmp: Path) -> Path:
    from orch_helpers import make_small_data

    return make_small_data(session_tmp / "robust_small_data")
