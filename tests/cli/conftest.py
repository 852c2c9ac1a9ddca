"""The CLI tests reuse the config corpus (tests/config) and the orchestration helpers (tests/orchestration)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _p in (_TESTS / "config", _TESTS / "orchestration", _TESTS / "robust"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
