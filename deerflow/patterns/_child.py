"""Wrapping a user function as the body of a child task, keeping it sync or async."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from deerflow.engine._context import TaskContext


def child_body(
    fn: Callable[..., Any], args: Callable[[TaskContext], tuple[Any, ...]]
) -> Callable[[TaskContext], Any]:
    """A body calling ``fn(*args(context))``; async if ``fn`` is, so it runs on the loop."""
    if inspect.iscoroutinefunction(fn):

        async def run_async(context: TaskContext) -> Any:
            return await fn(*args(context))

        return run_async

    def run_sync(context: TaskContext) -> Any:
        return fn(*args(context))

    return run_sync
