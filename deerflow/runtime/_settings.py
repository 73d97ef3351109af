"""Whole-number engine settings given as an argument or read from the environment."""

from __future__ import annotations

import os

from deerflow.errors import DeerflowError

__all__ = ["whole_number"]


def whole_number(given: int | None, variable: str, default: int, unit: str) -> int:
    """``given`` if not None, else the environment ``variable`` as a whole number, else
    ``default``; the caller checks the range.

    Raises:
        DeerflowError: the variable is set to something that is not a whole number of ``unit``.
    """
    if given is not None:
        return given
    raw = os.environ.get(variable, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise DeerflowError(f"{variable} must be a whole number of {unit}, not {raw!r}") from None
