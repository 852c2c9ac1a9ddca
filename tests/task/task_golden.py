"""Helpers of the task-generation tests: the golden file (tests/golden/tasks) and its encoding."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

GOLD = Path(__file__).resolve().parents[1] / "golden" / "tasks"
GOLDENS: dict = json.loads((GOLD / "goldens.json").read_text())
VARIANTS = tuple(GOLDENS["variants"])


def enc(obj: Any) -> Any:
    """The golden encoding: Timestamp -> ISO string, tuples -> lists, strings/None/ints unchanged."""
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): enc(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [enc(v) for v in obj]
    return obj


def tup(x: Any) -> Any:
    """JSON lists back to tuples (segment inputs)."""
    if isinstance(x, dict):
        return {k: tup(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(x)
    return x


def outcome(fn: Callable[[], Any]) -> dict:
    """``{"result": enc(fn())}`` or ``{"error": <type name>}`` (as stored in the goldens)."""
    try:
        return {"result": enc(fn())}
    except Exception as e:  # compared with qlib's exception type
        return {"error": type(e).__name__}


def expected(case: dict) -> dict:
    """qlib's outcome, or qlib + the documented fixes where they differ (``fixed``)."""
    exp = case.get("fixed", case)
    return {"error": exp["error"]} if "error" in exp else {"result": exp["result"]}


def golden_cases(section: str) -> list[tuple[str, dict]]:
    return [(v, c) for v in VARIANTS for c in GOLDENS["variants"][v][section]]


