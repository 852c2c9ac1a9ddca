"""docs/qlib_api.md stays true: every name of a "supported" row resolves through its qlib module path (the alias
mechanism qlib configs use) to an object of our package, and no name of a "not yet" row is claimed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qlib_prefect.config.classpath import QLIB_ALIASES, resolve_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "qlib_api.md"


def _rows(status: str) -> list[tuple[str, str]]:
    out = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1] == status:
            mods = re.findall(r"`([\w.]+)`", cells[0])
            names = re.findall(r"`(\w+)`", cells[2])
            out += [(m, n) for m in mods for n in names]
    return out


SUPPORTED = _rows("supported")


def test_the_table_is_read() -> None:
    assert len(SUPPORTED) > 150
    assert ("qlib.data.ops", "Ref") in SUPPORTED and ("qlib.data.filter", "ExpressionDFilter") in SUPPORTED


@pytest.mark.parametrize(("module", "name"), SUPPORTED, ids=[f"{m}.{n}" for m, n in SUPPORTED])
def test_supported_name_resolves_through_its_qlib_path(module: str, name: str) -> None:
    obj = resolve_class(name, module)
    assert obj is not None
    home = getattr(obj, "__module__", None) or QLIB_ALIASES[name]
    assert home.startswith("qlib_prefect"), (module, name, home)


def test_names_marked_not_yet_are_really_absent() -> None:
    for _, name in _rows("not yet (issue 17)"):
        assert name not in QLIB_ALIASES, f"{name} is resolvable: move its row to 'supported'"
