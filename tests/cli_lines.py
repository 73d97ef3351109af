"""Check ``deerflow ...`` command lines (from docs and the compose file) against the real CLI.

A line is parsed the way the ``deerflow`` command parses it, down to its subcommand, without
running anything: an unknown command or option, a missing argument or a bad value raises.
"""

from __future__ import annotations

import shlex
from typing import Any

import typer.main

from deerflow.cli import app

_OPERATOR_CHARS = frozenset("&|;<>()")


def parse_deerflow(args: list[str]) -> tuple[str, dict[str, Any]]:
    """``(command path, parameters)`` of ``deerflow ARGS``; raises on a usage error."""
    command: Any = typer.main.get_command(app)
    context = command.make_context("deerflow", list(args))
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        rest = [*getattr(context, "_protected_args", []), *context.args]
        name, command, rest = command.resolve_command(context, rest)
        context = command.make_context(name, rest, parent=context)
    return context.command_path, dict(context.params)


def deerflow_invocations(shell: str) -> list[list[str]]:
    """The ``deerflow`` invocations in a shell snippet (continuations joined, ``VAR=value``
    prefixes and comments dropped; ``python -m deerflow`` counts too)."""
    found: list[list[str]] = []
    for line in shell.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= _OPERATOR_CHARS:  # &&, |, ;, >, ...: a command ends
                found.extend(_deerflow_args(command))
                command = []
            else:
                command.append(token)
    return found


def _deerflow_args(words: list[str]) -> list[list[str]]:
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]  # VAR=value prefixes
    if words[:1] == ["deerflow"]:
        return [words[1:]]
    if words[:3] in (["python", "-m", "deerflow"], ["python3", "-m", "deerflow"]):
        return [words[3:]]
    return []
