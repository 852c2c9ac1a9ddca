"""Credentials in URIs are redacted before we log or save them (qlib writes them out as given).

``mongodb://user:secret@host/db`` -> ``mongodb://user:***@host/db``; a token-only user-info
(``https://token@host``) becomes ``https://***@host``. :func:`redact` walks dicts, lists and tuples.

Example:
    >>> redact_uri("mongodb://qlib:hunter2@db:27017/")
    'mongodb://qlib:***@db:27017/'
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact", "redact_uri"]

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*)(?::(?P<pw>[^@/\s]*))?@")


def _sub(m: re.Match) -> str:
    if m.group("pw") is not None:
        return f"{m.group('scheme')}{m.group('user')}:***@"
    return f"{m.group('scheme')}***@"


def redact_uri(text: str) -> str:
    """``text`` with the password (or token) of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _USERINFO.sub(_sub, text)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with :func:`redact_uri` applied to every string inside (dict keys kept)."""
    if isinstance(obj, str):
        return redact_uri(obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj
