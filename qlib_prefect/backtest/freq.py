"""Frequency strings as qlib parses them (``qlib.utils.time.Freq``): ``"day"``, ``"1d"``, ``"5min"``, ``"week"``...

Example:
    >>> Freq.parse("day"), Freq.parse("5min"), str(Freq("1day"))
    ((1, 'day'), (5, 'min'), 'day')
"""

from __future__ import annotations

import re

from qlib_prefect.errors import ConfigError

__all__ = ["Freq"]

_FORMAT = {"month": "month", "mon": "month", "week": "week", "w": "week", "day": "day", "d": "day",
           "minute": "min", "min": "min"}


class Freq:
    """A parsed ``(count, base)`` frequency; ``base`` is one of ``month``, ``week``, ``day``, ``min``."""

    NORM_FREQ_MONTH = "month"
    NORM_FREQ_WEEK = "week"
    NORM_FREQ_DAY = "day"
    NORM_FREQ_MINUTE = "min"

    def __init__(self, freq: str | Freq) -> None:
        if isinstance(freq, Freq):
            self.count, self.base = freq.count, freq.base
        else:
            self.count, self.base = self.parse(freq)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (str, Freq)):
            return NotImplemented
        o = Freq(other)
        return (o.count, o.base) == (self.count, self.base)

    def __hash__(self) -> int:
        return hash((self.count, self.base))

    def __str__(self) -> str:
        return f"{self.count if self.count != 1 or self.base != 'day' else ''}{self.base}"

    def __repr__(self) -> str:
        return f"Freq({self})"

    @staticmethod
    def parse(freq: str) -> tuple[int, str]:
        """``"5min"`` -> ``(5, "min")``; raises :class:`ConfigError` on anything else."""
        m = re.match(r"^([0-9]*)(month|mon|week|w|day|d|minute|min)$", str(freq).lower())
        if m is None:
            raise ConfigError(
                f"freq {freq!r} is not supported; use (n)month/mon, (n)week/w, (n)day/d or (n)minute/min"
            )
        return (int(m.group(1)) if m.group(1) else 1), _FORMAT[m.group(2)]

    @staticmethod
    def key(freq: str) -> str:
        """The ``"{count}{base}"`` key qlib uses in result dicts (``"day"`` -> ``"1day"``)."""
        c, b = Freq.parse(freq)
        return f"{c}{b}"
