"""Wrapping a user function as the body of a child task, keeping it sync or async."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def child_body(
    fn: Callable[..., Any], args: Callable[[Any], tuple[Any, ...]]
) -> Callable[[Any], Any]:
    """A body calling ``fn(*args(context))``; async if ``fn`` is, so it runs on the loop.

    ``context`` is the attempt's :class:`~deerflow.TaskContext` (a runtime object: the core
    only passes it through).
    """
    if inspect.iscoroutinefunction(fn):

        async def run_async(context: Any) -> Any:
            return await fn(*args(context))

        return run_async

    def run_sync(context: Any) -> Any:
        return fn(*args(context))

    return run_sync
