"""What every ``deerflow`` command shares: its consoles, common options and one-line exits.

Exit codes: 0 done, 1 the run failed or did not complete, 2 an error (bad input, unknown run,
unreachable store, refused action), 124 a wait ran out (as ``timeout(1)``), 130 interrupted.
An error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperOption

import deerflow._codec as _codec
from deerflow._userfile import load_module_workflows
from deerflow.engine import Engine, Workflow
from deerflow.errors import DeerflowError, EventStoreError
from deerflow.eventstore import SqliteEventLog, open_log
from deerflow.runtime import default_store

T = TypeVar("T")
out = Console()
err = Console(stderr=True)

#: A wait ran out: what did not finish is still going, or still waiting.
TIMED_OUT = 124
INTERRUPTED = 130

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Event-log URL (memory://, sqlite:///file.db, kafka://host:9092); default "
        "$DEERFLOW_STORE or sqlite:///deerflow.db",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


AppOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--app",
        help="FILE.py defining workflows (draws dependencies, resolves triggers for replays); "
        "repeat it for several files.",
    ),
]
RunIdArg = Annotated[str, typer.Argument(help="Run id (or a unique prefix of one).")]


class WaitTimedOut(Exception):
    """A command's wait ran out; the message says what did not finish and how to look at it."""


def emit_json(value: Any) -> None:
    """``value`` as one line of JSON on stdout."""
    sys.stdout.write(_codec.dumps(value).decode() + "\n")
    sys.stdout.flush()


def name_values(
    pairs: list[str], malformed: Callable[[str], Exception]
) -> Iterator[tuple[str, str, Any]]:
    """``(name, text, value)`` of each ``NAME=VALUE`` option value, in order: ``value`` is the
    text read as JSON (``n=3`` gives 3), or the text itself when it is not JSON (``who=ann``).

    Raises:
        Exception: ``malformed(pair)`` for a pair without a name or an ``=``, when reached.
    """
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise malformed(pair)
        try:
            value = _codec.loads(text)
        except ValueError:
            value = text
        yield name, text, value


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def leave(message: str, code: int) -> NoReturn:
    """Print ``error: message`` and end the process now, without draining the engine.

    For a run given up on (timeout, Ctrl-C): a task body running in a thread cannot be
    stopped, and waiting for it would hide the answer for as long as it runs. Nothing is
    lost: the history is durable, and the next worker on the store picks the run up.
    """
    fail(message, code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def store_flag(store: str | None) -> str:
    """`` --store URL`` to repeat in a suggested command, when the store was given."""
    return f" --store {store}" if store else ""


def execute(main: Callable[[], Awaitable[T]], store: str | None, *, ctrl_c_ends: bool = False) -> T:
    """Run ``main``; turn deerflow errors, timeouts and Ctrl-C into one line and an exit code.

    ``ctrl_c_ends``: Ctrl-C is how the command normally ends (``tail -f``): exit 0, silently.
    """
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except KeyboardInterrupt:
        if ctrl_c_ends:
            raise typer.Exit(0) from None
        raise fail("interrupted", INTERRUPTED) from None
    except WaitTimedOut as exc:
        raise fail(str(exc), TIMED_OUT) from None
    except TimeoutError as exc:  # a wait without its own message: still one line
        raise fail(f"timed out: {exc or 'the store did not answer'}", TIMED_OUT) from None
    except EventStoreError as exc:
        raise fail(
            f"{exc} (store {store or default_store()}: pass --store URL or set DEERFLOW_STORE)"
        ) from None
    except DeerflowError as exc:
        raise fail(str(exc)) from None


def load_apps(apps: list[str] | None) -> list[Workflow]:
    """Every workflow the ``--app`` files define, each once."""
    found: dict[int, Workflow] = {}
    for app in apps or ():
        for wf in load_module_workflows(app)[0]:
            found.setdefault(id(wf), wf)  # a file imported by another is loaded once
    return list(found.values())


@contextlib.asynccontextmanager
async def open_engine(store: str | None, apps: list[str] | None = None) -> AsyncIterator[Engine]:
    """An engine that only reads and appends: no orchestrator, no worker, no services."""
    url = store or default_store()
    log = open_log(url)
    if isinstance(log, SqliteEventLog) and not log.path.exists():
        # Reading a store that is not there would create an empty one and report no runs.
        raise DeerflowError(
            f"no store at {log.path} ({url}); pass --store URL or set DEERFLOW_STORE"
        )
    async with Engine(log, load_apps(apps), orchestrate=False, work=False) as engine:
        yield engine


def _flags_take_no_value() -> None:
    """Show no type beside a plain flag in ``--help``.

    typer labels every option with its type, so ``--json <bool>`` reads as if the flag took a
    value; a flag takes none (options with a value keep their ``<int>``, ``<text>``, ...).
    """
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:  # a typer that shows no type at all
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return shown(self, ctx)  # type: ignore[no-any-return]

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_value()
