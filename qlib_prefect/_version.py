"""Single source of the package version, and the code version that is part of every stage cache key."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["__version__", "code_version", "source_hash"]

__version__ = "0.1.0"

_CODE_VERSION: list[str] = []


def source_hash(root: Path) -> str:
    """sha256 (hex) of every ``*.py`` file below ``root``: relative paths and contents, in path order."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def code_version() -> str:
    """``"<__version__>+<hash of the package's Python sources>"``, computed once per process (~10 ms).

    Stage and rolling-window cache keys use it: results computed by other code (an edited checkout, a patched
    install) are never reused, even under the same version number.
    """
    if not _CODE_VERSION:
        _CODE_VERSION.append(f"{__version__}+{source_hash(Path(__file__).resolve().parent)[:12]}")
    return _CODE_VERSION[0]
