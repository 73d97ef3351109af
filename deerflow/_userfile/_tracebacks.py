"""Tracebacks as a user reads them: their own frames, not the machinery that called them.

Frames of deerflow itself, of the import system and of the asyncio / thread-pool plumbing that
runs a task body say nothing about the user's mistake; the frames left, and the error line,
read as Python shows them for the user's file.
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

import deerflow

_STDLIB = Path(sysconfig.get_paths()["stdlib"])
_HIDDEN = (
    str(Path(deerflow.__file__).resolve().parent),
    str(_STDLIB / "asyncio"),
    str(_STDLIB / "concurrent"),
    str(_STDLIB / "importlib"),
    "<frozen ",
)
_FRAME = '  File "'
_HEADER = "Traceback (most recent call last):"


def users_frames(text: str) -> str:
    """``text`` (a formatted traceback) without the frames of files deerflow hides."""
    kept: list[str] = []
    hiding = False
    for line in text.splitlines():
        if line.startswith(_FRAME):
            hiding = line[len(_FRAME) :].startswith(_HIDDEN)
        elif not line.startswith("    "):
            hiding = False  # the error line, or a "During handling ..." separator
        if not hiding:
            kept.append(line)
    return "\n".join(
        line
        for line, after in zip(kept, [*kept[1:], ""], strict=True)
        if line != _HEADER or after.startswith(_FRAME)  # a header whose frames were all hidden
    )


def as_python_shows(exc: BaseException) -> str:
    """``exc`` as Python prints it, with only the user's frames."""
    if isinstance(exc, SyntaxError):  # its file and line are the error's, not a frame's
        return "".join(traceback.format_exception_only(exc)).rstrip()
    return users_frames("".join(traceback.format_exception(exc)))
