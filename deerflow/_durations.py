"""Durations written by hand: ``30d``, ``12h``, ``5m``, ``45s``, ``2w`` or seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds.

    Raises:
        ValueError: for anything else or a negative number, naming ``what`` and the forms taken.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        found = _DURATION.match(str(text))
        if found is None:
            raise ValueError(
                f"{what} {text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s or seconds"
            )
        seconds = float(found[1]) * _UNITS[found[2]]
    if seconds < 0:
        raise ValueError(f"{what} {text!r} is negative")
    return seconds
