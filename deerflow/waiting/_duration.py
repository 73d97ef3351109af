"""Durations as the waiting decorators take them: seconds, a ``timedelta`` or ``"1h30m"``."""

from __future__ import annotations

import re
from datetime import timedelta

from deerflow.errors import DefinitionError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")

#: what a duration may be given as
Duration = float | int | str | timedelta


def seconds(where: str, name: str, value: Duration) -> float:
    """``value`` in seconds (> 0); :class:`DefinitionError` naming ``where`` and ``name``.

    A string is one or more ``<number><unit>`` parts, unit ``ms``, ``s``, ``m``, ``h``,
    ``d`` or ``w``: ``"30s"``, ``"10m"``, ``"1h30m"``, ``"7d"``.
    """
    total: float
    if isinstance(value, bool):
        total = -1.0
    elif isinstance(value, timedelta):
        total = value.total_seconds()
    elif isinstance(value, int | float):
        total = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise DefinitionError(
                f"{where}: {name}={value!r} is not a duration (such as '30s', '10m', '1h30m', '7d')"
            )
        total = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise DefinitionError(
            f"{where}: {name} must be seconds, a timedelta or a string such as '10m', "
            f"got {type(value).__name__}"
        )
    if total <= 0:
        raise DefinitionError(f"{where}: {name} must be > 0, got {value!r}")
    return total
