"""Terminal views of runs for the CLI: a live table with one progress bar per task.

A task's bar fills when it completes; an expanding node (dynamic tasks, fan-out, map-reduce)
fills child by child, so ``deerflow runs show ID --follow`` shows a 10,000-way fan-out as one
moving bar rather than 10,000 rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from deerflow.core._expand import node_of
from deerflow.runtime._results import RunResult, TaskResult

STYLE = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "completed": "green",
    "failed": "bold red",
    "skipped": "magenta",
    "cancelled": "magenta",
    "compensated": "yellow",
    "compensation_failed": "bold red",
}
_DONE = frozenset({"completed", "failed", "skipped"})


def when(ts: float | None) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``, or empty."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


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


def _bar(task: TaskResult, children: list[TaskResult]) -> tuple[ProgressBar, str]:
    if children:
        done = sum(1 for c in children if c.status == "completed")
        return ProgressBar(total=len(children), completed=done, width=24), f"{done}/{len(children)}"
    finished = 1 if task.status in _DONE else 0
    return ProgressBar(
        total=1, completed=finished, width=24, pulse=task.status in ("running", "retrying")
    ), ""


def task_table(result: RunResult) -> Table:
    """One row per top-level task: status, progress bar, attempts, time, error."""
    table = Table(title=f"{result.workflow}  run {result.run_id}", expand=False)
    for name, justify in (
        ("task", "left"),
        ("status", "left"),
        ("progress", "left"),
        ("", "right"),
        ("attempts", "right"),
        ("time", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("error", overflow="fold", max_width=60)
    children = _children(result)
    for task_id, task in result.tasks.items():
        if node_of(task_id) is not None:
            continue
        bar, count = _bar(task, children.get(task_id, []))
        failed_child = next((c.error for c in children.get(task_id, []) if c.error), None)
        table.add_row(
            task_id,
            Text(task.status, style=STYLE.get(task.status, "")),
            bar,
            count,
            str(task.attempts or ""),
            elapsed(task.started_at, task.finished_at),
            Text(task.error or failed_child or "", style="red"),
        )
    return table


def run_view(result: RunResult, child_runs: Iterable[str] = ()) -> RenderableType:
    """The task table, then the run's status line and its links to other runs."""
    lines = [
        Text.assemble(
            ("run ", "bold"),
            (result.status, STYLE.get(result.status, "bold")),
            f"  started {when(result.started_at)}  "
            f"{elapsed(result.started_at, result.finished_at)}",
        )
    ]
    if result.parent_run_id:
        lines.append(Text(f"sub-workflow of run {result.parent_run_id}"))
    lines.extend(Text(f"child run {rid}") for rid in child_runs)
    if result.error:
        lines.append(Text(result.error, style="red"))
    return Group(task_table(result), *lines)
