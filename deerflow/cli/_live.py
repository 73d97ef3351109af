"""Terminal views of runs for the CLI: a live table with one progress bar per task.

A task's bar fills when it completes; an expanding node (dynamic tasks, fan-out, map-reduce)
fills child by child, so ``deerflow runs show ID --follow`` shows a 10,000-way fan-out as one
moving bar rather than 10,000 rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from deerflow._userfile import users_frames
from deerflow.core.expand import node_of
from deerflow.runtime import RunResult, TaskResult

STYLE = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "waiting": "blue",
    "queued": "blue",
    "completed": "green",
    "failed": "bold red",
    "skipped": "magenta",
    "cancelled": "magenta",
    "compensated": "yellow",
    "compensation_failed": "bold red",
    "dropped": "magenta",
}
_DONE = frozenset({"completed", "failed", "skipped"})


def when(ts: float | None) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``, or empty."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_when(ts: float | None) -> str:
    """An epoch time in as few characters as a list needs: ``HH:MM:SS`` today, ``MM-DD HH:MM``
    this year, ``YYYY-MM-DD`` before."""
    if ts is None:
        return ""
    at = datetime.fromtimestamp(ts, UTC).astimezone()
    now = datetime.now(UTC).astimezone()
    if at.date() == now.date():
        return at.strftime("%H:%M:%S")
    return at.strftime("%m-%d %H:%M" if at.year == now.year else "%Y-%m-%d")


def elapsed(started_at: float | None, finished_at: float | None) -> str:
    """Seconds a task or run has taken so far, or took."""
    if started_at is None:
        return ""
    return f"{max(0.0, (finished_at or time.time()) - started_at):.2f}s"


def _children(result: RunResult) -> dict[str, list[TaskResult]]:
    grouped: dict[str, list[TaskResult]] = {}
    for task_id, task in result.tasks.items():
        node = node_of(task_id)
        if node is not None:
            grouped.setdefault(node, []).append(task)
    return grouped


def in_order(
    result: RunResult, children_per_node: int = 10
) -> Iterator[tuple[str, TaskResult | None]]:
    """The run's tasks in definition order, each node's children right after it (at most
    ``children_per_node`` of them, then one ``(summary, None)`` row for the rest)."""
    kids: dict[str, list[str]] = {}
    for task_id in result.tasks:
        node = node_of(task_id)
        if node is not None:
            kids.setdefault(node, []).append(task_id)
    for task_id, task in result.tasks.items():
        if node_of(task_id) is not None:
            continue
        yield task_id, task
        ids = kids.get(task_id, [])
        for child in ids[:children_per_node]:
            yield child, result.tasks[child]
        if len(ids) > children_per_node:
            rest = [result.tasks[c] for c in ids[children_per_node:]]
            done = sum(1 for t in rest if t.status == "completed")
            yield f"{task_id}/… {len(rest)} more ({done} completed)", None


def _bar(task: TaskResult, children: list[TaskResult]) -> ProgressBar:
    if children:
        done = sum(1 for c in children if c.status == "completed")
        return ProgressBar(total=len(children), completed=done, width=24)
    finished = 1 if task.status in _DONE else 0
    return ProgressBar(
        total=1, completed=finished, width=24, pulse=task.status in ("running", "retrying")
    )


def _status(task: TaskResult, children: list[TaskResult]) -> Text:
    text = Text(task.status, style=STYLE.get(task.status, ""))
    if children:
        done = sum(1 for c in children if c.status == "completed")
        text.append(f" {done}/{len(children)}", style="dim")
    return text


def task_table(result: RunResult) -> Table:
    """One row per top-level task: status (children done/all for a node), attempts, time,
    error; while the run goes on, a progress bar per task too."""
    live = not result.done
    table = Table(title=f"{result.workflow}  run {result.run_id}", expand=False)
    table.add_column("task", overflow="ellipsis", max_width=40)
    table.add_column("status", no_wrap=True)
    if live:
        table.add_column("progress")
    table.add_column("attempts", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error", overflow="fold", max_width=60)
    children = _children(result)
    for task_id, task in result.tasks.items():
        if node_of(task_id) is not None:
            continue
        mine = children.get(task_id, [])
        failed_child = next((c.error for c in mine if c.error), None)
        cells: list[RenderableType] = [task_id, _status(task, mine)]
        if live:
            cells.append(_bar(task, mine))
        cells += [
            str(task.attempts or ""),
            elapsed(task.started_at, task.finished_at),
            Text(task.error or failed_child or "", style="red"),
        ]
        table.add_row(*cells)
    return table


def tracebacks(result: RunResult, limit: int = 3) -> list[Text]:
    """The last attempt's traceback of each failed task (the user's frames), at most
    ``limit`` of them."""
    failed = [
        (task_id, task)
        for task_id, task in result.tasks.items()
        if task.status == "failed" and task.traceback
    ]
    shown: list[Text] = []
    for task_id, task in failed[:limit]:
        shown.append(Text(f"traceback of task {task_id!r}, attempt {task.attempts}:", "bold"))
        # Whole lines, never wrapped: paths and carets stay as Python printed them.
        shown.append(Text(users_frames(task.traceback or ""), no_wrap=True, overflow="ignore"))
    if len(failed) > limit:
        shown.append(Text(f"({len(failed) - limit} more failed tasks: --json shows them all)"))
    return shown


def run_view(result: RunResult, child_runs: Iterable[str] = ()) -> RenderableType:
    """The task table, then the run's status line, its links to other runs and, when it
    failed, where."""
    lines = [
        Text.assemble(
            ("run ", "bold"),
            (result.status, STYLE.get(result.status, "bold")),
            f"  started {when(result.started_at)}  "
            f"{elapsed(result.started_at, result.finished_at)}",
        )
    ]
    if result.state is not None:
        lines.append(Text(f"state-machine instance in state {result.state!r}"))
    if result.parent_run_id:
        lines.append(Text(f"sub-workflow of run {result.parent_run_id}"))
    lines.extend(Text(f"child run {rid}") for rid in child_runs)
    if result.error:
        lines.append(Text(result.error, style="red"))
    if result.done:
        lines.extend(tracebacks(result))
    # No empty table: a state-machine instance before its first handler has no task to show.
    table = [task_table(result)] if result.tasks else []
    return Group(*table, *lines)
