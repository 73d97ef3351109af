"""Live per-task progress of one run in the terminal (rich)."""

from __future__ import annotations

import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from deerflow.cli._live import STYLE, in_order
from deerflow.runtime import RunResult, TaskResult

_MARK = {
    "completed": "✔",
    "failed": "✘",
    "skipped": "⤼",
    "pending": "·",
    "retrying": "↻",
    "waiting": "◷",
}


def _duration(task: TaskResult) -> str:
    if task.started_at is None:
        return ""
    end = task.finished_at if task.status in ("completed", "failed", "skipped") else time.time()
    return f"{max(0.0, (end or time.time()) - task.started_at):.2f}s"


def render(result: RunResult) -> Group:
    """A table of the run's tasks with their status, attempts and duration.

    The run's own status shows only while it runs: once it ends, the command's last line says
    how it ended. No table while there is no task (a state-machine instance before its first
    handler, a run before its first decision).
    """
    table = Table(title=f"{result.workflow}  run {result.run_id}", expand=False)
    table.add_column("task")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error", overflow="fold", max_width=60)
    for task_id, task in in_order(result):
        if task is None:  # the children of a node past the first few
            table.add_row(Text(task_id, style="dim"), "", "", "", "")
            continue
        style = STYLE.get(task.status, "")
        status: Text | Spinner
        if task.status == "running":
            status = Spinner("dots", text=Text(" running", style=style))
        else:
            status = Text(f"{_MARK.get(task.status, '')} {task.status}", style=style)
        table.add_row(
            task_id,
            status,
            str(task.attempts or ""),
            _duration(task),
            Text(task.error or "", style="red"),
        )
    parts: list[Table | Text] = [table] if result.tasks else []
    if not result.done:
        parts.append(Text(f"run {result.status}", style=STYLE.get(result.status, "bold")))
    return Group(*parts)


class RunProgress:
    """A live view of one run, updated as its history changes."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live = Live(console=self.console, refresh_per_second=10, transient=False)

    def __enter__(self) -> RunProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)
        if not self.console.is_terminal:  # rich leaves the last line open in a file or pipe
            self.console.line()

    def note(self, line: str) -> None:
        """Print ``line`` above the live view; it stays when the view changes."""
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def update(self, result: RunResult) -> None:
        """Show ``result``'s current state."""
        self.show(render(result))

    def show(self, view: RenderableType) -> None:
        """Show ``view`` in place of what is shown."""
        self._live.update(view, refresh=True)
