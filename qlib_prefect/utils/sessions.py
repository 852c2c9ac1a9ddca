"""qlib's trading-session times (``qlib.utils.time``): ``CN_TIME``, ``US_TIME``, ``TW_TIME``.

Each is a list of ``datetime`` (1900-01-01 with the session's open/close times), as qlib builds them
with ``datetime.strptime``: CN has a lunch break (open, 11:30, 13:00, close), US/TW one session.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["CN_TIME", "TW_TIME", "US_TIME"]


def _hm(text: str) -> datetime:
    return datetime.strptime(text, "%H:%M")


CN_TIME = [_hm("9:30"), _hm("11:30"), _hm("13:00"), _hm("15:00")]
US_TIME = [_hm("9:30"), _hm("16:00")]
TW_TIME = [_hm("9:00"), _hm("13:30")]
