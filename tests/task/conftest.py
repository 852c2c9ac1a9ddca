"""Fixtures of the task-generation tests (helpers live in task_golden.py, importable by the test modules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from task_golden import GOLD, GOLDENS

from qlib_prefect.data import registry
from qlib_prefect.data.provider import LocalProvider

_providers: dict[str, LocalProvider] = {}


@pytest.fixture
def use_variant() -> Iterator[Callable[[str], Path]]:
    """``use_variant("plain" | "future")`` installs that data directory as the process provider."""

    def _use(variant: str) -> Path:
        path = GOLD / GOLDENS["variants"][variant]["data"]
        if variant not in _providers:
            _providers[variant] = LocalProvider(path)
        registry.set_provider(_providers[variant])
        return path

    yield _use
    registry.set_provider(None)
